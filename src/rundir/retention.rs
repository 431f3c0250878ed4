//! Which snapshots a run keeps on disk.
//!
//! After each snapshot is sealed, snapshots beyond the recipe's
//! `keep_snapshots` are deleted, oldest first (transformers'
//! `save_total_limit`, which keeps the most recent and the best). Never
//! deleted: the snapshot just sealed (the one a resume would use) and every
//! reference model that a kept snapshot or the phase under way needs, which
//! are kept beyond the count. The optimizer state (twice the trainable
//! weights) stays only in the newest snapshot unless every snapshot keeps it.

use super::snapshot::{self, TrainerState};
use super::RunDir;
use anyhow::Result;
use std::path::PathBuf;
use std::time::SystemTime;

/// What a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Snapshots kept at most, references they need aside; 0 keeps all.
    pub keep: u64,
    /// Only the newest snapshot keeps its optimizer state.
    pub optimizer_in_newest_only: bool,
}

/// What pruning took away.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    /// Snapshots deleted, by name, oldest first.
    pub removed: Vec<String>,
    /// Bytes the deleted snapshots held.
    pub removed_bytes: u64,
    /// Snapshots whose optimizer state was taken out, and its bytes.
    pub stripped: Vec<String>,
    pub stripped_bytes: u64,
}

/// A sealed snapshot of this run, as pruning sees it.
struct Sealed {
    name: String,
    path: PathBuf,
    sealed_at: SystemTime,
    state: TrainerState,
}

