//! The training loop: phases in order, each with its objective, data order,
//! schedule and snapshots; events to the log (and the dashboard); commands
//! from the user between optimizer steps.
//!
//! ```text
//! run ─ train ─┬─ reference_for(phase)      frozen policy of the phase before
//!              └─ run_phase ─┬─ begin_phase      event, optimizer, start probe
//!                            ├─ optimizer_step   step::gradients, clip, AdamW, event
//!                            └─ snapshot / probe at their cadence, then at the end
//! ```
//!
//! Snapshots, and what a full disk does to them, are in [`snapshot`].

mod snapshot;

use super::control::{Control, RunOutcome, TrainerHandle, EVENT_CHANNEL_CAPACITY};
use super::optim::{AdamW, AdamWConfig};
use super::phase::Phase;
use super::policy::Policy;
use super::prepare::Prepared;
use super::progress::Progress;
use super::step;
use crate::data::Batcher;
use crate::events::{
    self, AlertLevel, Event, EventLog, ProbeMethod, ProbeReason, RunStatus, SnapshotReason,
};
use crate::model::Decoder;
use crate::recipe::Algorithm;
use crate::rundir::RunDir;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

mod grpo_phase;
mod ppo_phase;
mod reward_phase;
pub use grpo_phase::completion_logps;
pub use reward_phase::reward_model_dir;

/// The running trainer.
struct Trainer {
    prep: Prepared,
    /// The phases, shared so a phase can be borrowed while the trainer
    /// mutates itself.
    phases: Arc<Vec<Phase>>,
    log: EventLog,
    sink: Option<tokio::sync::mpsc::Sender<Event>>,
    control: mpsc::Receiver<Control>,
    policy: Policy,
    progress: Option<Progress>,
    losses: Vec<f64>,
    global_step: u64,
    started: Instant,
    paused: bool,
    stop_requested: bool,
    /// The optimizer of the phase under way.
    opt: Option<AdamW>,
    /// The snapshot holding the current phase's reference model.
    reference_snapshot: Option<String>,
    /// Input tokens seen so far in the phase under way (TRL's `num_tokens`).
    phase_input_tokens: u64,
    /// The last successful probe, reused by a phase's start probe when no
    /// step ran since (the previous phase's end measured the same weights).
    last_probe: Option<events::ProbeEvent>,
    /// The newest snapshot sealed (relative to the run): the one a resume
    /// would use, and the reference of a preference phase that follows.
    newest_snapshot: Option<String>,
    /// Why the run stopped early, for its `run_end` (a snapshot that could
    /// not be written).
    end_message: Option<String>,
    /// A PPO phase's value model (trained; written into its snapshots).
    value: Option<ppo_phase::ValueModel>,
}

/// Start the trainer on its own thread.
pub fn spawn(prep: Prepared) -> Result<TrainerHandle> {
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let run_dir = prep.run_dir.root().to_path_buf();
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || run(prep, ctl_rx, Some(ev_tx)))?;
    Ok(TrainerHandle {
        control: ctl_tx,
        events: ev_rx,
        thread,
        run_dir,
    })
}

/// Run to the end on this thread.
pub fn run(
    mut prep: Prepared,
    control: mpsc::Receiver<Control>,
    sink: Option<tokio::sync::mpsc::Sender<Event>>,
) -> Result<RunOutcome> {
    let log = EventLog::open(&prep.run_dir.events_log())?;
    let policy = Policy::new(
        &prep.model,
        prep.recipe.recipe.model.lora.as_ref(),
        prep.recipe.recipe.run.seed,
        prep.resume.as_ref().map(|r| r.dir.as_path()),
    )?;
    let progress = prep.progress.then(Progress::new);
    let phases = Arc::new(std::mem::take(&mut prep.phases));
    let mut t = Trainer {
        prep,
        phases,
        log,
        sink,
        control,
        policy,
        progress,
        losses: Vec::new(),
        global_step: 0,
        started: Instant::now(),
        paused: false,
        stop_requested: false,
        opt: None,
        reference_snapshot: None,
        phase_input_tokens: 0,
        last_probe: None,
        newest_snapshot: None,
        end_message: None,
        value: None,
    };
    match t.train() {
        Ok(outcome) => Ok(outcome),
        Err(err) => {
            let msg = format!("{err:#}");
            t.emit(Event::RunEnd(events::RunEnd {
                t: events::now(),
                status: RunStatus::Failed,
                global_step: t.global_step,
                seconds: t.started.elapsed().as_secs_f64(),
                message: Some(msg),
            }))
            .ok();
            t.log.sync().ok();
            Err(err)
        }
    }
}

