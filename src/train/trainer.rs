//! The training loop: phases in order, each with its objective, data order,
//! schedule and snapshots; events to the log (and the dashboard); commands
//! from the user between optimizer steps.

use super::control::{Control, RunOutcome, TrainerHandle, EVENT_CHANNEL_CAPACITY};
use super::objectives::{self, LossOut, Objective, PairLogps};
use super::optim::{collect_grads, AdamW, AdamWConfig};
use super::progress::Progress;
use super::schedule::lr_at;
use super::snapshot::{self, SnapshotWriter, TrainerState, STATE_VERSION};
use crate::data::{
    self, Batcher, DataKind, Example, PromptCompletion, SeqBatch, TemplateChoice, TokenSeq,
};
use crate::events::{self, Event, EventLog};
use crate::model::weights::{save_tensors, TensorMap};
use crate::model::{load_model, Decoder, LoadOptions, LoadedModel, Mode};
use crate::probe::Prober;
use crate::recipe::{self, Algorithm, LoadedRecipe, PhaseConfig};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// What `driftui train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub recipe: PathBuf,
    /// Write the run into this directory instead of `OUTPUT_DIR/NAME-TIME`.
    pub output: Option<PathBuf>,
    /// Continue from this snapshot.
    pub resume: Option<PathBuf>,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// Fault injection for tests: make this global step's loss NaN.
    pub inject_nan_at_step: Option<u64>,
}

/// A phase's tokenized data.
enum PhaseData {
    Sft(Vec<TokenSeq>),
    Pairs(Vec<(PromptCompletion, PromptCompletion)>),
    Kto(Vec<(PromptCompletion, bool)>),
}

impl PhaseData {
    fn len(&self) -> usize {
        match self {
            PhaseData::Sft(v) => v.len(),
            PhaseData::Pairs(v) => v.len(),
            PhaseData::Kto(v) => v.len(),
        }
    }
}

struct Phase {
    cfg: PhaseConfig,
    objective: Objective,
    data: PhaseData,
    steps: u64,
    warmup: u64,
}

/// Where a resumed run starts.
struct ResumeFrom {
    dir: PathBuf,
    state: TrainerState,
}

/// Everything loaded and checked before the first step; nothing can fail for
/// want of a file after this.
pub struct Prepared {
    recipe: LoadedRecipe,
    run_dir: PathBuf,
    model: LoadedModel,
    phases: Vec<Phase>,
    resume: Option<ResumeFrom>,
    progress: bool,
    prober: Option<Prober>,
    /// Warnings found while preparing (truncated rows, ...), logged as alerts.
    warnings: Vec<String>,
    inject_nan_at: Option<u64>,
}

impl Prepared {
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

fn parse_dtype(s: &str) -> DType {
    match s {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    }
}

/// The candle device a recipe names.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "cpu" => Device::Cpu,
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0)?
            } else if candle_core::utils::metal_is_available() {
                Device::new_metal(0)?
            } else {
                Device::Cpu
            }
        }
        "metal" => Device::new_metal(0).context(
            "device \"metal\": this build has no Metal support (build with --features metal)",
        )?,
        other => {
            let n = other
                .strip_prefix("cuda")
                .map(|r| r.trim_start_matches(':'))
                .map(|r| {
                    if r.is_empty() {
                        Ok(0)
                    } else {
                        r.parse::<usize>()
                    }
                })
                .ok_or_else(|| anyhow!("unknown device \"{other}\""))??;
            Device::new_cuda(n).with_context(|| {
                format!("device \"{other}\": no CUDA device (driftui needs --features cuda and a GPU for it)")
            })?
        }
    })
}

