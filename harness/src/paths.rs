//! Where things are: the workspace root, scenario and snapshot directories, artifacts.

use std::path::{Path, PathBuf};

/// The workspace root: `HARNESS_ROOT`, else the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    if let Ok(r) = std::env::var("HARNESS_ROOT") {
        return PathBuf::from(r);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Scenario files live under `scenarios/`.
pub fn scenarios_dir() -> PathBuf {
    std::env::var("SCENARIO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("scenarios"))
}

/// Transcript snapshots: `harness/tests/snapshots/<dir>__<file>__<variant>.snap`.
pub fn snapshots_dir() -> PathBuf {
    std::env::var("SCENARIO_SNAPSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("harness").join("tests").join("snapshots"))
}

/// Per-trial artifacts (failure reports, transcripts, logs).
pub fn artifacts_dir() -> PathBuf {
    std::env::var("SCENARIO_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target").join("scenarios"))
}

/// A path relative to the workspace root when it is inside it.
pub fn display(p: &Path) -> String {
    let root = root();
    p.strip_prefix(&root)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

/// Scenario id: path under `scenarios/` without extension (`capsule/basic`).
pub fn scenario_id(file: &Path) -> String {
    let dir = scenarios_dir();
    let rel = file.strip_prefix(&dir).unwrap_or(file);
    let s = rel.with_extension("").display().to_string();
    s.replace('\\', "/")
}

/// Every `*.yaml` / `*.yml` under a directory, sorted. Files under a directory named `_includes` or
/// starting with `_` are fragments, not scenarios.
pub fn discover(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(p);
            }
        }
    }
    walk(dir, &mut out);
    out
}
