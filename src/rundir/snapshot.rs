//! Snapshots: `RUN_DIR/snapshots/<phase>-<step>/`, a directory that loads as
//! a Hugging Face model (`config.json`, `model.safetensors`, tokenizer files)
//! plus what a resume needs (`optimizer.safetensors`, `trainer_state.json`),
//! sealed by a `manifest.json` of sizes and CRC-32s written last.
//!
//! A snapshot is written under a temporary name and renamed into place, so a
//! crash never leaves a directory that looks complete but is not.

use super::RunDir;
use crate::events::{SnapshotEvent, SnapshotReason};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where training stood when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version of this file.
    pub version: u32,
    pub run: String,
    pub seed: u64,
    /// Index of the phase in the recipe.
    pub phase: usize,
    pub phase_name: String,
    /// Optimizer steps completed in this phase.
    pub step: u64,
    /// Steps completed over the whole run.
    pub global_step: u64,
    /// Steps the phase has in all.
    pub phase_steps: u64,
    /// The optimizer's own step count (bias correction).
    pub optimizer_step: u64,
    /// The snapshot holding this phase's frozen reference model, relative to
    /// the run directory; `None` when the phase needs none.
    pub reference: Option<String>,
    /// LoRA adapters are saved instead of full weights.
    pub lora: bool,
    /// Loss of every step so far, by global step (for the dashboard and tests).
    #[serde(default)]
    pub losses: Vec<f64>,
    /// Input tokens seen so far in this phase (TRL's cumulative `num_tokens`).
    #[serde(default)]
    pub phase_input_tokens: u64,
}

pub const STATE_VERSION: u32 = 1;

/// One file's entry in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub bytes: u64,
    pub crc32: u32,
}

/// Directory name of a snapshot.
pub fn snapshot_name(phase_name: &str, step: u64) -> String {
    format!("{phase_name}-{step:06}")
}

const REFERENCE_SUFFIX: &str = "reference";

/// Directory name of the reference model of a phase that has no earlier
/// snapshot to use (a run that starts with a preference phase).
pub fn reference_name(phase_name: &str) -> String {
    format!("{phase_name}-{REFERENCE_SUFFIX}")
}

/// Writes a snapshot's files into a temporary directory, then seals it.
pub struct SnapshotWriter {
    tmp: PathBuf,
    dest: PathBuf,
    files: Vec<String>,
}

impl SnapshotWriter {
    pub(super) fn begin(snapshots_dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(snapshots_dir)
            .with_context(|| format!("cannot create {}", snapshots_dir.display()))?;
        let tmp = snapshots_dir.join(format!(".partial-{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            tmp,
            dest: snapshots_dir.join(name),
            files: Vec::new(),
        })
    }

    /// Path for a file inside the snapshot being written.
    pub fn path(&mut self, file: &str) -> PathBuf {
        self.files.push(file.to_string());
        self.tmp.join(file)
    }

    pub fn write(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path(file);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
    }

    /// Write the manifest, sync, and move the directory into place
    /// (replacing an older snapshot of the same name).
    pub fn seal(self) -> Result<PathBuf> {
        let mut manifest = BTreeMap::new();
        for f in &self.files {
            let p = self.tmp.join(f);
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read back {}", p.display()))?;
            manifest.insert(
                f.clone(),
                ManifestEntry {
                    bytes: bytes.len() as u64,
                    crc32: crc32fast::hash(&bytes),
                },
            );
            std::fs::File::open(&p)?.sync_all()?;
        }
        std::fs::write(
            self.tmp.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        if self.dest.exists() {
            std::fs::remove_dir_all(&self.dest)?;
        }
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot move the snapshot into {}", self.dest.display()))?;
        Ok(self.dest)
    }
}

/// Check a snapshot against its manifest: every file present, sizes and
/// checksums equal. Errors say which file is wrong.
pub fn verify(dir: &Path) -> Result<BTreeMap<String, ManifestEntry>> {
    if !dir.is_dir() {
        bail!("{} is not a snapshot directory", dir.display());
    }
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).with_context(|| {
        format!(
            "{} has no manifest.json: it is not a complete driftui snapshot",
            dir.display()
        )
    })?;
    let manifest: BTreeMap<String, ManifestEntry> =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupted", mpath.display()))?;
    for (file, entry) in &manifest {
        let p = dir.join(file);
        let bytes = std::fs::read(&p)
            .with_context(|| format!("the snapshot file {} is missing", p.display()))?;
        if bytes.len() as u64 != entry.bytes {
            bail!(
                "the snapshot file {} has {} bytes, its manifest says {}: the snapshot is corrupted",
                p.display(),
                bytes.len(),
                entry.bytes
            );
        }
        if crc32fast::hash(&bytes) != entry.crc32 {
            bail!(
                "the snapshot file {} fails its checksum: the snapshot is corrupted",
                p.display()
            );
        }
    }
    Ok(manifest)
}

