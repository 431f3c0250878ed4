//! Everything a run needs, loaded and checked before its first step: the
//! recipe, the model, every phase's data, the prober and the run directory.

use super::phase::Phase;

use crate::data::TemplateChoice;
use crate::model::{load_model, LoadOptions, LoadedModel};
use crate::probe::Prober;
use crate::recipe::{self, LoadedRecipe, OptimizerState};
use crate::rundir::disk::human_bytes;
use crate::rundir::snapshot::{self, TrainerState};
use crate::rundir::{Retention, RunDir};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

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
    /// Fault injection for tests: a disk that cannot take a snapshot.
    pub inject_disk_fault: Option<DiskFault>,
}

/// A disk failure to simulate (tests): it strikes the first snapshot taken
/// at or after global step `at_step`, once, as if the user then freed space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFault {
    pub at_step: u64,
    pub kind: DiskFaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFaultKind {
    /// The file system reports a quarter of the room the snapshot needs.
    NoRoom,
    /// The weights file is cut off halfway and the write fails as on a
    /// full disk.
    WriteFails,
}

/// Where a resumed run starts.
pub(crate) struct ResumeFrom {
    pub dir: PathBuf,
    pub state: TrainerState,
    /// The run the snapshot belongs to, when this run continues it in a
    /// directory of its own (`--output`).
    pub parent: Option<RunDir>,
}

impl ResumeFrom {
    /// The snapshot holding the reference model the resumed phase needs
    /// (relative to the run): only when resuming within a phase, since a
    /// phase after it takes the snapshot resumed from as its reference.
    fn needed_reference(&self) -> Option<&str> {
        let s = &self.state;
        (s.step < s.phase_steps)
            .then_some(s.reference.as_deref())
            .flatten()
    }
}

/// Everything loaded and checked before the first step; nothing can fail for
/// want of a file after this.
pub struct Prepared {
    pub(crate) recipe: LoadedRecipe,
    pub(crate) run_dir: RunDir,
    pub(crate) model: LoadedModel,
    pub(crate) phases: Vec<Phase>,
    pub(crate) resume: Option<ResumeFrom>,
    pub(crate) progress: bool,
    pub(crate) prober: Option<Prober>,
    /// Warnings found while preparing (truncated rows, ...), logged as alerts.
    pub(crate) warnings: Vec<String>,
    /// Each phase's memory estimate, logged as information.
    pub(crate) memory: Vec<String>,
    pub(crate) inject_nan_at: Option<u64>,
    /// Which snapshots the run directory keeps.
    pub(crate) retention: Retention,
    pub(crate) disk_fault: Option<DiskFault>,
}

