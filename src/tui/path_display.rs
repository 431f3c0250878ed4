//! Paths as the dashboard shows them: `recipes/../runs/demo` as `runs/demo`,
//! and relative to the current directory when they are under it.
//!
//! Normalisation is lexical (no file system access): a `..` after a
//! symbolic link may name another directory than the one shown, which is
//! acceptable for a label and never used to open anything.

use std::path::{Component, Path, PathBuf};

/// `path` without `.` components and with each `..` cancelling the
/// component before it (a leading `..` of a relative path stays).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// How the dashboard writes `path`: normalised, and relative to the
/// current directory when it lies under it.
pub fn shown(path: &Path) -> String {
    shown_from(path, std::env::current_dir().ok().as_deref())
}

fn shown_from(path: &Path, cwd: Option<&Path>) -> String {
    let p = normalize(path);
    if let Some(cwd) = cwd.map(normalize).filter(|c| c.is_absolute()) {
        let absolute = if p.is_absolute() {
            p.clone()
        } else {
            normalize(&cwd.join(&p))
        };
        if let Ok(rel) = absolute.strip_prefix(&cwd) {
            return normalize(rel).display().to_string();
        }
    }
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(path: &str, cwd: &str) -> String {
        shown_from(Path::new(path), Some(Path::new(cwd)))
    }

    #[test]
    fn dot_dot_and_dot_are_resolved_lexically() {
        let cwd = "/home/u/driftui";
        assert_eq!(
            show("recipes/../runs/demo-20250101-120000", cwd),
            "runs/demo-20250101-120000"
        );
        assert_eq!(
            show("recipes/../runs/../assets/probes/default.jsonl", cwd),
            "assets/probes/default.jsonl"
        );
        assert_eq!(show("./runs/./x/", cwd), "runs/x");
        assert_eq!(show("runs/x/..", cwd), "runs");
        assert_eq!(show("runs/..", cwd), ".");
    }

    #[test]
    fn absolute_paths_under_the_current_directory_become_relative() {
        let cwd = "/home/u/driftui";
        assert_eq!(show("/home/u/driftui/runs/x", cwd), "runs/x");
        assert_eq!(show("/home/u/driftui/recipes/../runs/x", cwd), "runs/x");
        assert_eq!(show("/home/u/driftui", cwd), ".");
        // Elsewhere: normalised, absolute or relative as given.
        assert_eq!(show("/data/runs/../runs/x", cwd), "/data/runs/x");
        assert_eq!(show("../other/./runs/x", cwd), "../other/runs/x");
        assert_eq!(show("../driftui/runs/x", cwd), "runs/x");
        assert_eq!(show("/..", cwd), "/");
        // Without a current directory: normalised only.
        assert_eq!(shown_from(Path::new("a/../b"), None), "b");
    }

    #[test]
    fn labels_that_are_not_quite_paths_pass_through() {
        let cwd = "/home/u/driftui";
        assert_eq!(
            show("assets/probes/default.jsonl (built in)", cwd),
            "assets/probes/default.jsonl (built in)"
        );
        assert_eq!(show("run", cwd), "run");
    }
}
