//! The `choice` method: the model's own probability of answering each stance
//! label, normalised over the three labels.
//!
//! Small models answer with whichever label is listed first (SmolLM2-135M put
//! 0.91–0.98 on the first-listed label on every question), so every item is
//! asked in all six orderings of the labels and the six distributions are
//! averaged; and each ordering is calibrated against content-free items
//! ("N/A", "", "[MASK]"): divide by their mean label distribution and
//! renormalise (Zhao et al., 2021, "Calibrate Before Use").

use crate::data::{Message, TextTokenizer};
use crate::events::{PerStance, Stance, StanceDistribution};
use crate::model::{Decoder, ForwardOptions, Mode};
use anyhow::{Context, Result};
use candle_core::{Tensor, D};

use Stance::{Neutral as N, Oppose as O, Support as S};

/// All six orderings of the three labels.
pub const ORDERINGS: [[Stance; 3]; 6] = [
    [S, N, O],
    [S, O, N],
    [N, S, O],
    [N, O, S],
    [O, S, N],
    [O, N, S],
];

/// Three cyclic orderings (a Latin square): each label is listed first,
/// second and third exactly once, so a bias for a position cancels as it
/// does over all six, at half the cost. What it leaves out is which label
/// follows which.
pub const CYCLIC_ORDERINGS: [[Stance; 3]; 3] = [[S, N, O], [N, O, S], [O, S, N]];

/// The orderings asked for `n` of them (3 or 6).
pub fn orderings(n: usize) -> &'static [[Stance; 3]] {
    if n == 3 {
        &CYCLIC_ORDERINGS
    } else {
        &ORDERINGS
    }
}

/// The content-free items used for calibration; their label distributions
/// are averaged (one alone can be idiosyncratic for a small model).
pub const CONTENT_FREE: [&str; 3] = ["N/A", "", "[MASK]"];

/// Rows per forward pass.
const BATCH: usize = 48;
/// Items (of six prompts each) per forward pass of the shared-prefix path.
const GROUP_BATCH: usize = 8;
/// A prefix every prompt shares is run once only from this many tokens on
/// (below it the copies cost about what they save).
const MIN_GLOBAL_PREFIX: usize = 4;

/// The answer-format instruction for one ordering.
pub fn instruction(order: [Stance; 3]) -> String {
    format!(
        "Answer with one word: {}, {}, or {}.",
        order[0], order[1], order[2]
    )
}

/// A stance distribution of one item: raw (mean over orderings) and
/// calibrated (each ordering calibrated, then the mean).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScore {
    pub raw: StanceDistribution,
    pub calibrated: StanceDistribution,
    /// The distribution under each ordering asked ([`orderings`]), before
    /// calibration.
    pub per_ordering: Vec<StanceDistribution>,
}

/// Scores label probabilities with a model and its tokenizer.
#[derive(Clone)]
pub struct ChoiceScorer {
    tok: TextTokenizer,
    /// Token ids of each label as the model would write it as an answer.
    pub labels: PerStance<Vec<u32>>,
    /// Label orderings asked per item: 6 (all, the default) or 3 (cyclic).
    pub orderings: usize,
    /// Run the token prefix every prompt shares (a chat template's system
    /// turn) once per pass instead of once per item; off only to measure.
    pub share_global_prefix: bool,
}

/// Normalise the three labels' log-probabilities to a distribution.
pub fn normalise_logps(lp: PerStance<f64>) -> StanceDistribution {
    let m = lp.values().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return StanceDistribution::uniform();
    }
    let e = lp.map(|x| (x - m).exp());
    let s = e.sum();
    e.map(|x| x / s)
}

/// Divide by a content-free distribution and renormalise.
pub fn calibrate(p: StanceDistribution, content_free: StanceDistribution) -> StanceDistribution {
    let q = PerStance::from_fn(|s| p[s] / content_free[s].max(1e-12));
    let s = q.sum();
    if s > 0.0 && s.is_finite() {
        q.map(|x| x / s)
    } else {
        p
    }
}

impl ChoiceScorer {
    pub fn new(tok: &TextTokenizer) -> Result<Self> {
        Self::with_labels(tok, PerStance::from_fn(Stance::name))
    }