/// Load the recipe, model and datasets, and create the run directory.
pub fn prepare(opts: &TrainOptions) -> Result<Prepared> {
    let recipe = recipe::load(&opts.recipe)?;
    let r = &recipe.recipe;
    let mut warnings = Vec::new();

    let resume = match &opts.resume {
        Some(dir) => {
            let state = snapshot::read_state(dir)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            if state.phase >= r.phases.len() || r.phases[state.phase].name != state.phase_name {
                bail!(
                    "cannot resume from {}: it was taken in phase \"{}\", which the recipe {} does not have at position {}",
                    dir.display(),
                    state.phase_name,
                    opts.recipe.display(),
                    state.phase + 1
                );
            }
            Some(ResumeFrom {
                dir: dir.clone(),
                state,
            })
        }
        None => None,
    };

    let load_opts = LoadOptions {
        dtype: parse_dtype(&r.model.dtype),
        device: parse_device(&r.model.device)?,
        seed: r.run.seed,
        template: match r.model.chat_template.as_str() {
            "model" => TemplateChoice::Model,
            "none" => TemplateChoice::None,
            custom => TemplateChoice::Custom(custom.to_string()),
        },
        base_dir: recipe.base_dir(),
    };
    let model = load_model(&r.model.source, &load_opts)
        .with_context(|| format!("loading the model of {}", opts.recipe.display()))?;

    let mut phases = Vec::new();
    for p in &r.phases {
        let path = recipe.resolve(&p.dataset);
        let kind = match p.algorithm {
            Algorithm::Sft => DataKind::Sft,
            Algorithm::Kto => DataKind::Kto,
            _ => DataKind::Preference,
        };
        let examples =
            data::load_jsonl(&path, kind).with_context(|| format!("phase \"{}\"", p.name))?;
        let (data, truncated) = tokenize_phase(&model, &examples, p)
            .with_context(|| format!("tokenizing {} for phase \"{}\"", path.display(), p.name))?;
        if truncated > 0 {
            warnings.push(format!(
                "phase \"{}\": {truncated} of {} rows are longer than max_len = {} tokens and were truncated",
                p.name,
                data.len(),
                p.max_len
            ));
        }
        let per_step = (p.batch_size * p.grad_accum) as f64;
        let steps = match (p.steps, p.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => ((e * data.len() as f64) / per_step).ceil().max(1.0) as u64,
            (None, None) => unreachable!("validated"),
        };
        phases.push(Phase {
            objective: p.objective(),
            warmup: p.warmup(steps),
            cfg: p.clone(),
            data,
            steps,
        });
    }

    let prober = match &r.probe {
        Some(cfg) => Some(Prober::new(cfg, &recipe, &model)?),
        None => None,
    };

    let run_dir = match (&resume, &opts.output) {
        (Some(res), _) => res
            .dir
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .context("the snapshot is not inside a run directory (RUN/snapshots/NAME)")?,
        (None, Some(out)) => {
            if out.exists()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                bail!(
                    "the output directory {} exists and is not empty",
                    out.display()
                );
            }
            out.clone()
        }
        (None, None) => {
            let base = recipe.resolve(&r.run.output_dir);
            let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
            let mut dir = base.join(format!("{}-{stamp}", r.run.name));
            let mut n = 2;
            while dir.exists() {
                dir = base.join(format!("{}-{stamp}-{n}", r.run.name));
                n += 1;
            }
            dir
        }
    };
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    if resume.is_none() {
        std::fs::write(run_dir.join("recipe.toml"), &recipe.text).with_context(|| {
            format!("cannot write into the run directory {}", run_dir.display())
        })?;
    } else if let Ok(old) = std::fs::read_to_string(run_dir.join("recipe.toml")) {
        if old != recipe.text {
            warnings.push(format!(
                "the recipe {} differs from the one this run started with (its copy is in {}); the resumed run follows the new one",
                opts.recipe.display(),
                run_dir.join("recipe.toml").display()
            ));
        }
    }

    Ok(Prepared {
        recipe,
        run_dir,
        model,
        phases,
        resume,
        progress: opts.progress,
        prober,
        warnings,
        inject_nan_at: opts.inject_nan_at_step,
    })
}

