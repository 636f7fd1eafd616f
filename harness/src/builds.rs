//! Canister builds on demand: each (crate × feature set) is built once for wasm32 in release mode,
//! stored content-addressed under `target/wasm/artifacts/`, and reused by every later run whose
//! sources did not change.
//!
//! Builds use their own `CARGO_TARGET_DIR` (`target/wasm`) so that a build started from inside
//! `cargo test` does not wait for the outer cargo's lock on `target/`.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildSpec {
    pub krate: String,
    pub features: BTreeSet<String>,
    pub default_features: bool,
}

impl BuildSpec {
    /// `backend`, `backend+failpoints`, `backend-nodefault+x`.
    pub fn key(&self) -> String {
        let mut s = self.krate.clone();
        if !self.default_features {
            s.push_str("-nodefault");
        }
        for f in &self.features {
            s.push('+');
            s.push_str(f);
        }
        s
    }
}

/// A built wasm.
#[derive(Debug)]
pub struct Artifact {
    pub spec: BuildSpec,
    pub path: PathBuf,
    pub wasm: Vec<u8>,
    pub sha256: [u8; 32],
}

/// A workspace crate that can be built as a canister.
#[derive(Clone, Debug)]
pub struct CrateInfo {
    pub name: String,
    pub dir: PathBuf,
    pub features: BTreeSet<String>,
}

/// The crates of the workspace, read from `Cargo.toml` files.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    pub root: PathBuf,
    pub crates: BTreeMap<String, CrateInfo>,
}

impl Workspace {
    pub fn load(root: &Path) -> Result<Workspace, String> {
        let text = std::fs::read_to_string(root.join("Cargo.toml"))
            .map_err(|e| format!("cannot read the workspace Cargo.toml: {e}"))?;
        let doc: toml::Table = text
            .parse()
            .map_err(|e| format!("workspace Cargo.toml: {e}"))?;
        let members: Vec<String> = doc
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut crates = BTreeMap::new();
        for m in members {
            let dir = root.join(&m);
            let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
                continue;
            };
            let Ok(doc) = text.parse::<toml::Table>() else {
                continue;
            };
            let Some(name) = doc
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
            else {
                continue;
            };
            let features: BTreeSet<String> = doc
                .get("features")
                .and_then(|f| f.as_table())
                .map(|t| t.keys().filter(|k| *k != "default").cloned().collect())
                .unwrap_or_default();
            // optional dependencies are implicit features too
            let mut features = features;
            // (unless some feature names them as `dep:…`)
            let dep_syntax = doc
                .get("features")
                .and_then(|f| f.as_table())
                .map(|t| {
                    t.values()
                        .filter_map(|v| v.as_array())
                        .flatten()
                        .any(|x| x.as_str().map(|s| s.starts_with("dep:")).unwrap_or(false))
                })
                .unwrap_or(false);
            if let Some(deps) = doc
                .get("dependencies")
                .and_then(|d| d.as_table())
                .filter(|_| !dep_syntax)
            {
                for (k, v) in deps {
                    if v.get("optional").and_then(|o| o.as_bool()).unwrap_or(false) {
                        features.insert(k.clone());
                    }
                }
            }
            crates.insert(
                name.to_string(),
                CrateInfo {
                    name: name.to_string(),
                    dir,
                    features,
                },
            );
        }
        Ok(Workspace {
            root: root.to_path_buf(),
            crates,
        })
    }

    /// Default `.did` path of a crate: `<dir>/<crate>.did`.
    pub fn default_did(&self, krate: &str) -> Option<PathBuf> {
        self.crates
            .get(krate)
            .map(|c| c.dir.join(format!("{krate}.did")))
    }

    /// The `.did` for a build: `<dir>/<crate>.<feature>.did` for the first of its features that has
    /// one (e.g. `backend.failpoints.did`, which adds `failpoint_arm`), else `<dir>/<crate>.did`.
    pub fn did_for(&self, krate: &str, features: &BTreeSet<String>) -> Option<PathBuf> {
        let c = self.crates.get(krate)?;
        for f in features {
            let p = c.dir.join(format!("{krate}.{f}.did"));
            if p.is_file() {
                return Some(p);
            }
        }
        self.default_did(krate)
    }
}

type BuildCell = Arc<OnceLock<Result<Arc<Artifact>, String>>>;

fn cache() -> &'static Mutex<HashMap<BuildSpec, BuildCell>> {
    static C: OnceLock<Mutex<HashMap<BuildSpec, BuildCell>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Serializes cargo invocations of this process (cargo would block on its own lock anyway).
fn cargo_lock() -> &'static Mutex<()> {
    static L: OnceLock<Mutex<()>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// Hash of everything that can change a canister build: the canister crates' sources, the lock file,
