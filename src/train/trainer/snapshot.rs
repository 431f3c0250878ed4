//! The trainer's snapshots: their size said before they are written, the
//! free space checked, a failed write (a full disk) survived with the run
//! intact, and the run directory's retention applied once one is sealed.
//!
//! ```text
//! snapshot ─┬─ plan           name, what it holds, its size
//!           ├─ room_for       free space against the size (alert: "writing … 1.6 GB")
//!           ├─ write_files    into snapshots/.partial-NAME, sealed, moved into place
//!           ├─ retain         keep_snapshots, optimizer state in the newest only
//!           └─ wait_for_room  on failure: pause live (resume retries), stop headless
//! ```

use super::Trainer;
use crate::events::{self, AlertLevel, Event, ProbeReason, SnapshotReason};
use crate::model::weights::save_tensors;
use crate::rundir::disk::{self, human_bytes};
use crate::rundir::snapshot::{self, TrainerState, OPTIMIZER_FILE, STATE_VERSION};
use crate::rundir::RunDir;
use crate::train::control::Control;
use crate::train::prepare::{DiskFault, DiskFaultKind};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// What a snapshot is about to hold.
struct Plan {
    name: String,
    /// With the optimizer state: only a snapshot within a phase, which a
    /// resume continues (a phase starts with a fresh optimizer).
    optimizer: bool,
    weights_bytes: u64,
    optimizer_bytes: u64,
}

impl Plan {
    /// Bytes the snapshot will take, about: the tensors, and the tokenizer
    /// and small files.
    fn bytes(&self, small_files: u64) -> u64 {
        self.weights_bytes + self.optimizer_bytes + small_files
    }
}

/// Why a snapshot was not written: a line short enough for the
/// dashboard's status line, then the details.
struct NoSnapshot {
    short: String,
    detail: String,
    /// The disk was full (not some other failure).
    out_of_space: bool,
}

impl Trainer {
    /// The snapshot at a phase's end (or at a stop within it): false when
    /// the run stopped without it. After a snapshot that could not be
    /// written, no other is tried.
    pub(super) fn phase_end_snapshot(
        &mut self,
        pi: usize,
        step: u64,
        stopped: bool,
    ) -> Result<bool> {
        if self.end_message.is_some() {
            return Ok(false);
        }
        let reason = if stopped {
            SnapshotReason::Stop
        } else {
            SnapshotReason::PhaseEnd
        };
        Ok(self.snapshot(pi, step, reason)?.is_some())
    }

