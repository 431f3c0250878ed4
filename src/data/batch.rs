//! Batches: right-padded token ids, the positions whose next token is trained
//! on, and a seeded, stateless data order (so a resumed run sees the same
//! batches as an uninterrupted one).

use super::TokenSeq;
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A batch of sequences for teacher-forced scoring.
///
/// Right padding: a real token never attends to a pad (they come after it),
/// so the causal mask alone is correct.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// (rows, len) token ids, each sequence without its last token.
    pub input: Tensor,
    /// (n,) flat positions `row * len + t` whose next token is trained on.
    pub positions: Tensor,
    /// (n,) the trained next tokens.
    pub targets: Tensor,
    /// (rows, n) 1 where a target belongs to the row: per-row sums are
    /// `segments · per_target_values`.
    pub segments: Tensor,
    /// Trained targets per row.
    pub counts: Vec<usize>,
    /// The row of every target.
    pub owner: Vec<usize>,
    /// Whether a target is a trained (completion) token; false for the
    /// prompt tokens of rows scored whole.
    pub trained: Vec<bool>,
    pub rows: usize,
    pub len: usize,
    /// Real (non-pad) tokens in the batch.
    pub tokens: usize,
}

impl SeqBatch {
    /// Targets at the trained positions of every row.
    pub fn new(seqs: &[&TokenSeq], pad_id: u32, device: &Device) -> Result<Self> {
        Self::with_whole_rows(seqs, pad_id, device, 0)
    }

    /// As [`SeqBatch::new`], and the first `whole` rows are scored at every
    /// position (prompt tokens too: ORPO's NLL term). Sums and counts stay
    /// over the trained positions.
    pub fn with_whole_rows(
        seqs: &[&TokenSeq],
        pad_id: u32,
        device: &Device,
        whole: usize,
    ) -> Result<Self> {
        let rows = seqs.len();
        let len = seqs
            .iter()
            .map(|s| s.len().saturating_sub(1))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut input = vec![pad_id; rows * len];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut owner = Vec::new();
        let mut trained = Vec::new();
        let mut counts = vec![0usize; rows];
        let mut tokens = 0;
        for (r, s) in seqs.iter().enumerate() {
            tokens += s.len();
            for t in 0..s.len().saturating_sub(1) {
                input[r * len + t] = s.ids[t];
                let is_trained = s.trained[t + 1];
                if is_trained || r < whole {
                    positions.push((r * len + t) as u32);
                    targets.push(s.ids[t + 1]);
                    owner.push(r);
                    trained.push(is_trained);
                    if is_trained {
                        counts[r] += 1;
                    }
                }
            }
        }
        let n = positions.len();
        let mut seg = vec![0f32; rows * n];
        for (j, &r) in owner.iter().enumerate() {
            if trained[j] {
                seg[r * n + j] = 1.0;
            }
        }
        Ok(Self {
            input: Tensor::from_vec(input, (rows, len), device)?,
            positions: Tensor::from_vec(positions, n, device)?,
            targets: Tensor::from_vec(targets, n, device)?,
            segments: Tensor::from_vec(seg, (rows, n), device)?,
            counts,
            owner,
            trained,
            rows,
            len,
            tokens,
        })
    }

    /// Targets in the whole batch (trained ones and whole rows' prompts).
    pub fn targets_len(&self) -> usize {
        self.owner.len()
    }
}

/// Chosen and rejected sequences of a preference batch: rows `0..pairs` are
/// chosen, `pairs..2*pairs` rejected, scored in one forward pass.
#[derive(Debug, Clone)]
pub struct PairBatch {
    pub seqs: SeqBatch,
    pub pairs: usize,
}

/// The order in which a phase visits its examples: epoch `e` is a fresh
/// shuffle seeded by (run seed, phase, e); position `p` of the stream is
/// example `perm[e][p % n]` with `e = p / n`. No state to save.
#[derive(Debug, Clone)]
pub struct Batcher {
    n: usize,
    seed: u64,
    shuffle: bool,
    cached: Option<(u64, Vec<usize>)>,
}

impl Batcher {
    pub fn new(n: usize, seed: u64, phase: usize, shuffle: bool) -> Self {
        Self {
            n,
            seed: seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(phase as u64 + 1),
            shuffle,
            cached: None,
        }
    }

    fn perm(&mut self, epoch: u64) -> &[usize] {
        if self.cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut p: Vec<usize> = (0..self.n).collect();
            if self.shuffle {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                    self.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03),
                );
                p.shuffle(&mut rng);
            }
            self.cached = Some((epoch, p));
        }
        &self.cached.as_ref().expect("just set").1
    }

    /// Example indices of micro-batch `m` (0-based over the phase) of size `size`.
    pub fn micro_batch(&mut self, m: u64, size: usize) -> Vec<usize> {
        (0..size as u64)
            .map(|j| {
                let p = m * size as u64 + j;
                let (e, i) = (p / self.n as u64, (p % self.n as u64) as usize);
                self.perm(e)[i]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_segments_pick_trained_next_tokens() {
        let a = TokenSeq {
            ids: vec![10, 11, 12, 13],
            trained: vec![false, false, true, true],
        };
        let b = TokenSeq {
            ids: vec![20, 21],
            trained: vec![false, true],
        };
        let batch = SeqBatch::new(&[&a, &b], 0, &Device::Cpu).unwrap();
        assert_eq!(batch.len, 3);
        assert_eq!(
            batch.input.to_vec2::<u32>().unwrap(),
            vec![vec![10, 11, 12], vec![20, 0, 0]]
        );
        // Row 0 predicts 12 at t=1 and 13 at t=2; row 1 predicts 21 at t=0.
        assert_eq!(batch.positions.to_vec1::<u32>().unwrap(), vec![1, 2, 3]);
        assert_eq!(batch.targets.to_vec1::<u32>().unwrap(), vec![12, 13, 21]);
        assert_eq!(
            batch.segments.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]
        );
        assert_eq!(batch.counts, vec![2, 1]);
        assert_eq!(batch.tokens, 6);
    }

    #[test]
    fn data_order_is_a_permutation_per_epoch_and_stateless() {
        let mut b = Batcher::new(10, 7, 0, true);
        let first: Vec<usize> = (0..5).flat_map(|m| b.micro_batch(m, 2)).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(first, (0..10).collect::<Vec<_>>(), "shuffled");
        // A fresh batcher asked for micro-batch 3 directly agrees.
        let mut c = Batcher::new(10, 7, 0, true);
        assert_eq!(c.micro_batch(3, 2), first[6..8].to_vec());
        // The next epoch is another shuffle.
        let second: Vec<usize> = (5..10).flat_map(|m| b.micro_batch(m, 2)).collect();
        assert_ne!(first, second);
        // Another phase shuffles differently.
        let mut d = Batcher::new(10, 7, 1, true);
        assert_ne!(d.micro_batch(0, 10), first);
    }
}