/// How a phase ended.
struct PhaseDone {
    stopped: bool,
}

/// What an optimizer step did, for [`Trainer::record_step`].
struct StepDone {
    loss: f64,
    lr: f64,
    grad_norm: f64,
    /// Tokens processed (the event's `tokens`).
    tokens: u64,
    /// Input tokens, added to the phase's cumulative `num_tokens`.
    input_tokens: u64,
    metrics: BTreeMap<String, f64>,
    /// A sample of the rollouts an RL step trained on, logged before it.
    rollouts: Option<Vec<events::Rollout>>,
}

impl Trainer {
    fn emit(&mut self, e: Event) -> Result<()> {
        self.log.append(&e)?;
        if let Some(p) = &mut self.progress {
            p.event(&e);
        }
        if let Some(tx) = &self.sink {
            // A closed dashboard is not the trainer's failure.
            let _ = tx.blocking_send(e);
        }
        Ok(())
    }

    fn alert(&mut self, level: AlertLevel, message: String) -> Result<()> {
        self.emit(Event::Alert(events::Alert {
            t: events::now(),
            level,
            message,
            global_step: self.global_step,
        }))
    }

    fn train(&mut self) -> Result<RunOutcome> {
        let (start_phase, start_step) = self.resume_position();
        let start = self.run_start_event();
        self.emit(start)?;
        for w in std::mem::take(&mut self.prep.warnings) {
            self.alert(AlertLevel::Warning, w)?;
        }
        // A resumed run's estimates too: the machine may have changed.
        for m in std::mem::take(&mut self.prep.memory) {
            self.alert(AlertLevel::Info, m)?;
        }
        if self.policy.decoder.device().is_cpu() {
            if let Some(w) = crate::model::fused::cpu_kernel_warning() {
                self.alert(AlertLevel::Warning, w)?;
            }
            if let Some(mkl) = crate::model::blas::active() {
                self.alert(AlertLevel::Info, mkl.describe())?;
            }
        }
        let notes = self
            .prep
            .prober
            .as_mut()
            .map(|p| std::mem::take(&mut p.notes))
            .unwrap_or_default();
        for (level, msg) in notes {
            self.alert(level, msg)?;
        }
        // A run resumed within a preference phase reloads its reference.
        let mut reference: Option<(Decoder, Option<String>)> = None;
        if let Some(res) = &self.prep.resume {
            if let (true, Some(rel)) = (start_phase == res.state.phase, &res.state.reference) {
                let dir = self.prep.run_dir.path_of(rel);
                let seed = self.prep.recipe.recipe.run.seed;
                let decoder = self.policy.load_reference(&self.prep.model, &dir, seed)?;
                reference = Some((decoder, Some(rel.clone())));
            }
        }
        self.newest_snapshot = self
            .prep
            .resume
            .as_ref()
            .and_then(|res| res.dir.file_name())
            .map(|n| RunDir::snapshot_rel(&n.to_string_lossy()));
        let phases = Arc::clone(&self.phases);
        for (pi, phase) in phases.iter().enumerate().skip(start_phase) {
            let first_step = if pi == start_phase { start_step } else { 0 };
            let reference = match reference.take() {
                Some(r) => Some(r),
                None => self.reference_for(pi, phase)?,
            };
            if self.stop_requested {
                // The reference snapshot could not be written.
                return self.finish(RunStatus::Stopped);
            }
            self.reference_snapshot = reference.as_ref().and_then(|r| r.1.clone());
            let done = if phase.cfg.algorithm == Algorithm::Reward {
                self.run_reward_phase(pi, phase, first_step)?
            } else {
                self.run_phase(pi, phase, first_step, reference.as_ref().map(|r| &r.0))?
            };
            if done.stopped {
                return self.finish(RunStatus::Stopped);
            }
        }
        self.finish(RunStatus::Completed)
    }

