//! Everything a run needs, loaded and checked before its first step: the
//! recipe, the model, every phase's data, the prober and the run directory.

use super::phase::Phase;

use crate::data::TemplateChoice;
use crate::model::{load_model, LoadOptions, LoadedModel};
use crate::probe::Prober;
use crate::recipe::{self, LoadedRecipe};
use crate::rundir::snapshot::{self, TrainerState};
use crate::rundir::RunDir;
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
}

/// Where a resumed run starts.
pub(crate) struct ResumeFrom {
    pub dir: PathBuf,
    pub state: TrainerState,
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
    pub(crate) inject_nan_at: Option<u64>,
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
    let resume = match &opts.resume {
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
    let prober = match &r.probe {
        Some(cfg) => Some(Prober::new(cfg, &recipe, &model)?),
        None => None,
    };
    let run_dir = run_dir_for(opts, &recipe, resume.as_ref())?;
    std::fs::create_dir_all(run_dir.root()).with_context(|| {
        format!(
            "cannot create the run directory {}",
            run_dir.root().display()
        )
    })?;
    if resume.is_none() {
        std::fs::write(run_dir.recipe_copy(), &recipe.text).with_context(|| {
            format!(
                "cannot write into the run directory {}",
                run_dir.root().display()
            )
        })?;
    } else if let Ok(old) = std::fs::read_to_string(run_dir.recipe_copy()) {
        if old != recipe.text {
            warnings.push(format!(
                "the recipe {} differs from the one this run started with (its copy is in {}); the resumed run follows the new one",
                opts.recipe.display(),
                run_dir.recipe_copy().display()
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
    Ok(ResumeFrom {
        dir: dir.to_path_buf(),
        state,
    })
}

/// The run's directory: the resumed run's own, `--output`, or a fresh
/// `OUTPUT_DIR/NAME-YYYYMMDD-HHMMSS`.
fn run_dir_for(
    opts: &TrainOptions,
    recipe: &LoadedRecipe,
    resume: Option<&ResumeFrom>,
) -> Result<RunDir> {
    Ok(match (resume, &opts.output) {
        (Some(res), _) => RunDir::of_snapshot(&res.dir)
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
            RunDir::at(out)
        }
        (None, None) => {
            let r = &recipe.recipe;
            RunDir::fresh_in(&recipe.resolve(&r.run.output_dir), &r.run.name)
        }
    })
}