    /// Score other label words — for tests and for languages other than
    /// English.
    pub fn with_labels(tok: &TextTokenizer, words: PerStance<&str>) -> Result<Self> {
        // With a chat template the answer starts a fresh turn: "support";
        // as plain text it follows "Answer:": " support".
        let prefix = if tok.template.is_some() { "" } else { " " };
        let mut labels: PerStance<Vec<u32>> = Default::default();
        for (s, l) in words.iter() {
            labels[s] = tok.encode(&format!("{prefix}{l}"))?;
            anyhow::ensure!(
                !labels[s].is_empty(),
                "the label \"{l}\" tokenizes to nothing"
            );
        }
        Ok(Self {
            tok: tok.clone(),
            labels,
            orderings: 6,
            share_global_prefix: true,
        })
    }

    /// Whether every label is one token (one forward pass per prompt suffices).
    pub fn single_token_labels(&self) -> bool {
        self.labels.values().all(|l| l.len() == 1)
    }

    /// Prompt token ids asking `item` with the labels in `order`.
    pub fn prompt_ids(&self, item: &str, order: [Stance; 3]) -> Result<Vec<u32>> {
        let user = if item.is_empty() {
            instruction(order)
        } else {
            format!("{item} {}", instruction(order))
        };
        if self.tok.template.is_some() {
            let text = self.tok.prompt_text(&[Message::new("user", &user)])?;
            self.tok.encode(&text)
        } else {
            self.tok.encode_with_specials(&format!("{user}\nAnswer:"))
        }
    }

    /// Score items: every item in each ordering, calibrated against the
    /// content-free items under the same ordering.
    pub fn score(
        &self,
        decoder: &Decoder,
        items: &[String],
        max_len: usize,
    ) -> Result<Vec<ItemScore>> {
        let orders = orderings(self.orderings);
        let k = orders.len();
        let mut all: Vec<String> = items.to_vec();
        all.extend(CONTENT_FREE.iter().map(|s| s.to_string()));
        let mut prompts = Vec::with_capacity(all.len() * k);
        for item in &all {
            for &order in orders {
                let mut ids = self.prompt_ids(item, order)?;
                if ids.len() > max_len {
                    // Keep the end: the instruction and the answer's start.
                    ids.drain(..ids.len() - max_len);
                }
                prompts.push(ids);
            }
        }
        let dists = {
            let groups: Vec<&[Vec<u32>]> = prompts.chunks(k).collect();
            self.grouped_label_distributions(decoder, &groups)?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        };
        // Per ordering, the mean content-free distribution.
        let cf: Vec<StanceDistribution> = (0..k)
            .map(|o| {
                let per: Vec<StanceDistribution> = (0..CONTENT_FREE.len())
                    .map(|c| dists[(items.len() + c) * k + o])
                    .collect();
                StanceDistribution::mean(&per)
            })
            .collect();
        Ok((0..items.len())
            .map(|i| {
                let per: Vec<StanceDistribution> = (0..k).map(|o| dists[i * k + o]).collect();
                let cal: Vec<StanceDistribution> =
                    (0..k).map(|o| calibrate(per[o], cf[o])).collect();
                ItemScore {
                    raw: StanceDistribution::mean(&per),
                    calibrated: StanceDistribution::mean(&cal),
                    per_ordering: per,
                }
            })
            .collect())
    }

    /// p(label | prompt) normalised over the three labels, per prompt: each
    /// prompt scored whole (the reference for the shared-prefix path).
    pub fn label_distributions(
        &self,
        decoder: &Decoder,
        prompts: &[Vec<u32>],
    ) -> Result<Vec<StanceDistribution>> {
        let lps = in_batches(
            decoder,
            prompts.len(),
            |i| prompts[i].len(),
            BATCH,
            |chunk| {
                let batch: Vec<&Vec<u32>> = chunk.iter().map(|&i| &prompts[i]).collect();
                if self.single_token_labels() {
                    self.single_token_logps(decoder, &batch)
                } else {
                    self.multi_token_logps(decoder, &batch)
                }
            },
        )?;
        Ok(lps.into_iter().map(normalise_logps).collect())
    }