    /// Phase and step a run starts at (after its resume snapshot, if any);
    /// restores the step count and loss history of a resumed run.
    fn resume_position(&mut self) -> (usize, u64) {
        let Some(res) = &self.prep.resume else {
            return (0, 0);
        };
        let s = &res.state;
        self.global_step = s.global_step;
        self.losses = s.losses.clone();
        self.losses.truncate(s.global_step as usize);
        if s.step >= s.phase_steps {
            (s.phase + 1, 0)
        } else {
            (s.phase, s.step)
        }
    }

    fn run_start_event(&self) -> Event {
        let r = &self.prep.recipe.recipe;
        let model = &self.prep.model;
        let trainable: u64 = self
            .policy
            .vars
            .values()
            .map(|v| v.elem_count() as u64)
            .sum();
        let mut versions = BTreeMap::new();
        versions.insert("driftui".to_string(), env!("CARGO_PKG_VERSION").to_string());
        versions.insert("candle".to_string(), "0.11".to_string());
        Event::RunStart(events::RunStart {
            schema: events::SCHEMA_VERSION,
            t: events::now(),
            run: r.run.name.clone(),
            seed: r.run.seed,
            recipe: self.prep.recipe.text.clone(),
            model: events::ModelInfo {
                source: model.source.clone(),
                architecture: model.cfg.architecture.name().into(),
                parameters: model.cfg.parameter_count(),
                trainable,
                dtype: r.model.dtype.clone(),
                device: format!("{:?}", self.policy.decoder.device()).to_lowercase(),
            },
            phases: self
                .phases
                .iter()
                .map(|p| events::PhasePlan {
                    name: p.cfg.name.clone(),
                    algorithm: p.cfg.algorithm.name().into(),
                    steps: p.steps,
                })
                .collect(),
            versions,
            resumed_from: self.prep.resume.as_ref().map(|res| {
                Box::new(events::ResumePoint {
                    phase: res.state.phase,
                    step: res.state.step,
                    global_step: res.state.global_step,
                    snapshot: res.dir.display().to_string(),
                    parent_run: res.parent.as_ref().map(|p| p.root().display().to_string()),
                })
            }),
            config: None,
            trace: None,
        })
    }

