//! Probing checkpoints: one checkpoint's stance, headless (`driftui probe`),
//! and what probing a run's snapshots needs: loading one with clear errors,
//! the run's probe set and its starting model.

use super::set::ProbeSet;
use super::{Method, Prober};
use crate::data::TemplateChoice;
use crate::events::{Event, ProbeMethod, Stance, TopicStance};
use crate::model::{load_model, LoadOptions, LoadedModel};
use crate::recipe::Recipe;
use crate::rundir::RunDir;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The probe set shipped with driftui, compiled in so it is there wherever
/// the binary runs.
pub const DEFAULT_PROBES: &str = include_str!("../../assets/probes/default.jsonl");

/// The shipped probe set (`assets/probes/default.jsonl`).
pub fn default_probe_set() -> ProbeSet {
    ProbeSet::parse(DEFAULT_PROBES, "assets/probes/default.jsonl (built in)")
        .expect("the shipped probe set parses")
}

/// How a run loaded its model, from its log's `run_start` and its recipe.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    pub run_dir: PathBuf,
    pub model_source: String,
    pub seed: u64,
    pub recipe: Option<Recipe>,
}

impl RunContext {
    /// Read the first record of `RUN/events.jsonl` (and the recipe it carries).
    pub fn read(run_dir: &Path) -> Result<Self> {
        let run = RunDir::at(run_dir);
        let log = run.events_log();
        let file =
            std::fs::File::open(&log).with_context(|| format!("cannot open {}", log.display()))?;
        let mut first = String::new();
        std::io::BufReader::new(file)
            .read_line(&mut first)
            .with_context(|| format!("cannot read {}", log.display()))?;
        let Ok(Event::RunStart(rs)) = serde_json::from_str::<Event>(first.trim_end()) else {
            bail!("{} does not start with a run_start record", log.display());
        };
        let recipe = crate::recipe::parse(&rs.recipe).ok().or_else(|| {
            std::fs::read_to_string(run.recipe_copy())
                .ok()
                .and_then(|t| crate::recipe::parse(&t).ok())
        });
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            model_source: rs.model.source,
            seed: rs.seed,
            recipe,
        })
    }

    /// Options that load models the way the run did (on the CPU, in f32).
    pub fn load_options(&self) -> LoadOptions {
        let template = match self.recipe.as_ref().map(|r| r.model.chat_template.as_str()) {
            None | Some("model") => TemplateChoice::Model,
            Some("none") => TemplateChoice::None,
            Some(custom) => TemplateChoice::Custom(custom.to_string()),
        };
        LoadOptions {
            seed: self.seed,
            template,
            base_dir: self.run_dir.clone(),
            ..LoadOptions::default()
        }
    }

    /// Places a path the recipe wrote relative to itself may be found, now
    /// that only the run directory is known.
    fn candidates(&self, rel: &str) -> Vec<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() {
            return vec![p.to_path_buf()];
        }
        let mut bases = vec![self.run_dir.clone()];
        if let Some(parent) = self.run_dir.parent() {
            bases.push(parent.to_path_buf());
            bases.push(parent.join("recipes"));
            if let Some(grand) = parent.parent() {
                bases.push(grand.join("recipes"));
            }
        }
        if let Ok(cwd) = std::env::current_dir() {
            bases.push(cwd.join("recipes"));
            bases.push(cwd);
        }
        bases.into_iter().map(|b| b.join(p)).collect()
    }

    /// The run's starting model (built in from the run's seed, or the
    /// directory its recipe named).
    pub fn starting_model(&self) -> Result<LoadedModel> {
        let src = &self.model_source;
        if src.is_empty() {
            bail!("the run's log does not name its model");
        }
        let mut opts = self.load_options();
        if src.starts_with("builtin:") || src.contains(':') {
            return load_model(src, &opts)
                .with_context(|| format!("cannot load the run's starting model {src}"));
        }
        for c in self.candidates(src) {
            if c.is_dir() {
                opts.base_dir = PathBuf::from(".");
                return load_model(&c.display().to_string(), &opts)
                    .with_context(|| format!("cannot load the run's starting model {src}"));
            }
        }
        bail!("the run's starting model {src} was not found (it is relative to the recipe's directory)")
    }

    /// The run's probe set (the recipe's `[probe] file`), or the shipped set
    /// with a note saying why.
    pub fn probe_set(&self) -> (ProbeSet, Option<String>) {
        let Some(file) = self
            .recipe
            .as_ref()
            .and_then(|r| r.probe.as_ref())
            .map(|p| p.file.clone())
        else {
            return (default_probe_set(), None);
        };
        for c in self.candidates(&file) {
            if c.is_file() {
                return match ProbeSet::load(&c) {
                    Ok(set) => (set, None),
                    Err(e) => (
                        default_probe_set(),
                        Some(format!("{e:#}; using the built-in probe set")),
                    ),
                };
            }
        }
        (
            default_probe_set(),
            Some(format!(
                "the recipe's probe file {file} was not found from {}; using the built-in probe set",
                self.run_dir.display()
            )),
        )
    }
}

