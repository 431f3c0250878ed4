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
    self, AlertLevel, ProbeEvent, ProbeMethod, ProbeReason, Stance, StanceDistribution, TopicStance,
};
use crate::model::generate::{generate, SamplingParams};
use crate::model::{Decoder, LoadedModel};
use crate::recipe::{LoadedRecipe, ProbeConfig};
use anyhow::{bail, Context, Result};
use choice::ChoiceScorer;
use judge::{check_judge, EndpointJudge, Judge, LocalJudge};
use set::ProbeSet;
use std::collections::BTreeMap;
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
        p.periodic = p.set.subset(cfg.questions_per_topic);
        p.notes.extend(notes);
        Ok(p)
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
        let set = if reason == ProbeReason::Periodic {
            self.periodic.clone()
        } else {
            self.set.clone()
        };
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
        }
    }

    /// Stance distributions per topic.
    pub fn measure(&mut self, decoder: &Decoder, set: &ProbeSet) -> Result<Vec<TopicStance>> {
        let per_question = self.per_question(decoder, set)?;
        Ok(aggregate(set, &per_question))
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
                let items: Vec<String> = set.questions.iter().map(|q| q.question.clone()).collect();
                let scores = self.scorer.score(decoder, &items, self.max_len)?;
                let calibrate = self.calibrate;
                Ok(scores
                    .into_iter()
                    .map(|s| QuestionStance {
                        samples: vec![if calibrate { s.calibrated } else { s.raw }],
                        raw: vec![s.raw],
                        answers: Vec::new(),
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
                    let prompt = self.tok.prompt_text(&[Message::new("user", &q.question)])?;
                    let mut ids = self.tok.encode(&prompt)?;
                    if ids.len() > self.max_len {
                        ids.drain(..ids.len() - self.max_len);
                    }
                    let p = SamplingParams {
                        seed: params.seed.wrapping_add(qi as u64 * 1_000_003),
                        ..params.clone()
                    };
                    let answers = generate(decoder, &self.tok, &ids, *samples, &p, &mut |_, _| {})?;
                    let pairs: Vec<(String, String)> = answers
                        .iter()
                        .map(|a| (q.question.clone(), a.text.clone()))
                        .collect();
                    let dists = judge
                        .score(&pairs)
                        .with_context(|| format!("judging answers to {}", q.id))?;
                    out.push(QuestionStance {
                        raw: dists.clone(),
                        samples: dists,
                        answers: answers.into_iter().map(|a| a.text).collect(),
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
}

/// Topic means and standard errors over questions × samples.
pub fn aggregate(set: &ProbeSet, per_question: &[QuestionStance]) -> Vec<TopicStance> {
    type Scores = (Vec<StanceDistribution>, Vec<StanceDistribution>);
    let mut by_topic: BTreeMap<&str, Scores> = BTreeMap::new();
    for (q, s) in set.questions.iter().zip(per_question) {
        let e = by_topic.entry(q.topic.as_str()).or_default();
        e.0.extend(s.samples.iter().copied());
        e.1.extend(s.raw.iter().copied());
    }
    set.topics
        .iter()
        .filter_map(|t| {
            by_topic
                .get(t.as_str())
                .map(|(c, r)| drift::topic_stance(t, c, Some(r)))
        })
        .collect()
}

fn make_judge(spec: &str, recipe: &LoadedRecipe, model: &LoadedModel) -> Result<Box<dyn Judge>> {
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