impl Prepared {
    pub fn run_dir(&self) -> &Path {
        self.run_dir.root()
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn recipe(&self) -> &LoadedRecipe {
        &self.recipe
    }

    /// The recipe's phases, loaded.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
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
    let mut resume = match &opts.resume {
        Some(dir) => Some(resume_point(dir, &recipe)?),
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
        let (phase, warning) = Phase::load(&recipe, p, &model)?;
        warnings.extend(warning);
        phases.push(phase);
    }
    // Before anything is allocated for training or written: a step that
    // cannot fit is refused with what would.
    let memory = super::memory::check_phases(&model, r.model.lora.as_ref(), &phases)
        .with_context(|| opts.recipe.display().to_string())?;
    let prober = match &r.probe {
        Some(cfg) => Some(Prober::new(cfg, &recipe, &model)?),
        None => None,
    };
    let run_dir = run_dir_for(opts, &recipe, resume.as_mut())?;
    std::fs::create_dir_all(run_dir.root()).with_context(|| {
        format!(
            "cannot create the run directory {}",
            run_dir.root().display()
        )
    })?;
    // The recipe the run started with: the parent's, when resuming.
    let started_with = match &resume {
        Some(res) if res.parent.is_some() => res.parent.as_ref().map(RunDir::recipe_copy),
        Some(_) => Some(run_dir.recipe_copy()),
        None => None,
    };
    match &resume {
        Some(res) if res.parent.is_none() => {
            let freed = run_dir.sweep_partials()?;
            if freed > 0 {
                warnings.push(format!(
                    "removed snapshots left half-written by an earlier crash in {} ({} freed)",
                    run_dir.snapshots_dir().display(),
                    human_bytes(freed)
                ));
            }
        }
        Some(res) => branch(&run_dir, res)?,
        None => {}
    }
    if resume.as_ref().is_none_or(|res| res.parent.is_some()) {
        std::fs::write(run_dir.recipe_copy(), &recipe.text).with_context(|| {
            format!(
                "cannot write into the run directory {}",
                run_dir.root().display()
            )
        })?;
    }
    if let Some(old) = started_with.and_then(|p| std::fs::read_to_string(p).ok()) {
        if old != recipe.text {
            warnings.push(format!(
                "the recipe {} differs from the one the run resumed started with; the resumed run follows the new one",
                opts.recipe.display(),
            ));
        }
    }
    let retention = Retention {
        keep: r.run.keep_snapshots,
        optimizer_in_newest_only: r.run.optimizer_state == OptimizerState::Newest,
    };
    Ok(Prepared {
        recipe,
        run_dir,
        model,
        phases,
        resume,
        progress: opts.progress,
        prober,
        warnings,
        memory,
        inject_nan_at: opts.inject_nan_at_step,
        retention,
        disk_fault: opts.inject_disk_fault,
    })
}

/// The state a snapshot was taken in, checked against the recipe.
fn resume_point(dir: &Path, recipe: &LoadedRecipe) -> Result<ResumeFrom> {
    let state = snapshot::read_state(dir)
        .with_context(|| format!("cannot resume from {}", dir.display()))?;
    let phases = &recipe.recipe.phases;
    if state.phase >= phases.len() || phases[state.phase].name != state.phase_name {
        bail!(
            "cannot resume from {}: it was taken in phase \"{}\", which the recipe {} does not have at position {}",
            dir.display(),
            state.phase_name,
            recipe.path.display(),
            state.phase + 1
        );
    }
    // A reward phase's snapshots hold the policy, not the reward model it
    // trains: it has to start over, which is not built yet.
    if state.step < state.phase_steps && phases[state.phase].algorithm == recipe::Algorithm::Reward
    {
        bail!(
            "cannot resume from {}: it was taken inside reward phase \"{}\" (at step {}), and resuming \
             inside a reward phase is not implemented yet; resume from a snapshot taken before the phase",
            dir.display(),
            state.phase_name,
            state.step
        );
    }
    if state.step < state.phase_steps && !snapshot::has_optimizer_state(dir) {
        bail!(
            "cannot resume from {}: it no longer holds the optimizer state that resuming within a phase needs \
             (with [run] optimizer_state = \"newest\", the default, only a run's newest snapshot keeps it); \
             resume from the run's newest snapshot, or set optimizer_state = \"all\" in runs to come",
            dir.display()
        );
    }
    Ok(ResumeFrom {
        dir: dir.to_path_buf(),
        state,
        parent: None,
    })
}

/// Start a run resumed into a directory of its own, so that it stands
/// alone: the parent's log (readers drop what it holds past the resume
/// point), the snapshot resumed from (a later phase's reference, and the
/// start of this run's snapshot list) and the reference model the resumed
/// phase needs, brought over sealed and verified, as hard links where the
/// file system allows. The parent is never written to.
fn branch(run_dir: &RunDir, res: &ResumeFrom) -> Result<()> {
    let parent = res.parent.as_ref().context("no parent run")?;
    if parent.has_log() {
        std::fs::copy(parent.events_log(), run_dir.events_log()).with_context(|| {
            format!(
                "cannot copy the log of {} into {}",
                parent.root().display(),
                run_dir.root().display()
            )
        })?;
    }
    run_dir.adopt_snapshot(&res.dir)?;
    if let Some(rel) = res.needed_reference() {
        let src = parent.path_of(rel);
        run_dir.adopt_snapshot(&src).with_context(|| {
            format!(
                "the reference model of the phase resumed ({}), which {} names",
                src.display(),
                res.dir.join("trainer_state.json").display()
            )
        })?;
    }
    Ok(())
}

/// The run's directory: the resumed run's own, `--output`, or a fresh
/// `OUTPUT_DIR/NAME-YYYYMMDD-HHMMSS`. A resume with `--output` elsewhere
/// than the snapshot's run continues it there (`resume.parent` is set).
fn run_dir_for(
    opts: &TrainOptions,
    recipe: &LoadedRecipe,
    resume: Option<&mut ResumeFrom>,
) -> Result<RunDir> {
    let fresh = |out: &Path| -> Result<RunDir> {
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
        Ok(RunDir::at(out))
    };
    Ok(match (resume, &opts.output) {
        (Some(res), out) => {
            let home = RunDir::of_snapshot(&res.dir);
            let here = |h: &RunDir| out.as_ref().is_none_or(|o| same_dir(h.root(), o));
            match home {
                Some(h) if here(&h) => h,
                Some(h) => {
                    let dir = fresh(out.as_ref().context("no output")?)?;
                    res.parent = Some(h);
                    dir
                }
                None => bail!(
                    "cannot resume from {}: it is not inside a run directory (RUN/snapshots/NAME)",
                    res.dir.display()
                ),
            }
        }
        (None, Some(out)) => fresh(out)?,
        (None, None) => {
            let r = &recipe.recipe;
            RunDir::fresh_in(&recipe.resolve(&r.run.output_dir), &r.run.name)
        }
    })
}

/// Whether two paths name one directory (`b` need not exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