fn tokenize_phase(
    model: &LoadedModel,
    examples: &[Example],
    p: &PhaseConfig,
) -> Result<(PhaseData, usize)> {
    let tok = &model.tokenizer;
    let mut truncated = 0;
    let data = match p.algorithm {
        Algorithm::Sft => {
            let mut seqs = Vec::with_capacity(examples.len());
            for ex in examples {
                let mut s = data::tokenize_sft(tok, ex)?;
                if s.len() > p.max_len {
                    // As for preference data: keep the end of the context and
                    // the start of the answer, so no row loses its answer.
                    let first = s.trained.iter().position(|&t| t).unwrap_or(0);
                    let (keep_ctx, keep_rest) =
                        data::truncate_pair(first, s.len() - first, p.max_len);
                    let range = first - keep_ctx..first + keep_rest;
                    s.ids = s.ids[range.clone()].to_vec();
                    s.trained = s.trained[range].to_vec();
                    truncated += 1;
                }
                if s.trained_targets() == 0 {
                    bail!(
                        "a row has no answer tokens left after truncation to max_len = {}",
                        p.max_len
                    );
                }
                seqs.push(s);
            }
            PhaseData::Sft(seqs)
        }
        Algorithm::Kto => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Kto(k) = ex else {
                    bail!("not a KTO row")
                };
                let pc = data::tokenize_prompt_completion(tok, &k.prompt, &k.completion)?;
                if pc.prompt.len() + pc.completion.len() > p.max_len {
                    truncated += 1;
                }
                rows.push((pc, k.label));
            }
            if !rows.iter().any(|r| r.1) || rows.iter().all(|r| r.1) {
                tracing::warn!("KTO data has only one label");
            }
            PhaseData::Kto(rows)
        }
        _ => {
            let mut rows = Vec::with_capacity(examples.len());
            for ex in examples {
                let Example::Preference(pp) = ex else {
                    bail!("not a preference row")
                };
                let c = data::tokenize_prompt_completion(tok, &pp.prompt, &pp.chosen)?;
                let r = data::tokenize_prompt_completion(tok, &pp.prompt, &pp.rejected)?;
                if c.prompt.len() + c.completion.len().max(r.completion.len()) > p.max_len {
                    truncated += 1;
                }
                rows.push((c, r));
            }
            PhaseData::Pairs(rows)
        }
    };
    Ok((data, truncated))
}

/// The model being trained: a decoder over trainable variables.
struct Policy {
    decoder: Decoder,
    /// Trainable variables by name (HF names; PEFT names for LoRA adapters).
    vars: BTreeMap<String, Var>,
    /// Frozen base weights (LoRA only).
    base: Option<TensorMap>,
    lora: Option<crate::recipe::LoraConfig>,
}

impl Policy {
    /// Full fine-tuning: every weight a variable.
    fn full(model: &LoadedModel, weights: &TensorMap) -> Result<Self> {
        let mut vars = BTreeMap::new();
        let mut tensors = TensorMap::new(weights.origin.clone());
        for (name, t) in &weights.tensors {
            let v = Var::from_tensor(&t.copy()?)?;
            tensors.tensors.insert(name.clone(), v.as_tensor().clone());
            vars.insert(name.clone(), v);
        }
        let decoder = Decoder::from_weights(&model.cfg, &mut tensors)?;
        Ok(Self {
            decoder,
            vars,
            base: None,
            lora: None,
        })
    }

    /// Current weights as plain tensors (copies), HF names, adapters merged.
    fn merged_weights(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new("the policy");
        match &self.base {
            None => {
                for (n, v) in &self.vars {
                    out.tensors
                        .insert(n.clone(), v.as_tensor().detach().copy()?);
                }
            }
            Some(base) => {
                let adapters: BTreeMap<String, Tensor> = self
                    .vars
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                    .collect();
                out = crate::model::lora_merge(
                    base,
                    &adapters,
                    self.lora.as_ref().context("LoRA config")?,
                )?;
            }
        }
        Ok(out)
    }

    /// A frozen copy (the reference model of a preference phase).
    fn frozen_copy(&self, model: &LoadedModel) -> Result<Decoder> {
        let mut w = self.merged_weights()?;
        Decoder::from_weights(&model.cfg, &mut w)
    }
}

/// The running trainer.
struct Trainer {
    prep: Prepared,
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
    /// Fault injection for tests: the global step whose loss is made NaN.
    inject_nan_at: Option<u64>,
    /// The last successful probe, reused by a phase's start probe when no
    /// step ran since (the previous phase's end measured the same weights).
    last_probe: Option<events::ProbeEvent>,
}