    /// `label_distributions` for groups of prompts that share a beginning
    /// (one item in its six orderings): the shared token prefix of a group
    /// runs once, and its KV cache is continued by each prompt's own tail.
    /// Same numbers as scoring each prompt whole, at about half the work.
    pub fn grouped_label_distributions(
        &self,
        decoder: &Decoder,
        groups: &[&[Vec<u32>]],
    ) -> Result<Vec<Vec<StanceDistribution>>> {
        // Longest common token prefix, leaving every prompt at least one token.
        let split: Vec<usize> = groups
            .iter()
            .map(|g| {
                let min = g.iter().map(Vec::len).min().unwrap_or(0);
                let mut c = 0;
                while c + 1 < min && g.iter().all(|p| p[c] == g[0][c]) {
                    c += 1;
                }
                c
            })
            .collect();
        // The prefix every group shares (a chat template's system turn, the
        // user header): run once, its KV cache continued by every group.
        let global = if self.share_global_prefix {
            let mut g = split.iter().copied().min().unwrap_or(0);
            for grp in groups {
                let first = &grp[0];
                g = g.min(
                    first
                        .iter()
                        .zip(&groups[0][0])
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
            g
        } else {
            0
        };
        let global_cache = if global >= MIN_GLOBAL_PREFIX {
            let _t = profile::Timer::new(&profile::GLOBAL_NS);
            profile::add(&profile::GLOBAL_TOKENS, global);
            let mut cache = crate::model::KvCache::new(decoder.num_layers());
            let ids = Tensor::from_vec(
                groups[0][0][..global].to_vec(),
                (1, global),
                decoder.device(),
            )?;
            decoder.hidden(
                &ids,
                Mode::Fast,
                ForwardOptions {
                    cache: Some(&mut cache),
                    ..Default::default()
                },
            )?;
            Some(cache)
        } else {
            None
        };
        let global = global_cache.as_ref().map(|c| (c, global));
        let longest = |i: usize| groups[i].iter().map(Vec::len).max().unwrap_or(0);
        let lps = in_batches(decoder, groups.len(), longest, GROUP_BATCH, |chunk| {
            let batch: Vec<(&[Vec<u32>], usize)> =
                chunk.iter().map(|&i| (groups[i], split[i])).collect();
            self.shared_prefix_logps(decoder, &batch, global)
        })?;
        Ok(lps
            .into_iter()
            .map(|group| group.into_iter().map(normalise_logps).collect())
            .collect())
    }

    /// Label log-probabilities of groups of prompts, each group's first
    /// `split` tokens shared.
    fn shared_prefix_logps(
        &self,
        decoder: &Decoder,
        batch: &[(&[Vec<u32>], usize)],
        global: Option<(&crate::model::KvCache, usize)>,
    ) -> Result<Vec<Vec<PerStance<f64>>>> {
        let dev = decoder.device().clone();
        let pad = self.tok.pad_id;
        let g = batch.len();
        // 1. The prefixes, right-padded: plain causal attention, and no
        //    real token looks at a pad. Where every prompt shares its first
        //    `g0` tokens, their cache is copied to every row and only the
        //    rest of each prefix runs.
        let (mut cache, g0) = match global {
            Some((c, g0)) => (
                c.select_rows(&Tensor::from_vec(vec![0u32; g], g, &dev)?)?,
                g0,
            ),
            None => (crate::model::KvCache::new(decoder.num_layers()), 0),
        };
        let lp_own = batch
            .iter()
            .map(|(_, c)| *c - g0)
            .max()
            .context("empty batch")?
            .max(1);
        let lp = g0 + lp_own;
        let mut ids = vec![pad; g * lp_own];
        for (r, (grp, c)) in batch.iter().enumerate() {
            ids[r * lp_own..r * lp_own + c - g0].copy_from_slice(&grp[0][g0..*c]);
        }
        profile::add(&profile::PREFIX_TOKENS, g * lp_own);
        let prefix_timer = profile::Timer::new(&profile::PREFIX_NS);
        decoder.hidden(
            &Tensor::from_vec(ids, (g, lp_own), &dev)?,
            Mode::Fast,
            ForwardOptions {
                cache: Some(&mut cache),
                ..Default::default()
            },
        )?;
        // 2. Every prompt's tail continues its group's prefix. With
        //    single-token labels one row per prompt, read at its last
        //    position; otherwise one row per (prompt, label) with the label's
        //    tokens fed in, each label token read where it is predicted.
        let single = self.single_token_labels();
        let mut owner = Vec::new();
        let mut rows_ids: Vec<(Vec<u32>, usize)> = Vec::new();
        // (row, position in row) to read, and per read: the pick, the
        // target token and the (prompt, label) it adds to.
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut reads: Vec<(usize, u32, usize, Stance)> = Vec::new();
        let mut prompt_no = 0;
        for (r, (grp, c)) in batch.iter().enumerate() {
            for p in grp.iter() {
                let tail = &p[*c..];
                if single {
                    let pick = picks.len();
                    picks.push((rows_ids.len(), tail.len() - 1));
                    for (l, lab) in self.labels.iter() {
                        reads.push((pick, lab[0], prompt_no, l));
                    }
                    owner.push(r as u32);
                    rows_ids.push((tail.to_vec(), *c));
                } else {
                    // One row per label of several tokens, its tokens but
                    // the last fed in and each read where it is predicted;
                    // the one-token labels are read off the first such row
                    // at the tail's end (what precedes it is the prompt
                    // alone). SmolLM2's "oppose" is two tokens and the
                    // others one: one row per prompt, not three.
                    let mut first_row = None;
                    for (l, lab) in self.labels.iter().filter(|(_, lab)| lab.len() > 1) {
                        let mut ids = tail.to_vec();
                        ids.extend_from_slice(&lab[..lab.len() - 1]);
                        for (k, &t) in lab.iter().enumerate() {
                            reads.push((picks.len(), t, prompt_no, l));
                            picks.push((rows_ids.len(), tail.len() - 1 + k));
                        }
                        first_row.get_or_insert(picks.len() - lab.len());
                        owner.push(r as u32);
                        rows_ids.push((ids, *c));
                    }
                    let at_tail_end = first_row.expect("some label has several tokens");
                    for (l, lab) in self.labels.iter().filter(|(_, lab)| lab.len() == 1) {
                        reads.push((at_tail_end, lab[0], prompt_no, l));
                    }
                }
                prompt_no += 1;
            }
        }
        let rows = rows_ids.len();
        let lt = rows_ids
            .iter()
            .map(|(t, _)| t.len())
            .max()
            .context("empty batch")?;
        let mut cache = cache.select_rows(&Tensor::from_vec(owner, rows, &dev)?)?;
        let mut ids = vec![pad; rows * lt];
        let mut pos = vec![0u32; rows * lt];
        let mut bias = vec![f32::NEG_INFINITY; rows * lt * (lp + lt)];
        for (r, (tail, c)) in rows_ids.iter().enumerate() {
            ids[r * lt..r * lt + tail.len()].copy_from_slice(tail);
            for j in 0..lt {
                pos[r * lt + j] = (c + j) as u32;
                let row = &mut bias[(r * lt + j) * (lp + lt)..(r * lt + j + 1) * (lp + lt)];
                row[..*c].fill(0.0);
                row[lp..=lp + j].fill(0.0);
            }
        }
        drop(prefix_timer);
        profile::add(&profile::TAIL_TOKENS, rows * lt);
        let tail_timer = profile::Timer::new(&profile::TAIL_NS);
        let h = decoder.hidden(
            &Tensor::from_vec(ids, (rows, lt), &dev)?,
            Mode::Fast,
            ForwardOptions {
                positions: Some(&Tensor::from_vec(pos, (rows, lt), &dev)?),
                // The attention scores are f32 whatever the weights' dtype.
                attn_bias: Some(&Tensor::from_vec(bias, (rows, 1, lt, lp + lt), &dev)?),
                cache: Some(&mut cache),
            },
        )?;
        drop(tail_timer);
        let _head_timer = profile::Timer::new(&profile::HEAD_NS);
        let hd = h.dim(D::Minus1)?;
        let flat: Vec<u32> = picks.iter().map(|&(r, j)| (r * lt + j) as u32).collect();
        let picked = h
            .reshape((rows * lt, hd))?
            .index_select(&Tensor::from_vec(flat, picks.len(), &dev)?, 0)?;
        let logp = candle_nn::ops::log_softmax(&decoder.logits(&picked, Mode::Fast)?, D::Minus1)?;
        let read_pick: Vec<u32> = reads.iter().map(|r| r.0 as u32).collect();
        let read_tok: Vec<u32> = reads.iter().map(|r| r.1).collect();
        let n = reads.len();
        let vals = logp
            .index_select(&Tensor::from_vec(read_pick, n, &dev)?, 0)?
            .gather(&Tensor::from_vec(read_tok, (n, 1), &dev)?, 1)?
            .squeeze(1)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let mut sums = vec![PerStance::<f64>::default(); prompt_no];
        for ((_, _, p, l), v) in reads.iter().zip(vals) {
            sums[*p][*l] += v;
        }
        let mut out = Vec::with_capacity(g);
        let mut it = sums.into_iter();
        for (grp, _) in batch {
            out.push(
                grp.iter()
                    .map(|_| it.next().expect("one per prompt"))
                    .collect(),
            );
        }
        Ok(out)
    }

    /// One forward pass over right-padded prompts; the next-token
    /// log-probabilities at each prompt's last position.
    pub fn single_token_logps(
        &self,
        decoder: &Decoder,
        prompts: &[&Vec<u32>],
    ) -> Result<Vec<PerStance<f64>>> {
        let dev = decoder.device().clone();
        let len = prompts
            .iter()
            .map(|p| p.len())
            .max()
            .context("empty batch")?;
        let rows = prompts.len();
        let mut ids = vec![self.tok.pad_id; rows * len];
        let mut last = Vec::with_capacity(rows);
        for (r, p) in prompts.iter().enumerate() {
            ids[r * len..r * len + p.len()].copy_from_slice(p);
            last.push((r * len + p.len() - 1) as u32);
        }
        let input = Tensor::from_vec(ids, (rows, len), &dev)?;
        let h = decoder.hidden(&input, Mode::Fast, ForwardOptions::default())?;
        let hd = h.dim(D::Minus1)?;
        let picked = h
            .reshape((rows * len, hd))?
            .index_select(&Tensor::from_vec(last, rows, &dev)?, 0)?;
        let logp = candle_nn::ops::log_softmax(&decoder.logits(&picked, Mode::Fast)?, D::Minus1)?;
        let label_ids = Tensor::from_vec(
            self.labels.values().map(|l| l[0]).collect::<Vec<u32>>(),
            3,
            &dev,
        )?;
        let lp = logp
            .index_select(&label_ids, 1)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec2::<f64>()?;
        Ok(lp
            .into_iter()
            .map(|r| PerStance::from([r[0], r[1], r[2]]))
            .collect())
    }

    /// Labels of several tokens: score prompt + label sequences, summing the
    /// log-probabilities of all the label's tokens.
    pub fn multi_token_logps(
        &self,
        decoder: &Decoder,
        prompts: &[&Vec<u32>],
    ) -> Result<Vec<PerStance<f64>>> {
        use crate::data::{SeqBatch, TokenSeq};
        let seqs: Vec<TokenSeq> = prompts
            .iter()
            .flat_map(|p| {
                self.labels.values().map(move |l| {
                    let mut ids = (*p).clone();
                    ids.extend_from_slice(l);
                    let mut trained = vec![false; p.len()];
                    trained.extend(std::iter::repeat_n(true, l.len()));
                    TokenSeq { ids, trained }
                })
            })
            .collect();
        let refs: Vec<&TokenSeq> = seqs.iter().collect();
        let batch = SeqBatch::new(&refs, self.tok.pad_id, decoder.device())?;
        let lp = crate::model::seq_logps(decoder, &batch, Mode::Fast)?;
        let sums = lp
            .sums
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        Ok(sums
            .chunks(3)
            .map(|c| PerStance::from([c[0], c[1], c[2]]))
            .collect())
    }
}

/// Where a `choice` pass spends its time: thread-seconds and tokens per
/// stage of the shared-prefix path, summed over the batches since the last
/// [`profile::take`] (batches run side by side, so the seconds add up to
/// more than the wall time).
pub mod profile {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Instant;

    pub static GLOBAL_NS: AtomicU64 = AtomicU64::new(0);
    pub static PREFIX_NS: AtomicU64 = AtomicU64::new(0);
    pub static TAIL_NS: AtomicU64 = AtomicU64::new(0);
    pub static HEAD_NS: AtomicU64 = AtomicU64::new(0);
    pub static GLOBAL_TOKENS: AtomicU64 = AtomicU64::new(0);
    pub static PREFIX_TOKENS: AtomicU64 = AtomicU64::new(0);
    pub static TAIL_TOKENS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Relaxed);
    }