/// the workspace manifest and the toolchain file.
fn source_fingerprint(root: &Path, spec: &BuildSpec) -> String {
    let mut h = Sha256::new();
    h.update(spec.key().as_bytes());
    for f in ["Cargo.lock", "Cargo.toml", "rust-toolchain.toml"] {
        if let Ok(b) = std::fs::read(root.join(f)) {
            h.update(f.as_bytes());
            h.update(&b);
        }
    }
    let mut files = vec![];
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // tests, benches and docs do not change a wasm
            if name == "target"
                || name == "tests"
                || name == "benches"
                || name == "examples"
                || name.starts_with('.')
                || name.ends_with(".md")
            {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    walk(&root.join("canisters"), &mut files);
    files.sort();
    for f in files {
        if let Ok(b) = std::fs::read(&f) {
            h.update(
                f.strip_prefix(root)
                    .unwrap_or(&f)
                    .display()
                    .to_string()
                    .as_bytes(),
            );
            h.update((b.len() as u64).to_le_bytes());
            h.update(&b);
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// Build (or reuse) the wasm for `spec`.
pub fn build(ws: &Workspace, spec: &BuildSpec) -> Result<Arc<Artifact>, String> {
    let cell = {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        c.entry(spec.clone()).or_default().clone()
    };
    cell.get_or_init(|| build_uncached(ws, spec).map(Arc::new))
        .clone()
}

fn build_uncached(ws: &Workspace, spec: &BuildSpec) -> Result<Artifact, String> {
    let root = &ws.root;
    let info = ws
        .crates
        .get(&spec.krate)
        .ok_or_else(|| format!("`{}` is not a crate of the workspace", spec.krate))?;
    for f in &spec.features {
        if !info.features.contains(f) {
            return Err(format!("crate `{}` has no feature `{f}`", spec.krate));
        }
    }
    let target = root.join("target").join("wasm");
    let store = target.join("artifacts");
    let fp = source_fingerprint(root, spec);
    let stored = store.join(format!("{}-{fp}.wasm", spec.key()));
    if let Ok(wasm) = std::fs::read(&stored) {
        let sha256: [u8; 32] = Sha256::digest(&wasm).into();
        return Ok(Artifact {
            spec: spec.clone(),
            path: stored,
            wasm,
            sha256,
        });
    }
    let _guard = cargo_lock().lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            &spec.krate,
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    if !spec.default_features {
        cmd.arg("--no-default-features");
    }
    if !spec.features.is_empty() {
        cmd.arg("--features")
            .arg(spec.features.iter().cloned().collect::<Vec<_>>().join(","));
    }
    if std::env::var("SCENARIO_BUILD_VERBOSE").is_err() {
        cmd.arg("--quiet");
    }
    eprintln!(
        "harness: building {} for wasm32 (CARGO_TARGET_DIR=target/wasm)…",
        spec.key()
    );
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "building {} failed:\n{}",
            spec.key(),
            tail.join("\n")
        ));
    }
    let built = target
        .join("wasm32-unknown-unknown")
        .join("release")
        .join(format!("{}.wasm", spec.krate.replace('-', "_")));
    let wasm = std::fs::read(&built)
        .map_err(|e| format!("cargo did not produce {}: {e}", built.display()))?;
    std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
    let tmp = store.join(format!(".{}-{fp}.{}.tmp", spec.key(), std::process::id()));
    std::fs::write(&tmp, &wasm).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &stored).map_err(|e| e.to_string())?;
    let sha256: [u8; 32] = Sha256::digest(&wasm).into();
    Ok(Artifact {
        spec: spec.clone(),
        path: stored,
        wasm,
        sha256,
    })
}

/// Candid interfaces read from wasms, by the wasm's SHA-256.
type CandidMemo = Mutex<HashMap<[u8; 32], Result<String, String>>>;

/// [`extract_candid`], memoized per process by the wasm's hash.
pub fn candid_of(a: &Artifact) -> Result<String, String> {
    static MEMO: OnceLock<CandidMemo> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(r) = memo
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&a.sha256)
    {
        return r.clone();
    }
    let r = extract_candid(&a.wasm);
    memo.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(a.sha256, r.clone());
    r
}

/// The Candid service a canister built with `ic_cdk::export_candid!()` describes: the module is
/// instantiated with every import trapping and its `get_candid_pointer` export called (what
/// `candid-extractor` does).
#[cfg(feature = "embedded")]
pub fn extract_candid(wasm: &[u8]) -> Result<String, String> {
    use wasmtime::{Config, Engine, Linker, Module, Store};
    let mut cfg = Config::new();
    cfg.wasm_simd(true);
    let engine = Engine::new(&cfg).map_err(|e| e.to_string())?;
    let module = Module::new(&engine, wasm).map_err(|e| format!("cannot compile the wasm: {e}"))?;
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .define_unknown_imports_as_traps(&module)
        .map_err(|e| e.to_string())?;
    let mut store = Store::new(&engine, ());
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| format!("cannot instantiate the wasm: {e}"))?;
    let f = instance
        .get_typed_func::<(), i32>(&mut store, "get_candid_pointer")
        .map_err(|_| {
            "the wasm exports no `get_candid_pointer` (add `ic_cdk::export_candid!()`)".to_string()
        })?;
    let ptr = f
        .call(&mut store, ())
        .map_err(|e| format!("get_candid_pointer trapped: {e}"))? as u32 as usize;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or("the wasm exports no memory")?;
    let data = memory.data(&store);
    let end = data[ptr..]
        .iter()
        .position(|b| *b == 0)
        .ok_or("unterminated Candid string")?;
    String::from_utf8(data[ptr..ptr + end].to_vec()).map_err(|e| e.to_string())
}

#[cfg(not(feature = "embedded"))]
pub fn extract_candid(_wasm: &[u8]) -> Result<String, String> {
    Err("reading the interface from the wasm needs the harness feature `embedded`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_knows_canister_crates_and_features() {
        let ws = Workspace::load(&crate::paths::root()).unwrap();
        assert!(ws.crates.contains_key("backend"));
        assert!(ws.crates.contains_key("harness"));
        let spec = BuildSpec {
            krate: "backend".into(),
            features: ["a".to_string()].into(),
            default_features: false,
        };
        assert_eq!(spec.key(), "backend-nodefault+a");
    }
}