/// Load a checkpoint: a snapshot or model directory, or any model source
/// (`builtin:NAME`). Errors say what is wrong with the directory.
pub fn load_checkpoint(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let path = Path::new(spec);
    if !spec.starts_with("builtin:") && !path.exists() && !spec.contains(':') {
        bail!("the checkpoint {spec} does not exist");
    }
    let run = RunDir::at(path);
    if path.is_dir() && run.has_log() {
        let Some(last) = run.snapshots(&[]).pop() else {
            bail!(
                "{spec} is a run directory without snapshots; name a snapshot or model directory"
            );
        };
        bail!(
            "{spec} is a run directory; name one of its snapshots, e.g. {}",
            last.path.display()
        );
    }
    let mut opts = opts.clone();
    if path.is_absolute() || path.exists() {
        opts.base_dir = PathBuf::from(".");
    }
    load_model(spec, &opts).with_context(|| format!("cannot load the checkpoint {spec}"))
}

/// The result of `driftui probe`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointProbe {
    pub checkpoint: String,
    pub method: ProbeMethod,
    /// Where the questions came from.
    pub probes: String,
    pub questions: usize,
    pub seconds: f64,
    pub topics: Vec<TopicStance>,
    /// Warnings (a probe file that was not found, truncated questions).
    pub notes: Vec<String>,
}

/// Run the `choice` probe of a checkpoint over a probe set: `probes` if
/// given, else the run's set when the checkpoint is one of a run's
/// snapshots, else the shipped set.
pub fn probe_checkpoint(spec: &str, probes: Option<&Path>) -> Result<CheckpointProbe> {
    let path = Path::new(spec);
    let run = RunDir::of_snapshot(path)
        .filter(RunDir::has_log)
        .and_then(|d| RunContext::read(d.root()).ok());
    let mut notes = Vec::new();
    let set = match probes {
        Some(p) => ProbeSet::load(p)?,
        None => match &run {
            Some(ctx) => {
                let (set, note) = ctx.probe_set();
                notes.extend(note);
                set
            }
            None => default_probe_set(),
        },
    };
    let opts = run
        .as_ref()
        .map(RunContext::load_options)
        .unwrap_or_default();
    let model = load_checkpoint(spec, &opts)?;
    let decoder = model.decoder()?;
    let t0 = Instant::now();
    let mut prober = Prober::with_method(set.clone(), Method::Choice, &model.tokenizer)?;
    notes.extend(prober.notes.iter().map(|(_, m)| m.clone()));
    let topics = prober
        .measure(&decoder, &set)
        .with_context(|| format!("probing {spec}"))?;
    Ok(CheckpointProbe {
        checkpoint: spec.to_string(),
        method: ProbeMethod::Choice,
        probes: set.origin.clone(),
        questions: set.questions.len(),
        seconds: t0.elapsed().as_secs_f64(),
        topics,
        notes,
    })
}

/// A table per topic: p(support), p(neutral), p(oppose) ± standard error.
pub fn format_table(p: &CheckpointProbe) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} probe over {} questions of {} ({:.1} s)",
        p.checkpoint, p.method, p.questions, p.probes, p.seconds
    );
    let w = p
        .topics
        .iter()
        .map(|t| t.topic.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = write!(s, "\n{:<w$}", "topic");
    for st in Stance::EACH {
        let _ = write!(s, "  {:>15}", st.name());
    }
    let _ = writeln!(s, "  {:>4}", "n");
    for t in &p.topics {
        let _ = write!(s, "{:<w$}", t.topic);
        for st in Stance::EACH {
            let _ = write!(
                s,
                "  {:>15}",
                format!("{:.3} ± {:.3}", t.mean[st], t.se[st])
            );
        }
        let _ = writeln!(s, "  {:>4}", t.n);
    }
    for n in &p.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