/// Start the trainer on its own thread.
pub fn spawn(prep: Prepared) -> Result<TrainerHandle> {
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let run_dir = prep.run_dir.clone();
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
    prep: Prepared,
    control: mpsc::Receiver<Control>,
    sink: Option<tokio::sync::mpsc::Sender<Event>>,
) -> Result<RunOutcome> {
    let log = EventLog::open(&prep.run_dir.join("events.jsonl"))?;
    let policy = build_policy(&prep)?;
    let progress = prep.progress.then(Progress::new);
    let mut t = Trainer {
        prep,
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
        inject_nan_at: None,
        last_probe: None,
    };
    t.inject_nan_at = t.prep.inject_nan_at;
    match t.train() {
        Ok(outcome) => Ok(outcome),
        Err(err) => {
            let msg = format!("{err:#}");
            t.emit(Event::RunEnd(events::RunEnd {
                t: events::now(),
                status: "failed".into(),
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

fn build_policy(prep: &Prepared) -> Result<Policy> {
    let model = &prep.model;
    let lora = prep.recipe.recipe.model.lora.clone();
    let policy = match (&prep.resume, &lora) {
        (None, None) => Policy::full(model, &model.weights)?,
        (Some(res), None) => {
            let w = TensorMap::load_safetensors(
                &[res.dir.join("model.safetensors")],
                model
                    .weights
                    .tensors
                    .values()
                    .next()
                    .map(|t| t.device())
                    .unwrap_or(&Device::Cpu),
                model
                    .weights
                    .tensors
                    .values()
                    .next()
                    .map(|t| t.dtype())
                    .unwrap_or(DType::F32),
            )?;
            Policy::full(model, &w).with_context(|| {
                format!(
                    "the snapshot {} does not fit the recipe's model",
                    res.dir.display()
                )
            })?
        }
        (res, Some(cfg)) => {
            let adapters = match res {
                Some(r) => Some(
                    crate::model::lora::load_adapters(&r.dir, &model.weights)
                        .with_context(|| format!("loading the adapters of {}", r.dir.display()))?,
                ),
                None => None,
            };
            let (decoder, vars) =
                crate::model::lora::attach(model, cfg, prep.recipe.recipe.run.seed, adapters)?;
            Policy {
                decoder,
                vars,
                base: Some(model.weights.clone()),
                lora: Some(cfg.clone()),
            }
        }
    };
    Ok(policy)
}

/// Sum of two gradient maps (accumulation).
fn add_grads(acc: &mut BTreeMap<String, Tensor>, g: BTreeMap<String, Tensor>) -> Result<()> {
    for (n, t) in g {
        match acc.get_mut(&n) {
            Some(a) => *a = (&*a + &t)?,
            None => {
                acc.insert(n, t);
            }
        }
    }
    Ok(())
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

    fn alert(&mut self, level: &str, message: String) -> Result<()> {
        self.emit(Event::Alert(events::Alert {
            t: events::now(),
            level: level.into(),
            message,
            global_step: self.global_step,
        }))
    }

    fn train(&mut self) -> Result<RunOutcome> {
        let r = &self.prep.recipe.recipe;
        let model = &self.prep.model;
        let phases_plan: Vec<events::PhasePlan> = self
            .prep
            .phases
            .iter()
            .map(|p| events::PhasePlan {
                name: p.cfg.name.clone(),
                algorithm: p.cfg.algorithm.name().into(),
                steps: p.steps,
            })
            .collect();
        let trainable: u64 = self
            .policy
            .vars
            .values()
            .map(|v| v.elem_count() as u64)
            .sum();
        let (start_phase, start_step) = match &self.prep.resume {
            Some(res) => {
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
            None => (0, 0),
        };
        let mut versions = BTreeMap::new();
        versions.insert("driftui".to_string(), env!("CARGO_PKG_VERSION").to_string());
        versions.insert("candle".to_string(), "0.11".to_string());
        let start = Event::RunStart(events::RunStart {
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
            phases: phases_plan,
            versions,
            resumed_from: self.prep.resume.as_ref().map(|res| events::ResumePoint {
                phase: res.state.phase,
                step: res.state.step,
                global_step: res.state.global_step,
                snapshot: res.dir.display().to_string(),
            }),
        });
        self.emit(start)?;
        for w in std::mem::take(&mut self.prep.warnings) {
            self.alert("warning", w)?;
        }
        let notes = self
            .prep
            .prober
            .as_mut()
            .map(|p| std::mem::take(&mut p.notes))
            .unwrap_or_default();
        for (level, msg) in notes {
            self.alert(&level, msg)?;
        }

        let mut reference: Option<Decoder> = None;
        let mut reference_snapshot: Option<String> = None;
        if let Some(res) = &self.prep.resume {
            if start_phase == res.state.phase {
                if let Some(rel) = &res.state.reference {
                    let dir = self.prep.run_dir.join(rel);
                    reference = Some(self.load_reference(&dir)?);
                    reference_snapshot = Some(rel.clone());
                }
            }
        }
        let mut last_snapshot: Option<String> = self
            .prep
            .resume
            .as_ref()
            .and_then(|res| res.dir.file_name())
            .map(|n| format!("snapshots/{}", n.to_string_lossy()));

        for pi in start_phase..self.prep.phases.len() {
            let first_step = if pi == start_phase { start_step } else { 0 };
            if self.prep.phases[pi].objective.needs_reference() && reference.is_none() {
                // The policy as it stood at the end of the phase before, frozen.
                reference = Some(self.policy.frozen_copy(&self.prep.model)?);
                reference_snapshot = last_snapshot.clone();
                if reference_snapshot.is_none() {
                    // First phase is a preference phase: the reference is the
                    // starting model; keep it on disk for resumes.
                    self.opt = None;
                    self.reference_snapshot = None;
                    reference_snapshot = Some(self.snapshot(pi, 0, "reference")?);
                }
            }
            if !self.prep.phases[pi].objective.needs_reference() {
                reference = None;
                reference_snapshot = None;
            }
            self.reference_snapshot = reference_snapshot.clone();
            let done = self.run_phase(pi, first_step, reference.as_ref())?;
            last_snapshot = Some(done.snapshot);
            reference = None;
            if done.stopped {
                return self.finish("stopped");
            }
        }
        self.finish("completed")
    }

    fn finish(&mut self, status: &str) -> Result<RunOutcome> {
        self.emit(Event::RunEnd(events::RunEnd {
            t: events::now(),
            status: status.into(),
            global_step: self.global_step,
            seconds: self.started.elapsed().as_secs_f64(),
            message: None,
        }))?;
        self.log.sync()?;
        Ok(RunOutcome {
            status: status.into(),
            run_dir: self.prep.run_dir.clone(),
            global_step: self.global_step,
            losses: self.losses.clone(),
        })
    }

    fn load_reference(&self, dir: &Path) -> Result<Decoder> {
        snapshot::verify(dir)
            .with_context(|| format!("the reference snapshot {}", dir.display()))?;
        let model = &self.prep.model;
        let first = model
            .weights
            .tensors
            .values()
            .next()
            .context("empty model")?;
        let mut w = if dir.join("model.safetensors").exists() {
            TensorMap::load_safetensors(
                &[dir.join("model.safetensors")],
                first.device(),
                first.dtype(),
            )?
        } else {
            let adapters = crate::model::lora::load_adapters(dir, &model.weights)?;
            crate::model::lora_merge(
                &model.weights,
                &adapters,
                self.policy.lora.as_ref().context("LoRA config")?,
            )?
        };
        Decoder::from_weights(&model.cfg, &mut w)
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
                    self.snapshot(phase, step, "manual")?;
                }
                Control::ProbeNow => {
                    self.probe(phase, step, "manual")?;
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

    fn probe(&mut self, phase: usize, step: u64, reason: &str) -> Result<()> {
        let Some(prober) = self.prep.prober.as_mut() else {
            if reason == "manual" {
                self.alert(
                    "warning",
                    "the recipe has no [probe] table: nothing to probe".into(),
                )?;
            }
            return Ok(());
        };
        let reusable = self.last_probe.as_ref().filter(|p| {
            reason == "phase_start"
                && p.global_step == self.global_step
                && p.method == "choice"
                && p.error.is_none()
        });
        let event = match reusable {
            Some(p) => events::ProbeEvent {
                t: events::now(),
                phase,
                step,
                reason: reason.into(),
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

    fn run_phase(
        &mut self,
        pi: usize,
        first_step: u64,
        reference: Option<&Decoder>,
    ) -> Result<PhaseDone> {
        let phase_started = Instant::now();
        let decay = self.prep.phases[pi].cfg.decay(self.prep.phases[pi].steps);
        let (
            name,
            algorithm,
            steps,
            warmup,
            lr,
            schedule,
            accum,
            batch,
            clip,
            wd,
            snap_every,
            shuffle,
            n,
        ) = {
            let p = &self.prep.phases[pi];
            (
                p.cfg.name.clone(),
                p.cfg.algorithm,
                p.steps,
                p.warmup,
                p.cfg.lr(),
                p.cfg.schedule,
                p.cfg.grad_accum,
                p.cfg.batch_size,
                p.cfg.max_grad_norm,
                p.cfg.weight_decay,
                p.cfg.snapshot_every,
                p.cfg.shuffle,
                p.data.len(),
            )
        };
        let seed = self.prep.recipe.recipe.run.seed;
        let phase_start_global = self.global_step - first_step;
        self.emit(Event::PhaseStart(events::PhaseStart {
            t: events::now(),
            phase: pi,
            name: name.clone(),
            algorithm: algorithm.name().into(),
            steps,
            global_step: phase_start_global,
        }))?;

        self.opt = None;
        let mut opt = AdamW::new(
            &self.policy.vars,
            AdamWConfig {
                weight_decay: wd,
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
            }
        }
        self.opt = Some(opt);
        if first_step == 0 {
            self.probe(pi, 0, "phase_start")?;
        }
        let mut batcher = Batcher::new(n, seed, pi, shuffle);
        let probe_every = self.prep.prober.as_ref().map(|p| p.every()).unwrap_or(0);
        let mut stopped = false;
        let mut step = first_step;
        while step < steps {
            self.poll_control(pi, step)?;
            if self.stop_requested {
                stopped = true;
                break;
            }
            let t0 = Instant::now();
            let lr_now = lr_at(schedule, lr, step, warmup, steps, decay);
            let mut grads = BTreeMap::new();
            let mut loss_sum = 0.0;
            let mut metric_sums: BTreeMap<String, f64> = BTreeMap::new();
            let mut tokens = 0u64;
            for a in 0..accum {
                let m = step * accum as u64 + a as u64;
                let idx = batcher.micro_batch(m, batch);
                if let Some(lora) = &self.policy.lora {
                    if lora.dropout > 0.0 {
                        crate::model::lora::reseed(
                            &mut self.policy.decoder,
                            seed ^ (m.wrapping_mul(0x2545_F491_4F6C_DD1D)),
                        );
                    }
                }
                let (out, toks) = self.micro_step(pi, &idx, reference)?;
                tokens += toks as u64;
                let mut loss_val = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if self.inject_nan_at == Some(self.global_step + 1) {
                    loss_val = f64::NAN;
                }
                loss_sum += loss_val;
                for (k, v) in out.metrics {
                    *metric_sums.entry(k).or_default() += v;
                }
                if !loss_val.is_finite() {
                    // Skip the backward: nothing good comes of it.
                    grads.clear();
                    break;
                }
                let scaled = (out.loss / accum as f64)?;
                let store = scaled.backward()?;
                add_grads(&mut grads, collect_grads(&store, &self.policy.vars))?;
            }
            let loss = loss_sum / accum as f64;
            let grad_norm = if grads.is_empty() {
                f64::NAN
            } else {
                self.opt
                    .as_ref()
                    .context("no optimizer")?
                    .grad_norm(&grads)?
            };
            let finite = loss.is_finite() && grad_norm.is_finite();
            if finite {
                let scale = if clip > 0.0 && grad_norm > clip {
                    clip / (grad_norm + 1e-6)
                } else {
                    1.0
                };
                self.opt
                    .as_mut()
                    .context("no optimizer")?
                    .step(&grads, lr_now, scale)?;
            }
            step += 1;
            self.global_step += 1;
            self.losses.push(loss);
            let metrics: BTreeMap<String, f64> = metric_sums
                .into_iter()
                .map(|(k, v)| (k, v / accum as f64))
                .filter(|(_, v)| v.is_finite())
                .collect();
            self.emit(Event::Step(events::StepEvent {
                t: events::now(),
                phase: pi,
                step,
                global_step: self.global_step,
                loss,
                lr: lr_now,
                grad_norm,
                tokens,
                seconds: t0.elapsed().as_secs_f64(),
                metrics,
            }))?;
            if !finite {
                let what = if loss.is_finite() {
                    "gradient norm"
                } else {
                    "loss"
                };
                self.alert(
                    "error",
                    format!(
                        "{name} step {step}: the {what} is not finite; the update was not applied and training is paused \
                         (snapshot, resume to go on with the next batch, or stop)"
                    ),
                )?;
                if self.sink.is_none() {
                    // Headless: nobody can resume; stop with a snapshot of the last good weights.
                    self.stop_requested = true;
                } else {
                    self.paused = true;
                    self.emit(Event::Pause(events::Marker {
                        t: events::now(),
                        global_step: self.global_step,
                        reason: format!("non-finite {what}"),
                    }))?;
                }
            }
            if snap_every > 0 && step.is_multiple_of(snap_every) && step < steps {
                self.snapshot(pi, step, "cadence")?;
            }
            if probe_every > 0 && step.is_multiple_of(probe_every) && step < steps {
                self.probe(pi, step, "periodic")?;
            }
        }
        let reason = if stopped { "stop" } else { "phase_end" };
        let snap = self.snapshot(pi, step, reason)?;
        if !stopped {
            self.probe(pi, step, "phase_end")?;
            self.emit(Event::PhaseEnd(events::PhaseEnd {
                t: events::now(),
                phase: pi,
                steps: step,
                global_step: self.global_step,
                seconds: phase_started.elapsed().as_secs_f64(),
            }))?;
            self.log.sync()?;
        }
        Ok(PhaseDone {
            snapshot: snap,
            stopped,
        })
    }

    /// Loss of one micro-batch, and the tokens it processed.
    fn micro_step(
        &self,
        pi: usize,
        idx: &[usize],
        reference: Option<&Decoder>,
    ) -> Result<(LossOut, usize)> {
        let phase = &self.prep.phases[pi];
        let max_len = phase.cfg.max_len;
        let pad = self.prep.model.tokenizer.pad_id;
        let dev = self.policy.decoder.device().clone();
        let policy = &self.policy.decoder;
        match (&phase.data, &phase.objective) {
            (PhaseData::Sft(seqs), Objective::Sft { average }) => {
                let rows: Vec<&TokenSeq> = idx.iter().map(|&i| &seqs[i]).collect();
                let b = SeqBatch::new(&rows, pad, &dev)?;
                let lp = objectives::seq_logps(policy, &b, Mode::Train)?;
                Ok((objectives::sft_loss(&lp, *average)?, b.tokens))
            }
            (PhaseData::Pairs(pairs), obj) => {
                let chosen: Vec<TokenSeq> =
                    idx.iter().map(|&i| pairs[i].0.to_seq(max_len).0).collect();
                let rejected: Vec<TokenSeq> =
                    idx.iter().map(|&i| pairs[i].1.to_seq(max_len).0).collect();
                let rows: Vec<&TokenSeq> = chosen.iter().chain(rejected.iter()).collect();
                let b = SeqBatch::new(&rows, pad, &dev)?;
                let lp = objectives::seq_logps(policy, &b, Mode::Train)?;
                let pol = PairLogps::split(&lp, idx.len())?;
                let chosen_nll = || -> Result<Tensor> {
                    let n: usize = lp.counts[..idx.len()].iter().sum();
                    Ok(lp.tokens.narrow(0, 0, n)?.mean_all()?.neg()?)
                };
                let out = match obj {
                    Objective::Dpo {
                        beta,
                        loss,
                        label_smoothing,
                    } => {
                        let reference =
                            reference.context("a DPO phase without its reference model")?;
                        let rlp = objectives::seq_logps(reference, &b, Mode::Fast)?;
                        let refp = PairLogps::split(&rlp, idx.len())?;
                        let mut out =
                            objectives::dpo_loss(&pol, &refp, *beta, *loss, *label_smoothing)?;
                        add_logit_metrics(&mut out, &lp.mean_logits, idx.len());
                        out
                    }
                    Objective::SimPo {
                        beta,
                        gamma,
                        label_smoothing,
                    } => objectives::simpo_loss(&pol, *beta, *gamma, *label_smoothing)?,
                    Objective::Cpo {
                        beta,
                        alpha,
                        label_smoothing,
                    } => {
                        objectives::cpo_loss(&pol, &chosen_nll()?, *beta, *alpha, *label_smoothing)?
                    }
                    Objective::Orpo { beta } => objectives::orpo_loss(&pol, &chosen_nll()?, *beta)?,
                    other => bail!(
                        "objective {} cannot train on preference pairs",
                        other.name()
                    ),
                };
                Ok((out, b.tokens))
            }
            (
                PhaseData::Kto(rows),
                Objective::Kto {
                    beta,
                    desirable_weight,
                    undesirable_weight,
                },
            ) => {
                let reference = reference.context("a KTO phase without its reference model")?;
                let k = idx.len();
                let main: Vec<TokenSeq> =
                    idx.iter().map(|&i| rows[i].0.to_seq(max_len).0).collect();
                // Mismatched pairs for the KL estimate: prompt i with the
                // completion of row i−1 (TRL rotates completions by one).
                let kl: Vec<TokenSeq> = (0..k)
                    .map(|j| {
                        let p = &rows[idx[j]].0;
                        let c = &rows[idx[(j + k - 1) % k]].0;
                        PromptCompletion {
                            prompt: p.prompt.clone(),
                            completion: c.completion.clone(),
                        }
                        .to_seq(max_len)
                        .0
                    })
                    .collect();
                let labels: Vec<bool> = idx.iter().map(|&i| rows[i].1).collect();
                let main_refs: Vec<&TokenSeq> = main.iter().collect();
                let kl_refs: Vec<&TokenSeq> = kl.iter().collect();
                let mb = SeqBatch::new(&main_refs, pad, &dev)?;
                let kb = SeqBatch::new(&kl_refs, pad, &dev)?;
                let pol = objectives::seq_logps(policy, &mb, Mode::Train)?;
                let pol_kl = objectives::seq_logps(policy, &kb, Mode::Fast)?;
                let both: Vec<&TokenSeq> = main.iter().chain(kl.iter()).collect();
                let rb = SeqBatch::new(&both, pad, &dev)?;
                let rlp = objectives::seq_logps(reference, &rb, Mode::Fast)?;
                let ref_main = rlp.sums.narrow(0, 0, k)?;
                let ref_kl = rlp.sums.narrow(0, k, k)?;
                let out = objectives::kto_loss(
                    &pol.sums,
                    &ref_main,
                    &labels,
                    &pol_kl.sums.detach(),
                    &ref_kl,
                    *beta,
                    *desirable_weight,
                    *undesirable_weight,
                )?;
                Ok((out, mb.tokens + kb.tokens))
            }
            _ => bail!("phase data does not fit its objective"),
        }
    }

    /// Write a snapshot of the policy (and optimizer, if a phase is under
    /// way) after `step` completed steps of phase `pi`.
    fn snapshot(&mut self, pi: usize, step: u64, reason: &str) -> Result<String> {
        let phase = &self.prep.phases[pi];
        let name = if reason == "reference" {
            format!("{}-reference", phase.cfg.name)
        } else {
            snapshot::snapshot_name(&phase.cfg.name, step)
        };
        let snaps = self.prep.run_dir.join("snapshots");
        let mut w = SnapshotWriter::begin(&snaps, &name)?;
        let model = &self.prep.model;
        let is_lora = self.policy.base.is_some();
        if is_lora {
            crate::model::lora::save_adapters(
                &mut w,
                &self.policy.vars,
                self.policy.lora.as_ref().context("LoRA config")?,
                &model.base_ref,
            )?;
        } else {
            let p = w.path("model.safetensors");
            let tensors: BTreeMap<String, Tensor> = self
                .policy
                .vars
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect();
            save_tensors(&tensors, &p)?;
        }
        w.write(
            "config.json",
            &serde_json::to_vec_pretty(&model.hf_config_json(self.policy.decoder.dtype()))?,
        )?;
        w.write(
            "tokenizer.json",
            model.tokenizer_files.tokenizer_json.as_bytes(),
        )?;
        w.write(
            "tokenizer_config.json",
            &serde_json::to_vec_pretty(&model.tokenizer_files.tokenizer_config)?,
        )?;
        // The step a resume starts from is the one after this snapshot.
        let opt_step = match &self.opt {
            Some(o) => {
                let p = w.path("optimizer.safetensors");
                save_tensors(&o.state_tensors()?, &p)?;
                o.step
            }
            None => 0,
        };
        let state = TrainerState {
            version: STATE_VERSION,
            run: self.prep.recipe.recipe.run.name.clone(),
            seed: self.prep.recipe.recipe.run.seed,
            phase: pi,
            phase_name: phase.cfg.name.clone(),
            step,
            global_step: self.global_step,
            phase_steps: phase.steps,
            optimizer_step: opt_step,
            reference: self.reference_snapshot.clone(),
            lora: is_lora,
            losses: self.losses.clone(),
        };
        w.write("trainer_state.json", &serde_json::to_vec_pretty(&state)?)?;
        let dir = w.seal()?;
        let rel = format!("snapshots/{name}");
        self.emit(Event::Snapshot(events::SnapshotEvent {
            t: events::now(),
            phase: pi,
            step,
            global_step: self.global_step,
            path: rel.clone(),
            reason: reason.into(),
        }))?;
        tracing::info!("snapshot {}", dir.display());
        Ok(rel)
    }
}

fn add_logit_metrics(out: &mut LossOut, mean_logits: &[f64], pairs: usize) {
    let avg = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    out.metrics
        .insert("logits/chosen".into(), avg(&mean_logits[..pairs]));
    out.metrics
        .insert("logits/rejected".into(), avg(&mean_logits[pairs..]));
}

struct PhaseDone {
    snapshot: String,
    stopped: bool,
}