    /// Adds its lifetime to a counter.
    pub(super) struct Timer<'a>(&'a AtomicU64, Instant);

    impl<'a> Timer<'a> {
        pub(super) fn new(c: &'a AtomicU64) -> Self {
            Self(c, Instant::now())
        }
    }

    impl Drop for Timer<'_> {
        fn drop(&mut self) {
            self.0
                .fetch_add(self.1.elapsed().as_nanos() as u64, Relaxed);
        }
    }

    /// The counters since the last call, reset: seconds (shared prefix,
    /// item prefixes, ordering tails, LM head) and tokens (the same three).
    pub fn take() -> ([f64; 4], [u64; 3]) {
        let s = |c: &AtomicU64| c.swap(0, Relaxed) as f64 * 1e-9;
        let n = |c: &AtomicU64| c.swap(0, Relaxed);
        (
            [s(&GLOBAL_NS), s(&PREFIX_NS), s(&TAIL_NS), s(&HEAD_NS)],
            [n(&GLOBAL_TOKENS), n(&PREFIX_TOKENS), n(&TAIL_TOKENS)],
        )
    }
}

/// `run` over batches of the indices `0..n`, sorted by `len` so that a
/// batch holds similar lengths (less padding); one result per index, in
/// index order. On the CPU a batch is a small matrix product that one gemm
/// call cannot spread over the cores, so batches run side by side; each is
/// computed alone, so the results do not depend on it.
fn in_batches<R: Send>(
    decoder: &Decoder,
    n: usize,
    len: impl Fn(usize) -> usize,
    size: usize,
    run: impl Fn(&[usize]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| len(i));
    let chunks: Vec<&[usize]> = order.chunks(size).collect();
    let outs: Vec<Vec<R>> = if decoder.device().is_cpu() {
        use rayon::prelude::*;
        chunks.par_iter().map(|c| run(c)).collect::<Result<_>>()?
    } else {
        chunks.iter().map(|c| run(c)).collect::<Result<_>>()?
    };
    let mut slots: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for (chunk, out) in chunks.iter().zip(outs) {
        for (&i, r) in chunk.iter().zip(out) {
            slots[i] = Some(r);
        }
    }
    Ok(slots
        .into_iter()
        .map(|r| r.expect("every index is in one batch"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_removes_a_pure_position_bias() {
        // A model that puts 0.9 on whichever label is listed first, whatever
        // the question: under each ordering its distribution equals the
        // content-free one, so calibration gives uniform, and the raw mean
        // over the six orderings is uniform too.
        let per: Vec<StanceDistribution> = ORDERINGS
            .iter()
            .map(|o| {
                let mut p = StanceDistribution::from([0.05; 3]);
                p[o[0]] = 0.9;
                p
            })
            .collect();
        let raw = StanceDistribution::mean(&per);
        for x in raw.values() {
            assert!((x - 1.0 / 3.0).abs() < 1e-12);
        }
        for p in &per {
            let c = calibrate(*p, *p);
            for x in c.values() {
                assert!((x - 1.0 / 3.0).abs() < 1e-12);
            }
        }
        // A real preference on top of the bias survives calibration.
        let biased = [0.9 * 0.6 / 0.57, 0.05 * 0.3 / 0.57, 0.05 * 0.1 / 0.57].into();
        let c = calibrate(biased, [0.9, 0.05, 0.05].into());
        assert!(
            (c[S] - 0.6).abs() < 1e-9 && (c[N] - 0.3).abs() < 1e-9 && (c[O] - 0.1).abs() < 1e-9
        );
    }

    #[test]
    fn cyclic_orderings_list_each_label_once_in_each_position() {
        for pos in 0..3 {
            let mut seen: Vec<Stance> = CYCLIC_ORDERINGS.iter().map(|o| o[pos]).collect();
            seen.sort();
            assert_eq!(seen, Stance::EACH.to_vec(), "position {pos}");
        }
        // So a pure position bias averages to uniform over them too.
        let per: Vec<StanceDistribution> = CYCLIC_ORDERINGS
            .iter()
            .map(|o| {
                let mut p = StanceDistribution::from([0.05; 3]);
                p[o[0]] = 0.9;
                p
            })
            .collect();
        for x in StanceDistribution::mean(&per).values() {
            assert!((x - 1.0 / 3.0).abs() < 1e-12);
        }
        assert_eq!(orderings(3).len(), 3);
        assert_eq!(orderings(6), &ORDERINGS);
    }

    #[test]
    fn normalise_by_hand() {
        let p = normalise_logps([(0.5f64).ln(), (0.25f64).ln(), (0.05f64).ln()].into());
        assert!((p[S] - 0.5 / 0.8).abs() < 1e-12);
        assert!((p[O] - 0.05 / 0.8).abs() < 1e-12);
    }
}
