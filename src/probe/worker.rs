//! Probing checkpoints from the keyboard, off the UI thread.
//!
//! The probe screen sends a [`ProbeJob`] (one or two snapshots, a question);
//! a worker thread of its own loads each checkpoint, scores the question
//! with the `choice` method, samples answers (streamed back as they are
//! generated) and has a judge score each answer. Progress comes back as
//! [`WorkerUpdate`]s on an unbounded tokio channel that the event loop
//! selects on, so neither training nor the dashboard waits for it.
//!
//! ```text
//! probe screen ──ProbeJob──▶ worker thread (ProbeEngine) ──WorkerUpdate──▶ event loop ──▶ App
//! ```

use super::checkpoint::{load_checkpoint, RunContext};
use super::choice::ChoiceScorer;
use super::judge::{check_judge, Judge, LocalJudge};
use super::set::builtin_judge_cases;
use super::MAX_PROBE_TOKENS;
use crate::data::Message;
use crate::events::StanceDistribution;
use crate::model::generate::{generate, SamplingParams};
use crate::model::LoadedModel;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Name of the worker thread (the panic hook leaves the terminal alone for it).
pub const THREAD_NAME: &str = "driftui-probe-worker";

/// Which model judges the answers' stances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeChoice {
    /// The run's starting model: fixed, so the judge does not drift with the policy.
    StartingModel,
    /// Each checkpoint judges its own answers.
    Checkpoint,
}

impl JudgeChoice {
    pub fn describe(self) -> &'static str {
        match self {
            JudgeChoice::StartingModel => "the run's starting model",
            JudgeChoice::Checkpoint => "each checkpoint itself",
        }
    }
}

/// One checkpoint of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCheckpoint {
    pub name: String,
    pub path: PathBuf,
}

/// What the probe screen asks the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeJob {
    pub id: u64,
    pub run_dir: PathBuf,
    /// One column each, side by side.
    pub checkpoints: Vec<JobCheckpoint>,
    pub question: String,
    /// Answers sampled per checkpoint.
    pub samples: usize,
    pub params: SamplingParams,
    pub judge: JudgeChoice,
}

/// Progress of a job, tagged with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerUpdate {
    pub job: u64,
    pub event: JobEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// What a column is doing now.
    Status {
        column: usize,
        text: String,
    },
    /// The question's `choice` distribution for the column's checkpoint.
    Choice {
        column: usize,
        dist: StanceDistribution,
    },
    /// More text of one sampled answer.
    Text {
        column: usize,
        sample: usize,
        text: String,
    },
    /// Who judges the column's answers, and how it did on answers of known stance.
    Judge {
        column: usize,
        name: String,
        check: Option<String>,
        trusted: bool,
    },
    /// The judge's distribution for one answer.
    Judged {
        column: usize,
        sample: usize,
        dist: StanceDistribution,
    },
    ColumnDone {
        column: usize,
        seconds: f64,
    },
    /// A column (or, with `None`, the whole job) failed.
    Failed {
        column: Option<usize>,
        error: String,
    },
    /// The job is over (done, failed or cancelled).
    Finished {
        cancelled: bool,
    },
}

/// Does the work of a job on the worker thread.
pub trait ProbeEngine: Send + 'static {
    /// Carry out `job`, reporting through `emit`; stop early once `cancelled()`.
    fn run(
        &mut self,
        job: &ProbeJob,
        emit: &mut dyn FnMut(JobEvent),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()>;
}

/// The worker thread, as the event loop holds it.
pub struct ProbeWorker {
    jobs: std::sync::mpsc::Sender<ProbeJob>,
    /// Updates for the event loop to select on.
    pub updates: tokio::sync::mpsc::UnboundedReceiver<WorkerUpdate>,
    /// Id of the job that may run; a lower id is cancelled.
    current: Arc<AtomicU64>,
}

impl ProbeWorker {
    /// Start the worker thread around `engine`.
    pub fn spawn(mut engine: Box<dyn ProbeEngine>) -> Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<ProbeJob>();
        let (tx, updates) = tokio::sync::mpsc::unbounded_channel();
        let current = Arc::new(AtomicU64::new(0));
        let cur = current.clone();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    // Only the newest queued job matters.
                    while let Ok(newer) = rx.try_recv() {
                        job = newer;
                    }
                    let id = job.id;
                    if cur.load(Ordering::SeqCst) != id {
                        let _ = tx.send(WorkerUpdate {
                            job: id,
                            event: JobEvent::Finished { cancelled: true },
                        });
                        continue;
                    }
                    let cancelled = || cur.load(Ordering::SeqCst) != id;
                    let mut emit = |event| {
                        let _ = tx.send(WorkerUpdate { job: id, event });
                    };
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        engine.run(&job, &mut emit, &cancelled)
                    }));
                    let error = match outcome {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(format!("{e:#}")),
                        Err(_) => Some("the probe worker hit a bug (a panic); see the log".into()),
                    };
                    if let Some(error) = error {
                        emit(JobEvent::Failed {
                            column: None,
                            error,
                        });
                    }
                    emit(JobEvent::Finished {
                        cancelled: cancelled(),
                    });
                }
            })
            .context("cannot start the probe worker thread")?;
        Ok(Self {
            jobs,
            updates,
            current,
        })
    }

    /// The worker that loads real checkpoints with candle.
    pub fn candle() -> Result<Self> {
        Self::spawn(Box::new(CandleEngine::default()))
    }

    /// Queue `job`; a job still running stops at its next check.
    pub fn submit(&self, job: ProbeJob) -> Result<()> {
        self.current.store(job.id, Ordering::SeqCst);
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the probe worker has stopped"))
    }

    /// Stop the running job at its next check.
    pub fn cancel(&self) {
        self.current.store(0, Ordering::SeqCst);
    }
}

