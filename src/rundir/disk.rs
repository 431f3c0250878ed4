//! The disk under a run directory: how much room is left, whether a write
//! failed for want of it, and byte counts as people read them.

use anyhow::{Context, Result};
use std::path::Path;

/// Room kept free beyond a snapshot's own size: the event log must still be
/// writable after the snapshot (its alerts, `run_end`), and the manifest and
/// small files are not in the estimate.
pub const RESERVE_BYTES: u64 = 64 << 20;

/// Bytes this process may still write on the file system holding `path`
/// (or its nearest existing ancestor, for a directory not made yet).
pub fn free_bytes(path: &Path) -> Result<u64> {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    fs4::available_space(at)
        .with_context(|| format!("cannot tell the free space on {}", at.display()))
}

/// Whether an error comes from a full disk or an exhausted quota.
pub fn is_out_of_space(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    })
}

/// A byte count in SI units, as `df -H` and file managers show them:
/// `812 B`, `4.2 kB`, `512.0 MB`, `1.6 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes taken by the files under `dir`, recursively (0 where unreadable).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(512_300_000), "512.3 MB");
        assert_eq!(human_bytes(1_600_000_000), "1.6 GB");
        // Rounding up to the next unit says so.
        assert_eq!(human_bytes(999_999_999), "1.0 GB");
        assert_eq!(human_bytes(u64::MAX), "18446.7 PB");
    }

    #[test]
    fn free_space_is_asked_of_the_nearest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("not/made/yet");
        let free = free_bytes(&deep).unwrap();
        assert!(free > 0);
        assert!(free <= free_bytes(dir.path()).unwrap() + (1 << 30));
    }

    #[test]
    fn a_full_disk_is_told_from_other_failures() {
        let full = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("cannot write model.safetensors");
        assert!(is_out_of_space(&full));
        let denied =
            anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!is_out_of_space(&denied));
    }
}