impl RunDir {
    /// Apply `policy` after the snapshot `newest` was sealed; `needed` is the
    /// snapshot holding the reference of the phase under way (relative to
    /// the run, as trainer states name it).
    pub fn prune(&self, policy: Retention, newest: &str, needed: Option<&str>) -> Result<Pruned> {
        let mut out = Pruned::default();
        let mut sealed = self.sealed_snapshots();
        if policy.keep > 0 {
            let mut kept: Vec<&str> = vec![newest];
            for s in sealed.iter().rev() {
                if kept.len() as u64 >= policy.keep {
                    break;
                }
                if s.name != newest {
                    kept.push(&s.name);
                }
            }
            let mut keep: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
            let references = sealed
                .iter()
                .filter(|s| kept.contains(&s.name.as_str()))
                .filter_map(|s| s.state.reference.as_deref())
                .chain(needed)
                .map(|rel| rel.rsplit('/').next().unwrap_or(rel).to_string())
                .collect::<Vec<_>>();
            keep.extend(references);
            for s in sealed.iter().filter(|s| !keep.contains(&s.name)) {
                let bytes = super::disk::dir_bytes(&s.path);
                snapshot::delete(&s.path)?;
                out.removed_bytes += bytes;
                out.removed.push(s.name.clone());
            }
            sealed.retain(|s| !out.removed.contains(&s.name));
        }
        if policy.optimizer_in_newest_only {
            for s in sealed.iter().filter(|s| s.name != newest) {
                let bytes = snapshot::strip_optimizer_state(&s.path)?;
                if bytes > 0 {
                    out.stripped_bytes += bytes;
                    out.stripped.push(s.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// The run's sealed snapshots with a trainer state, in the order they
    /// were sealed (their trainer states' times, never rewritten; then steps). A directory that
    /// is not one of driftui's sealed snapshots is left alone.
    fn sealed_snapshots(&self) -> Vec<Sealed> {
        let Ok(entries) = std::fs::read_dir(self.snapshots_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<Sealed> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    return None;
                }
                let path = e.path();
                let sealed_at = std::fs::metadata(path.join("trainer_state.json"))
                    .and_then(|m| m.modified())
                    .ok()?;
                let text = std::fs::read_to_string(path.join("trainer_state.json")).ok()?;
                let state: TrainerState = serde_json::from_str(&text).ok()?;
                Some(Sealed {
                    name,
                    path,
                    sealed_at,
                    state,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (a.sealed_at, a.state.global_step, &a.name).cmp(&(
                b.sealed_at,
                b.state.global_step,
                &b.name,
            ))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::snapshot::{read_state, verify, STATE_VERSION};

    /// Seal a snapshot with a trainer state (and an optimizer file).
    fn seal(run: &RunDir, name: &str, global_step: u64, reference: Option<&str>) {
        let mut w = run.begin_snapshot(name).unwrap();
        w.write("model.safetensors", &[1u8; 100]).unwrap();
        w.write(snapshot::OPTIMIZER_FILE, &[2u8; 200]).unwrap();
        let state = TrainerState {
            version: STATE_VERSION,
            run: "t".into(),
            seed: 1,
            phase: 0,
            phase_name: "p".into(),
            step: global_step,
            global_step,
            phase_steps: 100,
            optimizer_step: global_step,
            reference: reference.map(RunDir::snapshot_rel),
            lora: false,
            losses: Vec::new(),
            phase_input_tokens: 0,
        };
        w.write("trainer_state.json", &serde_json::to_vec(&state).unwrap())
            .unwrap();
        w.seal().unwrap();
        // Sealing order must show in the manifests' times on any file system.
        std::thread::sleep(std::time::Duration::from_millis(15));
    }

    fn names(run: &RunDir) -> Vec<String> {
        run.sealed_snapshots().into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn keeps_the_newest_and_the_references_they_need() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        let policy = Retention {
            keep: 2,
            optimizer_in_newest_only: false,
        };
        seal(&run, "sft-000010", 10, None);
        seal(&run, "sft-000020", 20, None);
        let p = run.prune(policy, "sft-000020", None).unwrap();
        assert!(p.removed.is_empty());
        // The DPO phase's reference is sft-000020, the end of SFT.
        seal(&run, "dpo-000005", 25, Some("sft-000020"));
        let held = crate::rundir::disk::dir_bytes(&run.snapshots_dir().join("sft-000010"));
        assert!(held > 300);
        let p = run
            .prune(policy, "dpo-000005", Some("snapshots/sft-000020"))
            .unwrap();
        assert_eq!(p.removed, vec!["sft-000010"]);
        assert_eq!(p.removed_bytes, held);
        seal(&run, "dpo-000010", 30, Some("sft-000020"));
        seal(&run, "dpo-000015", 35, Some("sft-000020"));
        let p = run
            .prune(policy, "dpo-000015", Some("snapshots/sft-000020"))
            .unwrap();
        assert_eq!(p.removed, vec!["dpo-000005"]);
        assert_eq!(names(&run), ["sft-000020", "dpo-000010", "dpo-000015"]);
        // Nothing half-gone is left behind.
        let hidden: Vec<_> = std::fs::read_dir(run.snapshots_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty());
    }

    #[test]
    fn the_newest_alone_keeps_its_optimizer_state_and_the_rest_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        let policy = Retention {
            keep: 0,
            optimizer_in_newest_only: true,
        };
        seal(&run, "sft-000010", 10, None);
        seal(&run, "sft-000020", 20, None);
        let p = run.prune(policy, "sft-000020", None).unwrap();
        assert_eq!(p.stripped, vec!["sft-000010"]);
        assert_eq!(p.stripped_bytes, 200);
        let old = run.snapshots_dir().join("sft-000010");
        assert!(!old.join(snapshot::OPTIMIZER_FILE).exists());
        assert!(!snapshot::has_optimizer_state(&old));
        verify(&old).unwrap();
        assert_eq!(read_state(&old).unwrap().global_step, 10);
        assert!(snapshot::has_optimizer_state(
            &run.snapshots_dir().join("sft-000020")
        ));
        // keep = 0 deletes nothing.
        assert_eq!(names(&run), ["sft-000010", "sft-000020"]);
    }

    #[test]
    fn stale_snapshots_of_an_abandoned_future_go_first() {
        // Resumed in place from step 10: the old attempt's step-30 snapshot
        // was sealed before the new step-20 one.
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        seal(&run, "sft-000010", 10, None);
        seal(&run, "sft-000030", 30, None);
        seal(&run, "sft-000020", 20, None);
        let policy = Retention {
            keep: 2,
            optimizer_in_newest_only: false,
        };
        let p = run.prune(policy, "sft-000020", None).unwrap();
        assert_eq!(p.removed, vec!["sft-000010"]);
        seal(&run, "sft-000025", 25, None);
        let p = run.prune(policy, "sft-000025", None).unwrap();
        assert_eq!(p.removed, vec!["sft-000030"]);
    }

    #[test]
    fn directories_that_are_not_sealed_snapshots_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        std::fs::create_dir_all(run.snapshots_dir().join("mine")).unwrap();
        std::fs::create_dir_all(run.snapshots_dir().join(".partial-sft-000005")).unwrap();
        seal(&run, "sft-000010", 10, None);
        seal(&run, "sft-000020", 20, None);
        let policy = Retention {
            keep: 1,
            optimizer_in_newest_only: true,
        };
        let p = run.prune(policy, "sft-000020", None).unwrap();
        assert_eq!(p.removed, vec!["sft-000010"]);
        assert!(run.snapshots_dir().join("mine").is_dir());
    }
}