    /// The frozen reference of phase `pi` (the policy as the phase before
    /// left it) and the snapshot that holds it, when the phase needs one.
    /// `None` too when the reference had to be written and could not be:
    /// the run is then stopping.
    fn reference_for(
        &mut self,
        pi: usize,
        phase: &Phase,
    ) -> Result<Option<(Decoder, Option<String>)>> {
        if !phase.objective.needs_reference() {
            return Ok(None);
        }
        let decoder = self.policy.frozen_copy()?;
        let held_in = match self.newest_snapshot.clone() {
            Some(s) => s,
            None => {
                // The first phase is a preference phase: the reference is
                // the starting model; keep it on disk for resumes.
                self.opt = None;
                self.reference_snapshot = None;
                match self.snapshot(pi, 0, SnapshotReason::Reference)? {
                    Some(s) => s,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some((decoder, Some(held_in))))
    }

    fn finish(&mut self, status: RunStatus) -> Result<RunOutcome> {
        self.emit(Event::RunEnd(events::RunEnd {
            t: events::now(),
            status,
            global_step: self.global_step,
            seconds: self.started.elapsed().as_secs_f64(),
            message: self.end_message.clone(),
        }))?;
        self.log.sync()?;
        Ok(RunOutcome {
            status,
            run_dir: self.prep.run_dir.root().to_path_buf(),
            global_step: self.global_step,
            losses: self.losses.clone(),
        })
    }

    /// Drain queued commands; while paused, block until resumed or stopped.
    fn poll_control(&mut self, phase: usize, step: u64) -> Result<()> {
        loop {
            let cmd = if self.paused {
                match self.control.recv() {
                    Ok(c) => Some(c),
                    // Nobody can resume us: stop.
                    Err(_) => Some(Control::Stop),
                }
            } else {
                self.control.try_recv().ok()
            };
            let Some(cmd) = cmd else { return Ok(()) };
            match cmd {
                Control::Pause if !self.paused => {
                    self.paused = true;
                    self.emit(Event::Pause(events::Marker {
                        t: events::now(),
                        global_step: self.global_step,
                        reason: "user".into(),
                    }))?;
                }
                Control::Resume if self.paused => {
                    self.paused = false;
                    self.emit(Event::Resume(events::Marker {
                        t: events::now(),
                        global_step: self.global_step,
                        reason: "user".into(),
                    }))?;
                }
                Control::Snapshot => {
                    self.snapshot(phase, step, SnapshotReason::Manual)?;
                }
                Control::ProbeNow => {
                    self.probe(phase, step, ProbeReason::Manual)?;
                }
                Control::Stop => {
                    self.stop_requested = true;
                    if self.paused {
                        self.paused = false;
                    }
                    return Ok(());
                }
                _ => {}
            }
            if !self.paused && self.stop_requested {
                return Ok(());
            }
        }
    }

    fn probe(&mut self, phase: usize, step: u64, reason: ProbeReason) -> Result<()> {
        let Some(prober) = self.prep.prober.as_mut() else {
            if reason == ProbeReason::Manual {
                self.alert(
                    AlertLevel::Warning,
                    "the recipe has no [probe] table: nothing to probe".into(),
                )?;
            }
            return Ok(());
        };
        let reusable = self.last_probe.as_ref().filter(|p| {
            reason == ProbeReason::PhaseStart
                && p.global_step == self.global_step
                && p.method == ProbeMethod::Choice
                && p.error.is_none()
        });
        let event = match reusable {
            Some(p) => events::ProbeEvent {
                t: events::now(),
                phase,
                step,
                reason,
                seconds: 0.0,
                ..p.clone()
            },
            None => prober.run(&self.policy.decoder, phase, step, self.global_step, reason),
        };
        if event.error.is_none() {
            self.last_probe = Some(event.clone());
        }
        self.emit(Event::Probe(event))
    }

    /// Train phase `pi` from `first_step` to its end (or a stop).
    fn run_phase(
        &mut self,
        pi: usize,
        phase: &Phase,
        first_step: u64,
        reference: Option<&Decoder>,
    ) -> Result<PhaseDone> {
        let phase_started = Instant::now();
        // An RL phase's reward source, loaded (and checked) before it starts.
        let mut rewards = match phase.cfg.algorithm {
            Algorithm::Grpo | Algorithm::Ppo => Some(self.reward_source(pi, phase)?),
            _ => None,
        };
        if let (Algorithm::Ppo, Some(source)) = (phase.cfg.algorithm, rewards.as_ref()) {
            self.value = Some(self.value_model(pi, phase, first_step, source)?);
            // TRL's PPOTrainer turns dropout off in every model it holds: the
            // log-probs a response was sampled with are the first epoch's.
            self.policy.decoder.set_lora_dropout(0.0);
        }
        self.begin_phase(pi, phase, first_step)?;
        let seed = self.prep.recipe.recipe.run.seed;
        let mut batcher = Batcher::new(phase.data.len(), seed, pi, phase.cfg.shuffle);
        let probe_every = self.prep.prober.as_ref().map(|p| p.every()).unwrap_or(0);
        let snap_every = phase.cfg.snapshot_every;
        let mut stopped = false;
        let mut step = first_step;
        while step < phase.steps {
            self.poll_control(pi, step)?;
            if self.stop_requested {
                stopped = true;
                break;
            }
            // On a CPU each step (an RL step's sampling and rewards too) runs
            // as one job on a pool worker, so that each of its parallel ops
            // starts from a worker (fused::on_pool). The same bits. SmolLM2
            // 1 × 128, AMX Xeon, alternated: LoRA 196-201 -> 216-220 tok/s,
            // full 135-138 -> 145-151; the demo recipes' GRPO and PPO
            // phases about 10% faster.
            let dev = self.policy.decoder.device().clone();
            crate::model::fused::on_pool(&dev, || match rewards.as_mut() {
                Some(source) if phase.cfg.algorithm == Algorithm::Ppo => {
                    self.ppo_step(pi, phase, step, reference, &mut batcher, source)
                }
                Some(source) => self.grpo_step(pi, phase, step, reference, &mut batcher, source),
                None => self.optimizer_step(pi, phase, step, reference, &mut batcher),
            })?;
            step += 1;
            if snap_every > 0 && step.is_multiple_of(snap_every) && step < phase.steps {
                self.snapshot(pi, step, SnapshotReason::Cadence)?;
            }
            let probe_due = probe_every > 0 && step.is_multiple_of(probe_every);
            if probe_due && step < phase.steps && !self.stop_requested {
                self.probe(pi, step, ProbeReason::Periodic)?;
            }
        }
        let ended = self.phase_end_snapshot(pi, step, stopped);
        self.value = None;
        if let (Algorithm::Ppo, Some(lora)) = (phase.cfg.algorithm, &self.policy.lora) {
            self.policy.decoder.set_lora_dropout(lora.dropout);
        }
        if !ended? {
            return Ok(PhaseDone { stopped: true });
        }
        if !stopped {
            self.probe(pi, step, ProbeReason::PhaseEnd)?;
            self.emit(Event::PhaseEnd(events::PhaseEnd {
                t: events::now(),
                phase: pi,
                steps: step,
                global_step: self.global_step,
                seconds: phase_started.elapsed().as_secs_f64(),
            }))?;
            self.log.sync()?;
        }
        Ok(PhaseDone { stopped })
    }

    /// The phase's start event, a fresh optimizer (restored from the resume
    /// snapshot when resuming within this phase) and the start probe.
    fn begin_phase(&mut self, pi: usize, phase: &Phase, first_step: u64) -> Result<()> {
        self.emit(Event::PhaseStart(events::PhaseStart {
            t: events::now(),
            phase: pi,
            name: phase.cfg.name.clone(),
            algorithm: phase.cfg.algorithm.name().into(),
            steps: phase.steps,
            global_step: self.global_step - first_step,
        }))?;
        self.opt = None;
        self.phase_input_tokens = 0;
        let mut opt = AdamW::new(
            &self.policy.vars,
            AdamWConfig {
                weight_decay: phase.cfg.weight_decay,
                ..Default::default()
            },
        )?;
        if let Some(res) = &self.prep.resume {
            if res.state.phase == pi && first_step > 0 {
                let st = candle_core::safetensors::load(
                    res.dir.join("optimizer.safetensors"),
                    self.policy.decoder.device(),
                )
                .with_context(|| format!("the optimizer state in {}", res.dir.display()))?;
                let st: BTreeMap<String, Tensor> = st.into_iter().collect();
                opt.load_state(&st, res.state.optimizer_step)?;
                self.phase_input_tokens = res.state.phase_input_tokens;
            }
        }
        self.opt = Some(opt);
        if first_step == 0 {
            self.probe(pi, 0, ProbeReason::PhaseStart)?;
        }
        Ok(())
    }

    /// Step `step` (0-based) of the phase: gradients over the accumulated
    /// micro-batches, clipping, the update, the `step` event; a non-finite
    /// loss or gradient skips the update and pauses (stops, headless).
    fn optimizer_step(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        reference: Option<&Decoder>,
        batcher: &mut Batcher,
    ) -> Result<()> {
        let t0 = Instant::now();
        let cfg = &phase.cfg;
        let lr = phase.lr_at(step);
        let accum = cfg.grad_accum as u64;
        let micro: Vec<(u64, Vec<usize>)> = (0..accum)
            .map(|a| {
                let m = step * accum + a;
                (m, batcher.micro_batch(m, cfg.batch_size))
            })
            .collect();
        let poison = self.prep.inject_nan_at == Some(self.global_step + 1);
        let (policy, pad) = (&self.policy, self.prep.model.tokenizer.pad_id);
        let seed = self.prep.recipe.recipe.run.seed;
        let opt = self.opt.as_mut().context("no optimizer")?;
        // (run_phase runs the whole step on a pool worker.)
        let g = step::gradients(policy, reference, phase, &micro, pad, seed, poison)?;
        let grad_norm = if g.loss.is_finite() {
            step::update(opt, &g.grads, lr, cfg.max_grad_norm())?
        } else {
            f64::NAN
        };
        let finite = g.loss.is_finite() && grad_norm.is_finite();
        self.record_step(
            pi,
            phase,
            step,
            t0,
            StepDone {
                loss: g.loss,
                lr,
                grad_norm,
                tokens: g.tokens,
                input_tokens: g.input_tokens,
                metrics: g.metrics,
                rollouts: None,
            },
        )?;
        if !finite {
            self.not_finite(&cfg.name, step + 1, g.loss.is_finite())?;
        }
        Ok(())
    }

    /// Count a finished optimizer step (global step, loss history, the
    /// phase's input tokens) and log it: its rollouts, if any, then the
    /// `step` event, with TRL's `num_tokens` where the objective logs it.
    fn record_step(
        &mut self,
        pi: usize,
        phase: &Phase,
        step: u64,
        started: Instant,
        mut done: StepDone,
    ) -> Result<()> {
        self.global_step += 1;
        self.losses.push(done.loss);
        self.phase_input_tokens += done.input_tokens;
        if phase.objective.logs_num_tokens() {
            done.metrics
                .insert("num_tokens".into(), self.phase_input_tokens as f64);
        }
        if let Some(samples) = done.rollouts {
            self.emit(Event::Rollouts(events::RolloutsEvent {
                t: events::now(),
                phase: pi,
                step: step + 1,
                global_step: self.global_step,
                samples,
            }))?;
        }
        self.emit(Event::Step(events::StepEvent {
            t: events::now(),
            phase: pi,
            step: step + 1,
            global_step: self.global_step,
            loss: done.loss,
            lr: done.lr,
            grad_norm: done.grad_norm,
            tokens: done.tokens,
            seconds: started.elapsed().as_secs_f64(),
            metrics: done.metrics,
        }))
    }

    /// After a step whose loss or gradient was not finite: alert, then pause
    /// (live) or stop with a snapshot of the last good weights (headless).
    fn not_finite(&mut self, phase_name: &str, step: u64, loss_finite: bool) -> Result<()> {
        let what = if loss_finite { "gradient norm" } else { "loss" };
        self.halt(
            format!(
                "{phase_name} step {step}: the {what} is not finite; the update was not applied and training is paused \
                 (snapshot, resume to go on with the next batch, or stop)"
            ),
            what,
        )
    }

    /// An error alert, then pause (live) or stop (headless): nobody can
    /// resume a headless run.
    fn halt(&mut self, message: String, what: &str) -> Result<()> {
        self.alert(AlertLevel::Error, message)?;
        if self.sink.is_none() {
            // Headless: nobody can resume.
            self.stop_requested = true;
        } else {
            self.paused = true;
            self.emit(Event::Pause(events::Marker {
                t: events::now(),
                global_step: self.global_step,
                reason: format!("non-finite {what}"),
            }))?;
        }
        Ok(())
    }
}
