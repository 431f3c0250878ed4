//! Value probes: the stance a model takes on value-laden questions, topic by
//! topic, measured while it trains (and on any checkpoint afterwards).
//!
//! Two methods, chosen in the recipe's `[probe]` table:
//! - `choice` (default, fast): the model's own probability of answering each
//!   stance label, debiased over the six label orderings and calibrated
//!   against a content-free question ([`choice`]);
//! - `generate`: K sampled answers per question, each scored by a fixed judge
//!   ([`judge`]), as the study did.

pub mod checkpoint;
pub mod choice;
pub mod drift;
pub mod judge;
pub mod set;
pub mod synth;
pub mod trace;
pub mod worker;

use crate::data::{Message, TextTokenizer};
use crate::events::{
    self, AlertLevel, PerStance, ProbeEvent, ProbeMethod, ProbeReason, QuestionScore, Stance,
    StanceDistribution, TopicStance,
};
use crate::model::generate::{generate, SamplingParams};
use crate::model::{Decoder, LoadedModel};
use crate::recipe::{LoadedRecipe, ProbeConfig};
use anyhow::{bail, Context, Result};
use choice::ChoiceScorer;
use judge::{check_judge, EndpointJudge, Judge, LocalJudge};
use set::ProbeSet;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Longest prompt a probe feeds the model, in tokens (questions are cut
/// from the front beyond it, with a warning).
pub const MAX_PROBE_TOKENS: usize = 512;

/// The probe method and what it needs.
pub enum Method {
    Choice,
    Generate {
        params: SamplingParams,
        samples: usize,
        judge: Box<dyn Judge>,
    },
}

/// Runs a probe set against a model.
pub struct Prober {
    pub set: ProbeSet,
    /// The set used for periodic probes (a per-topic subset, or all).
    periodic: ProbeSet,
    /// Ids of the periodic subset's questions; empty when periodic probes
    /// ask every question.
    periodic_ids: HashSet<String>,
    every: u64,
    tok: TextTokenizer,
    scorer: ChoiceScorer,
    method: Method,
    max_len: usize,
    /// `choice`: report the calibrated distribution (else the ordering
    /// average alone; both are logged).
    pub calibrate: bool,
    /// Notes for the run's log.
    pub notes: Vec<(AlertLevel, String)>,
}

impl Prober {
    /// Build from the recipe's `[probe]` table. For `generate`, the judge is
    /// scored on answers of known stance first.
    pub fn new(cfg: &ProbeConfig, recipe: &LoadedRecipe, model: &LoadedModel) -> Result<Self> {
        let path = recipe.resolve(&cfg.file);
        let set = ProbeSet::load(&path)?;
        let mut notes = Vec::new();
        // The recipe checked the name; an unknown one is refused here too.
        let method = match cfg.method.parse::<ProbeMethod>() {
            Ok(ProbeMethod::Choice) => Method::Choice,
            Ok(ProbeMethod::Generate) => {
                let judge: Box<dyn Judge> = make_judge(&cfg.judge, recipe, model)?;
                let mut m = Method::Generate {
                    params: SamplingParams {
                        temperature: cfg.temperature,
                        top_p: cfg.top_p,
                        max_tokens: cfg.max_tokens,
                        seed: recipe.recipe.run.seed,
                    },
                    samples: cfg.samples,
                    judge,
                };
                if let Method::Generate { judge, .. } = &mut m {
                    let cases = match &cfg.judge_check {
                        Some(p) => set::load_judge_cases(&recipe.resolve(p))?,
                        None => set::builtin_judge_cases(),
                    };
                    match check_judge(judge.as_mut(), &cases) {
                        Ok(c) => {
                            let level = if c.trusted() {
                                AlertLevel::Info
                            } else {
                                AlertLevel::Warning
                            };
                            notes.push((level, c.summary(&judge.name())));
                        }
                        Err(e) => notes.push((
                            AlertLevel::Warning,
                            format!("the judge {} could not be checked: {e:#}", judge.name()),
                        )),
                    }
                }
                m
            }
            Err(_) => bail!("probe method \"{}\" is not choice or generate", cfg.method),
        };
        let mut p = Self::with_method(set, method, &model.tokenizer)?;
        p.every = cfg.every;
        p.calibrate = cfg.calibrate;
        p.scorer.orderings = cfg.orderings.unwrap_or(6);
        p.set_periodic_subset(cfg.questions_per_topic, recipe.recipe.run.seed);
        p.notes.extend(notes);
        Ok(p)
    }

    /// Periodic probes ask `per_topic` questions of each topic (0: all),
    /// drawn with `seed`; every drift series is measured on them.
    pub fn set_periodic_subset(&mut self, per_topic: usize, seed: u64) {
        self.periodic = self.set.subset(per_topic, seed);
        self.periodic_ids = if self.periodic.questions.len() < self.set.questions.len() {
            self.periodic
                .questions
                .iter()
                .map(|q| q.id.clone())
                .collect()
        } else {
            HashSet::new()
        };
    }

    /// A prober over `set` with the `choice` method (or another), no cadence.
    pub fn with_method(set: ProbeSet, method: Method, tok: &TextTokenizer) -> Result<Self> {
        let scorer = ChoiceScorer::new(tok)?;
        let mut notes = Vec::new();
        let too_long = set
            .questions
            .iter()
            .filter(|q| {
                scorer
                    .prompt_ids(&q.question, Stance::EACH)
                    .map(|ids| ids.len() > MAX_PROBE_TOKENS)
                    .unwrap_or(false)
            })
            .count();
        if too_long > 0 {
            notes.push((
                AlertLevel::Warning,
                format!("{too_long} probe questions are longer than {MAX_PROBE_TOKENS} tokens and are truncated from the front"),
            ));
        }
        Ok(Self {
            periodic: set.clone(),
            periodic_ids: HashSet::new(),
            set,
            every: 0,
            tok: tok.clone(),
            scorer,
            method,
            max_len: MAX_PROBE_TOKENS,
            calibrate: true,
            notes,
        })
    }

    /// Probe cadence in steps (0: phase start and end only).
    pub fn every(&self) -> u64 {
        self.every
    }

    pub fn method(&self) -> ProbeMethod {
        match self.method {
            Method::Choice => ProbeMethod::Choice,
            Method::Generate { .. } => ProbeMethod::Generate,
        }
    }

    /// The judge of a `generate` prober, to score another checkpoint's
    /// answers with (loading and checking a judge costs more than a probe).
    pub fn take_judge(&mut self) -> Option<Box<dyn Judge>> {
        match std::mem::replace(&mut self.method, Method::Choice) {
            Method::Generate { judge, .. } => Some(judge),
            Method::Choice => None,
        }
    }

    /// Probe `decoder` for a training event; a failure is recorded in the
    /// event (training goes on).
    pub fn run(
        &mut self,
        decoder: &Decoder,
        phase: usize,
        step: u64,
        global_step: u64,
        reason: ProbeReason,
    ) -> ProbeEvent {
        let t0 = Instant::now();
        // Periodic probes may use a subset; phase boundaries and manual ones all.
        let subset = reason == ProbeReason::Periodic && !self.periodic_ids.is_empty();
        let set = if subset {
            self.periodic.clone()
        } else {
            self.set.clone()
        };
        // On the CPU a LoRA policy is probed with its adapters merged in
        // (without two small extra products per projection), and through
        // panel copies of the weights where they fit (the same numbers; no
        // packing of every weight per sampled token). The copies live for
        // this probe only: the trainer's next step changes the weights.
        let pass = decoder.for_inference_pass().ok().flatten();
        let decoder = pass.as_ref().unwrap_or(decoder);
        let (topics, error) = match self.measure(decoder, &set) {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        ProbeEvent {
            t: events::now(),
            phase,
            step,
            global_step,
            method: self.method(),
            reason,
            topics,
            seconds: t0.elapsed().as_secs_f64(),
            error,
            subset,
        }
    }

    /// Stance distributions per topic.
    pub fn measure(&mut self, decoder: &Decoder, set: &ProbeSet) -> Result<Vec<TopicStance>> {
        let per_question = self.per_question(decoder, set)?;
        Ok(aggregate(set, &per_question, &self.periodic_ids))
    }

    /// Per question: the per-sample (or per-question) calibrated
    /// distributions, and the raw ones.
    pub fn per_question(
        &mut self,
        decoder: &Decoder,
        set: &ProbeSet,
    ) -> Result<Vec<QuestionStance>> {
        match &mut self.method {
            Method::Choice => {
                // Every wording of every question; a question's stance is
                // the mean over its wordings, as over the label orderings.
                let items: Vec<String> = set
                    .questions
                    .iter()
                    .flat_map(|q| q.wordings().map(str::to_string))
                    .collect();
                let scores = self.scorer.score(decoder, &items, self.max_len)?;
                let calibrate = self.calibrate;
                let mut it = scores.into_iter();
                Ok(set
                    .questions
                    .iter()
                    .map(|q| {
                        let per: Vec<_> = it.by_ref().take(1 + q.paraphrases.len()).collect();
                        let cal: Vec<StanceDistribution> = per
                            .iter()
                            .map(|s| if calibrate { s.calibrated } else { s.raw })
                            .collect();
                        let raw: Vec<StanceDistribution> = per.iter().map(|s| s.raw).collect();
                        QuestionStance {
                            samples: vec![StanceDistribution::mean(&cal)],
                            raw: vec![StanceDistribution::mean(&raw)],
                            answers: Vec::new(),
                            spread: wording_spread(&cal),
                        }
                    })
                    .collect())
            }
            Method::Generate {
                params,
                samples,
                judge,
            } => {
                let mut out = Vec::with_capacity(set.questions.len());
                for (qi, q) in set.questions.iter().enumerate() {
                    // The K answers are spread over the question's wordings
                    // in turn (answer k asks wording k mod W): paraphrases
                    // cost no extra answers.
                    let wordings: Vec<&str> = q.wordings().collect();
                    let mut by_wording: Vec<Vec<usize>> = vec![Vec::new(); wordings.len()];
                    for k in 0..*samples {
                        by_wording[k % wordings.len()].push(k);
                    }
                    let mut dists = vec![StanceDistribution::default(); *samples];
                    let mut texts = vec![String::new(); *samples];
                    for (w, ks) in by_wording.iter().enumerate() {
                        if ks.is_empty() {
                            continue;
                        }
                        let prompt = self.tok.prompt_text(&[Message::new("user", wordings[w])])?;
                        let mut ids = self.tok.encode(&prompt)?;
                        if ids.len() > self.max_len {
                            ids.drain(..ids.len() - self.max_len);
                        }
                        let p = SamplingParams {
                            seed: params
                                .seed
                                .wrapping_add(qi as u64 * 1_000_003)
                                .wrapping_add(w as u64 * 7919),
                            ..params.clone()
                        };
                        let answers =
                            generate(decoder, &self.tok, &ids, ks.len(), &p, &mut |_, _| {})?;
                        let pairs: Vec<(String, String)> = answers
                            .iter()
                            .map(|a| (wordings[w].to_string(), a.text.clone()))
                            .collect();
                        let got = judge
                            .score(&pairs)
                            .with_context(|| format!("judging answers to {}", q.id))?;
                        for ((&k, d), a) in ks.iter().zip(got).zip(answers) {
                            dists[k] = d;
                            texts[k] = a.text;
                        }
                    }
                    let per_wording: Vec<StanceDistribution> = by_wording
                        .iter()
                        .filter(|ks| !ks.is_empty())
                        .map(|ks| {
                            StanceDistribution::mean(
                                &ks.iter().map(|&k| dists[k]).collect::<Vec<_>>(),
                            )
                        })
                        .collect();
                    out.push(QuestionStance {
                        raw: dists.clone(),
                        samples: dists,
                        answers: texts,
                        spread: wording_spread(&per_wording),
                    });
                }
                Ok(out)
            }
        }
    }
}

/// The stance scores of one question: one distribution per sampled answer
/// (one in all for `choice`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionStance {
    pub samples: Vec<StanceDistribution>,
    pub raw: Vec<StanceDistribution>,
    /// The sampled answers (`generate` only).
    pub answers: Vec<String>,
    /// Standard deviation over the question's wordings, when it has several.
    pub spread: Option<PerStance<f64>>,
}

/// Per stance, the sample standard deviation of a question's distributions
/// under its wordings; none for a single wording.
fn wording_spread(per_wording: &[StanceDistribution]) -> Option<PerStance<f64>> {
    let n = per_wording.len();
    (n >= 2).then(|| {
        let m = StanceDistribution::mean(per_wording);
        PerStance::from_fn(|s| {
            (per_wording
                .iter()
                .map(|x| (x[s] - m[s]).powi(2))
                .sum::<f64>()
                / (n - 1) as f64)
                .sqrt()
        })
    })
}

/// Topic means and standard errors over questions × samples, with each
/// question's scores (marked when `periodic` holds its id).
pub fn aggregate(
    set: &ProbeSet,
    per_question: &[QuestionStance],
    periodic: &HashSet<String>,
) -> Vec<TopicStance> {
    #[derive(Default)]
    struct Scores {
        cal: Vec<StanceDistribution>,
        raw: Vec<StanceDistribution>,
        questions: Vec<QuestionScore>,
        spreads: Vec<PerStance<f64>>,
    }
    let mut by_topic: BTreeMap<&str, Scores> = BTreeMap::new();
    for (q, s) in set.questions.iter().zip(per_question) {
        let e = by_topic.entry(q.topic.as_str()).or_default();
        e.cal.extend(s.samples.iter().copied());
        e.raw.extend(s.raw.iter().copied());
        e.spreads.extend(s.spread);
        e.questions.push(QuestionScore {
            id: q.id.clone(),
            p: StanceDistribution::mean(&s.samples),
            samples: if s.samples.len() > 1 {
                s.samples.clone()
            } else {
                Vec::new()
            },
            spread: s.spread,
            periodic: periodic.contains(&q.id),
        });
    }
    set.topics
        .iter()
        .filter_map(|t| {
            by_topic.remove(t.as_str()).map(|sc| {
                let mut ts = drift::topic_stance(t, &sc.cal, Some(&sc.raw));
                ts.questions = sc.questions;
                ts.paraphrase_sd =
                    (!sc.spreads.is_empty()).then(|| StanceDistribution::mean(&sc.spreads));
                ts
            })
        })
        .collect()
}

/// The judge a spec names: `initial` (the run's starting model), a model
/// source, or `openai:URL#MODEL`.
pub(crate) fn make_judge(
    spec: &str,
    recipe: &LoadedRecipe,
    model: &LoadedModel,
) -> Result<Box<dyn Judge>> {
    if spec.starts_with("openai:") {
        return Ok(Box::new(EndpointJudge::from_spec(
            spec,
            Duration::from_secs(60),
        )?));
    }
    if spec == "initial" {
        return Ok(Box::new(LocalJudge::new(
            model.decoder()?,
            &model.tokenizer,
            &format!("{} (the run's starting model)", model.source),
        )?));
    }
    let opts = crate::model::LoadOptions {
        base_dir: recipe.base_dir(),
        ..Default::default()
    };
    let judge_model = crate::model::load_model(spec, &opts)
        .with_context(|| format!("loading the judge model {spec}"))?;
    Ok(Box::new(LocalJudge::new(
        judge_model.decoder()?,
        &judge_model.tokenizer,
        spec,
    )?))
}