/// Models kept loaded between jobs (two checkpoints and a judge).
const CACHE: usize = 3;

/// Loads checkpoints with candle on the CPU and probes them.
#[derive(Default)]
pub struct CandleEngine {
    models: Vec<(PathBuf, Arc<LoadedModel>)>,
    /// Judge-check summaries by judge key: (summary, trusted).
    checks: HashMap<String, (String, bool)>,
    contexts: HashMap<PathBuf, Arc<RunContext>>,
}

impl CandleEngine {
    fn context(&mut self, run_dir: &Path) -> Arc<RunContext> {
        self.contexts
            .entry(run_dir.to_path_buf())
            .or_insert_with(|| {
                Arc::new(RunContext::read(run_dir).unwrap_or_else(|_| RunContext {
                    run_dir: run_dir.to_path_buf(),
                    ..Default::default()
                }))
            })
            .clone()
    }

    fn model(
        &mut self,
        key: PathBuf,
        load: impl FnOnce() -> Result<LoadedModel>,
    ) -> Result<Arc<LoadedModel>> {
        if let Some(i) = self.models.iter().position(|(k, _)| *k == key) {
            let entry = self.models.remove(i);
            let m = entry.1.clone();
            self.models.push(entry);
            return Ok(m);
        }
        let m = Arc::new(load()?);
        if self.models.len() >= CACHE {
            self.models.remove(0);
        }
        self.models.push((key, m.clone()));
        Ok(m)
    }

    fn column(
        &mut self,
        job: &ProbeJob,
        column: usize,
        emit: &mut dyn FnMut(JobEvent),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()> {
        let t0 = Instant::now();
        let ck = &job.checkpoints[column];
        let ctx = self.context(&job.run_dir);
        let status = |emit: &mut dyn FnMut(JobEvent), text: &str| {
            emit(JobEvent::Status {
                column,
                text: text.to_string(),
            })
        };
        status(emit, &format!("loading {}…", ck.name));
        let opts = ctx.load_options();
        let spec = ck.path.display().to_string();
        let model = self.model(ck.path.clone(), || load_checkpoint(&spec, &opts))?;
        if cancelled() {
            return Ok(());
        }
        let decoder = model.scoring_decoder()?;
        let tok = &model.tokenizer;
        status(emit, "scoring the question (choice)…");
        let scorer = ChoiceScorer::new(tok)?;
        let score = scorer.score(
            &decoder,
            std::slice::from_ref(&job.question),
            MAX_PROBE_TOKENS,
        )?;
        if let Some(s) = score.first() {
            emit(JobEvent::Choice {
                column,
                dist: s.calibrated,
            });
        }
        if cancelled() {
            return Ok(());
        }
        status(emit, &format!("sampling {} answers…", job.samples));
        let prompt = tok.prompt_text(&[Message::new("user", &job.question)])?;
        let mut ids = tok.encode(&prompt)?;
        if ids.len() > MAX_PROBE_TOKENS {
            ids.drain(..ids.len() - MAX_PROBE_TOKENS);
        }
        let answers = generate(
            &decoder,
            tok,
            &ids,
            job.samples,
            &job.params,
            &mut |sample, text| {
                if !cancelled() {
                    emit(JobEvent::Text {
                        column,
                        sample,
                        text: text.to_string(),
                    });
                }
            },
        )?;
        if cancelled() {
            return Ok(());
        }
        status(emit, "judging the answers…");
        let (judge_key, judge_model, judge_name) = match job.judge {
            JudgeChoice::StartingModel => {
                let key = PathBuf::from(format!("start:{}", job.run_dir.display()));
                let source = ctx.model_source.clone();
                let ctx2 = ctx.clone();
                let m = self
                    .model(key.clone(), move || ctx2.starting_model())
                    .context(
                        "the judge (the run's starting model; t switches to the checkpoint itself)",
                    )?;
                (key, m, format!("{source} (the run's starting model)"))
            }
            JudgeChoice::Checkpoint => (
                ck.path.clone(),
                model.clone(),
                format!("{} (the checkpoint itself)", ck.name),
            ),
        };
        let mut judge =
            LocalJudge::new(judge_model.decoder()?, &judge_model.tokenizer, &judge_name)?;
        let key = judge_key.display().to_string();
        if !self.checks.contains_key(&key) {
            status(emit, "checking the judge on answers of known stance…");
            let check = check_judge(&mut judge, &builtin_judge_cases())?;
            self.checks
                .insert(key.clone(), (check.summary(&judge_name), check.trusted()));
        }
        let (summary, trusted) = self.checks[&key].clone();
        emit(JobEvent::Judge {
            column,
            name: judge_name,
            check: Some(summary),
            trusted,
        });
        if cancelled() {
            return Ok(());
        }
        let pairs: Vec<(String, String)> = answers
            .iter()
            .map(|a| (job.question.clone(), a.text.clone()))
            .collect();
        let dists = judge.score(&pairs)?;
        for (sample, dist) in dists.into_iter().enumerate() {
            emit(JobEvent::Judged {
                column,
                sample,
                dist,
            });
        }
        emit(JobEvent::ColumnDone {
            column,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}

impl ProbeEngine for CandleEngine {
    fn run(
        &mut self,
        job: &ProbeJob,
        emit: &mut dyn FnMut(JobEvent),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()> {
        for column in 0..job.checkpoints.len() {
            if cancelled() {
                break;
            }
            // One checkpoint failing leaves the other's answers standing.
            if let Err(e) = self.column(job, column, emit, cancelled) {
                emit(JobEvent::Failed {
                    column: Some(column),
                    error: format!("{e:#}"),
                });
            }
        }
        Ok(())
    }
}
