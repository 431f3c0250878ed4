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

/// File name of the optimizer state inside a snapshot.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// A PPO phase's value-model optimizer state, stripped with the policy's.
pub const VALUE_OPTIMIZER_FILE: &str = "value_optimizer.safetensors";
const MANIFEST_FILE: &str = "manifest.json";
/// Name prefixes of directories under `snapshots/` that are not snapshots:
/// one being written, one being replaced, one being deleted.
const PARTIAL_PREFIX: &str = ".partial-";
const REPLACED_PREFIX: &str = ".replaced-";
const DELETING_PREFIX: &str = ".deleting-";

/// Writes a snapshot's files into a temporary directory, then seals it.
/// Dropped unsealed (a write failed, the disk is full), it removes what it
/// wrote: the space comes back and nothing half-written is left behind.
pub struct SnapshotWriter {
    tmp: PathBuf,
    dest: PathBuf,
    files: Vec<String>,
    sealed: bool,
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.sealed {
            // Best effort: a leftover `.partial-` directory is never taken
            // for a snapshot, and the next resume's sweep removes it.
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

impl SnapshotWriter {
    pub(super) fn begin(snapshots_dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(snapshots_dir)
            .with_context(|| format!("cannot create {}", snapshots_dir.display()))?;
        let tmp = snapshots_dir.join(format!("{PARTIAL_PREFIX}{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            tmp,
            dest: snapshots_dir.join(name),
            files: Vec::new(),
            sealed: false,
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
    pub fn seal(mut self) -> Result<PathBuf> {
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
        write_synced(
            &self.tmp.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        self.install()
    }

    /// Fill the snapshot with a sealed one's files (hard links, else
    /// copies), check them against its manifest and move it into place.
    pub(super) fn adopt(mut self, src: &Path) -> Result<PathBuf> {
        let manifest = read_manifest(src)?;
        for file in manifest.keys().map(String::as_str).chain([MANIFEST_FILE]) {
            // A manifest names files beside it, nothing elsewhere.
            if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
                bail!(
                    "{} names the file \"{file}\", which is not in the snapshot",
                    src.join(MANIFEST_FILE).display()
                );
            }
            let (from, to) = (src.join(file), self.tmp.join(file));
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).with_context(|| {
                    format!("cannot copy {} to {}", from.display(), to.display())
                })?;
            }
        }
        verify(&self.tmp).with_context(|| format!("the snapshot {}", src.display()))?;
        self.install()
    }

    /// Move the finished temporary directory into place.
    fn install(&mut self) -> Result<PathBuf> {
        // The old snapshot of this name steps aside, not away, until the new
        // one is in place: at every moment one complete snapshot holds it.
        let replaced = self
            .dest
            .exists()
            .then(|| sibling(&self.dest, REPLACED_PREFIX));
        if let Some(old) = &replaced {
            if old.exists() {
                std::fs::remove_dir_all(old)?;
            }
            std::fs::rename(&self.dest, old)
                .with_context(|| format!("cannot replace {}", self.dest.display()))?;
        }
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot move the snapshot into {}", self.dest.display()))?;
        self.sealed = true;
        if let Some(old) = replaced {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
        Ok(self.dest.clone())
    }
}

/// `dir`'s sibling named `PREFIX` + its name.
fn sibling(dir: &Path, prefix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    dir.with_file_name(format!("{prefix}{name}"))
}

/// Write `bytes` to `path` and ask the OS to put them on disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A snapshot's manifest, unverified (its files are not read).
pub fn read_manifest(dir: &Path) -> Result<BTreeMap<String, ManifestEntry>> {
    let mpath = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&mpath).with_context(|| {
        format!(
            "{} has no manifest.json: it is not a complete driftui snapshot",
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is corrupted", mpath.display()))
}

/// Whether a sealed snapshot still holds its optimizer state.
pub fn has_optimizer_state(dir: &Path) -> bool {
    read_manifest(dir).is_ok_and(|m| m.contains_key(OPTIMIZER_FILE))
}

/// Take the optimizer state out of a sealed snapshot; returns the bytes
/// freed. The manifest is rewritten first, so a crash in between leaves a
/// snapshot that verifies (an unlisted file is ignored) and is never read
/// for an optimizer state it no longer lists.
pub fn strip_optimizer_state(dir: &Path) -> Result<u64> {
    let mut manifest = read_manifest(dir)?;
    let Some(entry) = manifest.remove(OPTIMIZER_FILE) else {
        return Ok(0);
    };
    let value = manifest.remove(VALUE_OPTIMIZER_FILE);
    let tmp = dir.join(format!("{MANIFEST_FILE}.partial"));
    write_synced(&tmp, &serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST_FILE))
        .with_context(|| format!("cannot rewrite the manifest of {}", dir.display()))?;
    let mut freed = entry.bytes;
    for (name, e) in [(OPTIMIZER_FILE, Some(entry)), (VALUE_OPTIMIZER_FILE, value)] {
        let Some(e) = e else { continue };
        let file = dir.join(name);
        std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
        if name == VALUE_OPTIMIZER_FILE {
            freed += e.bytes;
        }
    }
    Ok(freed)
}

/// Delete a snapshot: renamed out of sight first, so a crash midway never
/// leaves a snapshot that lacks files but still looks like one.
pub(super) fn delete(dir: &Path) -> Result<()> {
    let gone = sibling(dir, DELETING_PREFIX);
    if gone.exists() {
        std::fs::remove_dir_all(&gone)?;
    }
    std::fs::rename(dir, &gone).with_context(|| format!("cannot remove {}", dir.display()))?;
    std::fs::remove_dir_all(&gone).with_context(|| format!("cannot remove {}", gone.display()))
}

/// Remove what a crash left under `snapshots/`: snapshots half-written or
/// half-deleted. An old snapshot set aside for its replacement comes back
/// if the replacement never arrived. Returns the bytes freed.
pub(super) fn sweep(snapshots_dir: &Path) -> Result<u64> {
    let Ok(entries) = std::fs::read_dir(snapshots_dir) else {
        return Ok(0);
    };
    let mut freed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if let Some(orig) = name.strip_prefix(REPLACED_PREFIX) {
            let dest = snapshots_dir.join(orig);
            if !dest.exists() {
                std::fs::rename(&path, &dest)
                    .with_context(|| format!("cannot restore {}", dest.display()))?;
                continue;
            }
        } else if !name.starts_with(PARTIAL_PREFIX) && !name.starts_with(DELETING_PREFIX) {
            continue;
        }
        freed += super::disk::dir_bytes(&path);
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(freed)
}

/// Check a snapshot against its manifest: every file present, sizes and
/// checksums equal. Errors say which file is wrong.
pub fn verify(dir: &Path) -> Result<BTreeMap<String, ManifestEntry>> {
    if !dir.is_dir() {
        bail!("{} is not a snapshot directory", dir.display());
    }
    let manifest = read_manifest(dir)?;
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

    /// A write that fails midway leaves nothing that looks like a snapshot,
    /// and gives its space back.
    #[test]
    fn an_unsealed_snapshot_vanishes_and_an_old_one_survives_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::begin(dir.path(), "sft-000010").unwrap();
        w.write("a.bin", b"one").unwrap();
        w.seal().unwrap();
        let mut w = SnapshotWriter::begin(dir.path(), "sft-000010").unwrap();
        w.write("a.bin", b"half").unwrap();
        drop(w);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(left, ["sft-000010"]);
        let snap = dir.path().join("sft-000010");
        verify(&snap).unwrap();
        assert_eq!(std::fs::read(snap.join("a.bin")).unwrap(), b"one");
        // Sealed again, the new one replaces it whole.
        let mut w = SnapshotWriter::begin(dir.path(), "sft-000010").unwrap();
        w.write("b.bin", b"two").unwrap();
        w.seal().unwrap();
        verify(&snap).unwrap();
        assert!(!snap.join("a.bin").exists());
    }

    #[test]
    fn a_sweep_removes_crash_leftovers_and_restores_a_set_aside_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = dir.path();
        for name in [".partial-sft-000020", ".deleting-sft-000005"] {
            std::fs::create_dir(snaps.join(name)).unwrap();
            std::fs::write(snaps.join(name).join("model.safetensors"), [0u8; 1000]).unwrap();
        }
        // A crash between setting the old sft-000010 aside and moving its
        // replacement in: the old one comes back.
        let mut w = SnapshotWriter::begin(snaps, "sft-000010").unwrap();
        w.write("a.bin", b"one").unwrap();
        w.seal().unwrap();
        std::fs::rename(snaps.join("sft-000010"), snaps.join(".replaced-sft-000010")).unwrap();
        assert_eq!(sweep(snaps).unwrap(), 2000);
        let mut left: Vec<String> = std::fs::read_dir(snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["sft-000010"]);
        verify(&snaps.join("sft-000010")).unwrap();
    }

    #[test]
    fn an_adopted_snapshot_is_checked_and_shares_no_file_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunDir::at(dir.path().join("a"));
        let b = RunDir::at(dir.path().join("b"));
        let mut w = a.begin_snapshot("sft-000010").unwrap();
        w.write("model.safetensors", b"weights").unwrap();
        w.write(OPTIMIZER_FILE, b"moments").unwrap();
        let src = w.seal().unwrap();
        assert_eq!(b.adopt_snapshot(&src).unwrap(), "snapshots/sft-000010");
        let copy = b.snapshots_dir().join("sft-000010");
        verify(&copy).unwrap();
        // Taking the optimizer state out of one leaves the other whole.
        strip_optimizer_state(&src).unwrap();
        verify(&copy).unwrap();
        assert!(has_optimizer_state(&copy) && !has_optimizer_state(&src));

        // A corrupted source is refused, and nothing of it appears. (The
        // file is replaced, not written in place: a hard link shares its
        // bytes, which is sound because driftui never rewrites a sealed
        // snapshot's file in place.)
        std::fs::write(dir.path().join("bad"), b"weightz").unwrap();
        std::fs::rename(dir.path().join("bad"), src.join("model.safetensors")).unwrap();
        let err = b.adopt_snapshot(&src).unwrap_err();
        assert!(format!("{err:#}").contains("checksum"), "{err:#}");
        verify(&copy).unwrap();
        // A manifest that names a file elsewhere is refused.
        std::fs::write(
            src.join("manifest.json"),
            r#"{"../../x": {"bytes": 1, "crc32": 0}}"#,
        )
        .unwrap();
        let err = b.adopt_snapshot(&src).unwrap_err();
        assert!(err.to_string().contains("not in the snapshot"), "{err}");
        assert!(!b.snapshots_dir().join(".partial-sft-000010").exists());
    }
}