/// Read a verified snapshot's trainer state.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    verify(dir)?;
    let p = dir.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let state: TrainerState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a trainer state", p.display()))?;
    if state.version > STATE_VERSION {
        bail!(
            "{} was written by a newer driftui (state version {})",
            p.display(),
            state.version
        );
    }
    Ok(state)
}

/// A snapshot of a run, as the probe screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotEntry {
    /// Directory name, e.g. `sft-000050`.
    pub name: String,
    pub path: PathBuf,
    pub phase: String,
    pub step: Option<u64>,
    pub global_step: Option<u64>,
    /// Why it was written, as the log says; for one only found on disk,
    /// what its name says (`reference`) or nothing.
    pub reason: Option<SnapshotReason>,
    /// Why it cannot be probed, if it cannot.
    pub problem: Option<String>,
}

/// See [`RunDir::snapshots`].
pub(super) fn list(run: &RunDir, known: &[SnapshotEvent]) -> Vec<SnapshotEntry> {
    let mut out: Vec<SnapshotEntry> = Vec::new();
    for s in known {
        let path = run.path_of(&s.path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| s.path.clone());
        out.retain(|e| e.name != name);
        out.push(SnapshotEntry {
            phase: name
                .rsplit_once('-')
                .map_or(String::new(), |(p, _)| p.to_string()),
            name,
            step: Some(s.step),
            global_step: Some(s.global_step),
            reason: Some(s.reason),
            problem: problem(&path),
            path,
        });
    }
    if let Ok(dir) = std::fs::read_dir(run.snapshots_dir()) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !entry.path().is_dir() || out.iter().any(|e| e.name == name)
            {
                continue;
            }
            let (phase, tail) = name.rsplit_once('-').unwrap_or((name.as_str(), ""));
            let step = tail.parse::<u64>().ok();
            out.push(SnapshotEntry {
                phase: phase.to_string(),
                step,
                global_step: None,
                reason: (tail == REFERENCE_SUFFIX).then_some(SnapshotReason::Reference),
                problem: problem(&entry.path()),
                path: entry.path(),
                name,
            });
        }
    }
    for e in &mut out {
        if e.problem.is_none() && !e.path.is_dir() {
            e.problem = Some("missing on disk".into());
        }
    }
    out.sort_by(|a, b| {
        a.global_step
            .unwrap_or(u64::MAX)
            .cmp(&b.global_step.unwrap_or(u64::MAX))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// Why a snapshot directory would not load as a model, if it would not.
fn problem(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return Some("missing on disk".into());
    }
    // A LoRA snapshot loads as its base with the adapters merged.
    if dir.join("adapter_model.safetensors").is_file() && !dir.join("model.safetensors").is_file() {
        return (!dir.join("adapter_config.json").is_file())
            .then(|| "no adapter_config.json".into());
    }
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            return Some(format!("no {f}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_snapshot_verifies_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::begin(dir.path(), "sft-000010").unwrap();
        w.write("a.bin", b"hello").unwrap();
        w.write("b.json", b"{}").unwrap();
        let snap = w.seal().unwrap();
        assert!(!dir.path().join(".partial-sft-000010").exists());
        let m = verify(&snap).unwrap();
        assert_eq!(m["a.bin"].bytes, 5);

        std::fs::write(snap.join("a.bin"), b"hellO").unwrap();
        let err = verify(&snap).unwrap_err().to_string();
        assert!(err.contains("a.bin") && err.contains("checksum"), "{err}");
        std::fs::write(snap.join("a.bin"), b"hell").unwrap();
        let err = verify(&snap).unwrap_err().to_string();
        assert!(err.contains("4 bytes"), "{err}");
        std::fs::remove_file(snap.join("manifest.json")).unwrap();
        let err = verify(&snap).unwrap_err().to_string();
        assert!(err.contains("not a complete driftui snapshot"), "{err}");
    }
}