    /// Write a snapshot of the policy after `step` completed steps of phase
    /// `pi`, then apply the run's retention. When it cannot be written the
    /// run stays intact: an alert says why and, live, training pauses until
    /// the user frees space and resumes (the snapshot is tried again) or
    /// stops; headless, the run stops. `None` when it stopped without it.
    pub(super) fn snapshot(
        &mut self,
        pi: usize,
        step: u64,
        reason: SnapshotReason,
    ) -> Result<Option<String>> {
        loop {
            match self.try_snapshot(pi, step, reason)? {
                Ok(rel) => {
                    self.emit(Event::Snapshot(events::SnapshotEvent {
                        t: events::now(),
                        phase: pi,
                        step,
                        global_step: self.global_step,
                        path: rel.clone(),
                        reason,
                    }))?;
                    self.newest_snapshot = Some(rel.clone());
                    self.retain(&rel)?;
                    return Ok(Some(rel));
                }
                Err(no) => {
                    if !self.wait_for_room(no, pi, step)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// One attempt: the size said, the room checked, the files written.
    fn try_snapshot(
        &mut self,
        pi: usize,
        step: u64,
        reason: SnapshotReason,
    ) -> Result<std::result::Result<String, NoSnapshot>> {
        let plan = self.plan(pi, step, reason);
        let rel = RunDir::snapshot_rel(&plan.name);
        if let Err(no) = self.room_for(&plan)? {
            return Ok(Err(no));
        }
        match self.write_files(pi, step, &plan) {
            Ok(dir) => {
                tracing::info!("snapshot {}", dir.display());
                Ok(Ok(rel))
            }
            Err(err) => {
                // The writer removed its partial directory as it dropped:
                // nothing of this snapshot is left to look complete.
                let out_of_space = disk::is_out_of_space(&err);
                let short = if out_of_space {
                    format!("the disk filled up writing snapshot {}", plan.name)
                } else {
                    format!("snapshot {} could not be written", plan.name)
                };
                Ok(Err(NoSnapshot {
                    short,
                    detail: format!("{err:#}"),
                    out_of_space,
                }))
            }
        }
    }

    fn plan(&self, pi: usize, step: u64, reason: SnapshotReason) -> Plan {
        let phase = &self.phases[pi];
        let name = if reason == SnapshotReason::Reference {
            snapshot::reference_name(&phase.cfg.name)
        } else {
            snapshot::snapshot_name(&phase.cfg.name, step)
        };
        let optimizer = self.opt.is_some() && step < phase.steps;
        let weights_bytes: u64 = self
            .policy
            .vars
            .values()
            .map(|v| (v.elem_count() * v.dtype().size_in_bytes()) as u64)
            .sum();
        let optimizer_bytes = match (&self.opt, optimizer) {
            (Some(o), true) => o.state_bytes(),
            _ => 0,
        };
        // A PPO phase's value model (f32) and its AdamW state ride along.
        let value_bytes = self.value.as_ref().map_or(0, |v| v.bytes(optimizer));
        let weights_bytes: u64 = weights_bytes + value_bytes;
        Plan {
            name,
            optimizer,
            weights_bytes,
            optimizer_bytes,
        }
    }

    /// Say what the snapshot will take, and check the disk has room for it
    /// with [`disk::RESERVE_BYTES`] to spare.
    fn room_for(&mut self, plan: &Plan) -> Result<std::result::Result<(), NoSnapshot>> {
        let small = self.prep.model.tokenizer_files.tokenizer_json.len() as u64 + (64 << 10);
        let need = plan.bytes(small);
        let root = self.prep.run_dir.root().to_path_buf();
        let free = match self.fault(DiskFaultKind::NoRoom) {
            true => Ok(need / 4),
            false => disk::free_bytes(&root),
        };
        let mut parts = format!("weights {}", human_bytes(plan.weights_bytes));
        if plan.optimizer {
            parts.push_str(&format!(
                ", optimizer state {}",
                human_bytes(plan.optimizer_bytes)
            ));
        }
        let free = match free {
            Ok(f) => f,
            Err(err) => {
                // Unknown free space: write anyway; a failed write is caught.
                tracing::warn!("{err:#}");
                self.alert(
                    AlertLevel::Info,
                    format!(
                        "writing snapshot {}: about {} ({parts})",
                        plan.name,
                        human_bytes(need)
                    ),
                )?;
                return Ok(Ok(()));
            }
        };
        if free < need.saturating_add(disk::RESERVE_BYTES) {
            return Ok(Err(NoSnapshot {
                short: format!(
                    "no room for snapshot {}: about {}, {} free",
                    plan.name,
                    human_bytes(need),
                    human_bytes(free)
                ),
                detail: format!(
                    "{parts}, and {} to spare for the log, on the file system of {}",
                    human_bytes(disk::RESERVE_BYTES),
                    root.display()
                ),
                out_of_space: true,
            }));
        }
        self.alert(
            AlertLevel::Info,
            format!(
                "writing snapshot {}: about {}, {} free ({parts})",
                plan.name,
                human_bytes(need),
                human_bytes(free)
            ),
        )?;
        Ok(Ok(()))
    }

    /// Write and seal the snapshot's files.
    fn write_files(&mut self, pi: usize, step: u64, plan: &Plan) -> Result<PathBuf> {
        let phases = Arc::clone(&self.phases);
        let phase = &phases[pi];
        let fail = self.fault(DiskFaultKind::WriteFails);
        let mut w = self.prep.run_dir.begin_snapshot(&plan.name)?;
        let model = &self.prep.model;
        let is_lora = self.policy.lora.is_some();
        let weights = if is_lora {
            crate::model::lora::save_adapters(
                &mut w,
                &self.policy.vars,
                self.policy.lora.as_ref().context("LoRA config")?,
                &model.base_ref,
            )?;
            "adapter_model.safetensors"
        } else {
            let p = w.path("model.safetensors");
            save_tensors(&self.policy.tensors(), &p)?;
            "model.safetensors"
        };
        if fail {
            return Err(injected_write_failure(&w.path(weights)));
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
        if let Some(v) = &self.value {
            let opt = plan
                .optimizer
                .then(|| w.path(super::ppo_phase::VALUE_OPTIMIZER_FILE));
            v.save(&w.path(super::ppo_phase::VALUE_FILE), opt.as_deref())?;
        }
        // The step a resume starts from is the one after this snapshot.
        let opt_step = match &self.opt {
            Some(o) => {
                if plan.optimizer {
                    let p = w.path(OPTIMIZER_FILE);
                    save_tensors(&o.state_tensors()?, &p)?;
                }
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
            phase_input_tokens: self.phase_input_tokens,
        };
        w.write("trainer_state.json", &serde_json::to_vec_pretty(&state)?)?;
        w.seal()
    }

    /// The run directory's retention, after `newest` was sealed. A failure
    /// here costs disk, not the run: it is a warning.
    fn retain(&mut self, newest: &str) -> Result<()> {
        let name = newest.rsplit('/').next().unwrap_or(newest).to_string();
        let pruned = self.prep.run_dir.prune(
            self.prep.retention,
            &name,
            self.reference_snapshot.as_deref(),
        );
        match pruned {
            Ok(p) => {
                if !p.stripped.is_empty() {
                    tracing::info!(
                        "optimizer state removed from {} ({})",
                        p.stripped.join(", "),
                        human_bytes(p.stripped_bytes)
                    );
                }
                if p.removed.is_empty() {
                    return Ok(());
                }
                self.alert(
                    AlertLevel::Info,
                    format!(
                        "removed {} {} (keep_snapshots = {}): {} freed",
                        if p.removed.len() == 1 {
                            "snapshot"
                        } else {
                            "snapshots"
                        },
                        p.removed.join(", "),
                        self.prep.retention.keep,
                        human_bytes(p.removed_bytes)
                    ),
                )
            }
            Err(err) => self.alert(
                AlertLevel::Warning,
                format!("old snapshots could not be removed: {err:#}"),
            ),
        }
    }

    /// After a snapshot that was not written: say so and name the last good
    /// one; live, pause until the user resumes (true: try again) or stops;
    /// headless, stop (false), since nobody can free space and resume.
    fn wait_for_room(&mut self, no: NoSnapshot, pi: usize, step: u64) -> Result<bool> {
        let last = match &self.newest_snapshot {
            Some(rel) => format!(
                "the last good snapshot is {}",
                self.prep.run_dir.path_of(rel).display()
            ),
            None => "no snapshot was written before".into(),
        };
        if self.sink.is_none() {
            let message = format!(
                "{}; the run stops here, intact ({}; {last}: once there is room, continue with --resume)",
                no.short, no.detail
            );
            self.alert(AlertLevel::Error, message.clone())?;
            self.stop_requested = true;
            self.end_message = Some(message);
            return Ok(false);
        }
        self.alert(
            AlertLevel::Error,
            format!(
                "{}; free space and resume to retry, or stop ({}; {last})",
                no.short, no.detail
            ),
        )?;
        if !self.paused {
            self.paused = true;
            self.emit(Event::Pause(events::Marker {
                t: events::now(),
                global_step: self.global_step,
                reason: if no.out_of_space {
                    "disk full".into()
                } else {
                    "snapshot failed".into()
                },
            }))?;
        }
        loop {
            // A dashboard gone can resume nobody: stop.
            match self.control.recv().unwrap_or(Control::Stop) {
                Control::Resume => {
                    self.paused = false;
                    self.emit(Event::Resume(events::Marker {
                        t: events::now(),
                        global_step: self.global_step,
                        reason: "user".into(),
                    }))?;
                    return Ok(true);
                }
                Control::Stop => {
                    self.paused = false;
                    self.stop_requested = true;
                    self.end_message = Some(format!(
                        "{}; stopped by the user ({}; {last})",
                        no.short, no.detail
                    ));
                    return Ok(false);
                }
                Control::ProbeNow => self.probe(pi, step, ProbeReason::Manual)?,
                // The snapshot waiting is the one tried on resume.
                Control::Pause | Control::Snapshot => {}
            }
        }
    }

    /// Whether the test fault `kind` fires now (once).
    fn fault(&mut self, kind: DiskFaultKind) -> bool {
        let due = |f: &DiskFault| f.kind == kind && self.global_step >= f.at_step;
        if self.prep.disk_fault.as_ref().is_some_and(due) {
            self.prep.disk_fault = None;
            return true;
        }
        false
    }
}

/// A write cut off by a full disk, as the OS reports it: the file left half
/// written, the error `StorageFull`.
fn injected_write_failure(file: &std::path::Path) -> anyhow::Error {
    if let Ok(len) = std::fs::metadata(file).map(|m| m.len()) {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(file) {
            let _ = f.set_len(len / 2);
        }
    }
    anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull))
        .context(format!("cannot write {} (injected fault)", file.display()))
}
