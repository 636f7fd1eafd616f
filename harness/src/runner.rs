//! Running a trial: one scenario × backend × variant, on a fresh IC.

use crate::backend::{self, FaultAction, FaultRule, Ic, Install, LogLine, Reject, Unavailable};
use crate::builds::{self, Artifact, BuildSpec};
use crate::codec::{self, Mismatch, Normalize, Resolve, ValueError};
use crate::model::{BackendKind, Capability, FaultActionSpec, FaultSpec, FaultThen, InFlight};
use crate::plan::{self, Loaded, PStep, Project};
use crate::yaml::{Node, Span, Spanned};
use candid::types::value::{IDLValue, VariantValue};
use candid::Principal;
use serde_json::{json, Map, Value as J};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Column order of the matrices in the coverage summary (other stages follow alphabetically).
pub const STAGE_ORDER: &[&str] = &[
    "NotStarted",
    "Exporting",
    "Creating",
    "Installing",
    "Importing",
    "Verifying",
    "Completed",
    "Failed",
];

/// Fixed start time of every trial: 2026-01-01T00:00:00Z.
pub const START_TIME_NANOS: u64 = 1_767_225_600_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariantSel {
    Base,
    Fault { idx: usize, stage: String },
    Upgrade { idx: usize, stage: String },
    Case { idx: usize },
}

/// One scenario × backend × variant.
#[derive(Clone)]
pub struct Trial {
    pub scenario: Rc<Loaded>,
    pub backend: BackendKind,
    pub variant: VariantSel,
    pub variant_name: String,
    /// `dir/file::backend::variant`
    pub name: String,
}

impl Trial {
    /// The bug a `known_bug` case shows, if this trial is one.
    pub fn known_bug(&self) -> Option<&str> {
        match &self.variant {
            VariantSel::Case { idx } => self
                .scenario
                .cases
                .get(*idx)
                .and_then(|c| c.known_bug.as_ref())
                .map(|k| k.bug.as_str()),
            _ => None,
        }
    }

    /// `scripts/scenario.sh <file> --backend b --variant v`
    pub fn repro(&self) -> String {
        format!(
            "scripts/scenario.sh {} --backend {} --variant '{}'",
            crate::paths::display(&self.scenario.file),
            self.backend.name(),
            self.variant_name
        )
    }
    /// Snapshot name: path and variant (shared by backends, so they are compared with each other).
    pub fn snapshot_name(&self) -> String {
        format!(
            "{}__{}",
            self.scenario.id.replace('/', "__"),
            sanitize(&self.variant_name)
        )
    }
    pub fn artifact_dir(&self) -> PathBuf {
        crate::paths::artifacts_dir().join(format!(
            "{}__{}__{}",
            self.scenario.id.replace('/', "__"),
            self.backend.name(),
            sanitize(&self.variant_name)
        ))
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else if c == '@' {
                '@'
            } else {
                '-'
            }
        })
        .collect()
}

/// Expand a scenario into its trials.
pub fn expand(l: &Rc<Loaded>) -> Vec<Trial> {
    let v = &l.sc.variants;
    let backends: Vec<BackendKind> = match &v.backends {
        Some(b) => b.iter().map(|x| x.value).collect(),
        None => BackendKind::ALL.to_vec(),
    };
    let mut sels = vec![];
    if v.base.unwrap_or(v.cases.is_empty()) {
        sels.push((VariantSel::Base, "base".to_string()));
    }
    for (idx, c) in l.cases.iter().enumerate() {
        sels.push((VariantSel::Case { idx }, format!("case={}", c.name)));
    }
    for (idx, fv) in v.fault_at_each_stage.iter().enumerate() {
        for s in l
            .stages
            .iter()
            .filter(|s| crate::model::stage_selected(&fv.stages, s))
        {
            sels.push((
                VariantSel::Fault {
                    idx,
                    stage: s.clone(),
                },
                format!("fault={}@{}", fv.name.value, s),
            ));
        }
    }
    for (idx, uv) in v.upgrade_at_each_stage.iter().enumerate() {
        for s in l
            .stages
            .iter()
            .filter(|s| crate::model::stage_selected(&uv.stages, s))
        {
            sels.push((
                VariantSel::Upgrade {
                    idx,
                    stage: s.clone(),
                },
                format!("upgrade={}@{}", uv.canister.value, s),
            ));
        }
    }
    let mut out = vec![];
    for b in backends {
        for (sel, vn) in &sels {
            out.push(Trial {
                scenario: l.clone(),
                backend: b,
                variant: sel.clone(),
                variant_name: vn.clone(),
                name: format!("{}::{}::{}", l.id, b.name(), vn),
            });
        }
    }
    out
}

/// Tag filter from `SCENARIO_TAGS` (`smoke,!slow`): every positive tag listed must be present (any of
/// them), no negative one may be.
pub fn tags_selected(l: &Loaded, filter: &str) -> bool {
    let tags: BTreeSet<&str> = l.sc.tags.iter().map(String::as_str).collect();
    let mut pos = vec![];
    for t in filter.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Some(neg) = t.strip_prefix('!') {
            if tags.contains(neg) {
                return false;
            }
        } else {
            pos.push(t);
        }
    }
    pos.is_empty() || pos.iter().any(|t| tags.contains(t))
}

/// Features every build gets from the CI matrix (`SCENARIO_FEATURES=a,b`), when the crate has them.
pub fn matrix_features() -> BTreeSet<String> {
    std::env::var("SCENARIO_FEATURES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The build of a canister after applying the CI matrix.
pub fn effective_spec(project: &Project, spec: &BuildSpec) -> BuildSpec {
    let mut s = spec.clone();
    if let Some(info) = project.ws.crates.get(&s.krate) {
        for f in matrix_features() {
            if info.features.contains(&f) {
                s.features.insert(f);
            }
        }
    }
    if std::env::var("SCENARIO_NO_DEFAULT_FEATURES")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        s.default_features = false;
    }
    s
}

fn default_features_of(project: &Project, krate: &str) -> BTreeSet<String> {
    let Some(info) = project.ws.crates.get(krate) else {
        return BTreeSet::new();
    };
    let Ok(text) = std::fs::read_to_string(info.dir.join("Cargo.toml")) else {
        return BTreeSet::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return BTreeSet::new();
    };
    doc.get("features")
        .and_then(|f| f.get("default"))
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Capabilities a scenario needs: declared plus inferred from its steps and variants.
pub fn needed_capabilities(l: &Loaded) -> BTreeSet<Capability> {
    let mut caps: BTreeSet<Capability> =
        l.sc.requires.capabilities.iter().map(|c| c.value).collect();
    let mut fault = |f: &FaultSpec| {
        caps.insert(Capability::Faults);
        if f.target.value == "management" {
            caps.insert(Capability::ManagementFaults);
        }
        if matches!(f.action, FaultActionSpec::Hold) {
            caps.insert(Capability::HeldCalls);
        }
    };
    for s in l.all_steps() {
        if let Some(f) = &s.step.fault {
            fault(f);
        }
    }
    for fv in &l.sc.variants.fault_at_each_stage {
        if let Some(f) = &fv.fault {
            fault(f);
        }
    }
    if l.all_steps()
        .any(|s| matches!(s.action, "canisters" | "cycles"))
    {
        caps.insert(Capability::Inspect);
    }
    if l.all_steps().any(|s| s.step.max_instructions.is_some()) {
        caps.insert(Capability::Metrics);
    }
    caps
}

/// Why a trial cannot run here, if it cannot.
pub fn skip_reason(project: &Project, t: &Trial) -> Option<String> {
    let l = &t.scenario;
    let req = &l.sc.requires;
    if !req.backends.is_empty() && !req.backends.iter().any(|b| b.value == t.backend) {
        return Some(format!(
            "requires backend {} (this trial is {})",
            req.backends
                .iter()
                .map(|b| b.value.name())
                .collect::<Vec<_>>()
                .join(" or "),
            t.backend.name()
        ));
    }
    if let Some(only) = std::env::var("SCENARIO_BACKEND")
        .ok()
        .filter(|s| !s.is_empty())
    {
        if only != t.backend.name() {
            return Some(format!("SCENARIO_BACKEND={only}"));
        }
    }
    if let Err(Unavailable(why)) = backend::availability(t.backend) {
        return Some(why);
    }
    for c in needed_capabilities(l) {
        if !backend::kind_supports(t.backend, c) {
            return Some(format!(
                "needs the engine-only capability `{}`, which {} does not have",
                c.name(),
                t.backend.name()
            ));
        }
    }
    // features, against the effective builds
    let builds: Vec<(BuildSpec, BTreeSet<String>)> = l
        .canisters
        .iter()
        .map(|c| {
            let s = effective_spec(project, &c.spec);
            let mut all = s.features.clone();
            if s.default_features {
                all.extend(default_features_of(project, &s.krate));
            }
            (s, all)
        })
        .collect();
    for f in &req.features {
        if let Some(neg) = f.value.strip_prefix('!') {
            if let Some((s, _)) = builds.iter().find(|(_, all)| all.contains(neg)) {
                return Some(format!(
                    "requires feature `{neg}` to be off, but build {} has it",
                    s.key()
                ));
            }
        } else if !builds.iter().any(|(_, all)| all.contains(&f.value)) {
            return Some(format!(
                "requires feature `{}`, which no canister build of this trial has",
                f.value
            ));
        }
    }
    None
}

/// Coverage of one or more trials.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Coverage {
    /// crate → method → calls
    pub methods: BTreeMap<String, BTreeMap<String, u32>>,
    /// crate → every method of its .did
    pub all_methods: BTreeMap<String, BTreeSet<String>>,
    /// `crate.method` → variant cases seen in replies (`Err.NotFound`)
    pub cases: BTreeMap<String, BTreeSet<String>>,
    /// `crate.method` → every possible top-level case
    pub all_cases: BTreeMap<String, BTreeSet<String>>,
    /// reject code → count
    pub rejects: BTreeMap<String, u32>,
    /// (scenario, kind, name, stage) → passed?
    pub cells: BTreeMap<(String, String, String, String), bool>,
    /// (kind, name, stage) → the trials that declared this cell (`variants.cases[].cell`).
    pub matrix: BTreeMap<(String, String, String), MatrixCell>,
}

/// The trials behind one cell of the stage × fault / stage × upgrade matrix.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MatrixCell {
    /// (trial name, passed)
    pub trials: Vec<(String, bool)>,
    /// `known_bug` trials that still reproduce their bug.
    pub known_bugs: Vec<String>,
}

impl Coverage {
    pub fn merge(&mut self, o: &Coverage) {
        for (k, m) in &o.methods {
            let e = self.methods.entry(k.clone()).or_default();
            for (mm, n) in m {
                *e.entry(mm.clone()).or_default() += n;
            }
        }
        for (k, v) in &o.all_methods {
            self.all_methods
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
        for (k, v) in &o.cases {
            self.cases
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
        for (k, v) in &o.all_cases {
            self.all_cases
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
        for (k, n) in &o.rejects {
            *self.rejects.entry(k.clone()).or_default() += n;
        }
        for (k, v) in &o.cells {
            self.cells.insert(k.clone(), *v);
        }
        for (k, v) in &o.matrix {
            let e = self.matrix.entry(k.clone()).or_default();
            for t in &v.trials {
                if !e.trials.contains(t) {
                    e.trials.push(t.clone());
                }
            }
            e.trials.sort();
            for t in &v.known_bugs {
                if !e.known_bugs.contains(t) {
                    e.known_bugs.push(t.clone());
                }
            }
            e.known_bugs.sort();
        }
    }

    /// The stage × fault and stage × upgrade matrices of the declared cells: one row per fault or
    /// upgrade, one column per stage (in the order of `stage_order`, then alphabetically); each cell
    /// shows ✓ with the number of passing trials, ✗ if any failed, · if no trial declared it.
    pub fn matrix_summary(&self, stage_order: &[&str]) -> String {
        let mut s = String::new();
        for kind in ["fault", "upgrade"] {
            let cells: Vec<(&(String, String, String), &MatrixCell)> = self
                .matrix
                .iter()
                .filter(|((k, _, _), _)| k == kind)
                .collect();
            if cells.is_empty() {
                continue;
            }
            let mut stages: Vec<String> = cells
                .iter()
                .map(|((_, _, st), _)| st.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            stages.sort_by_key(|st| {
                (
                    stage_order
                        .iter()
                        .position(|x| x == st)
                        .unwrap_or(usize::MAX),
                    st.clone(),
                )
            });
            let rows: BTreeSet<&str> = cells.iter().map(|((_, n, _), _)| n.as_str()).collect();
            let w = rows
                .iter()
                .map(|r| r.chars().count())
                .max()
                .unwrap_or(4)
                .max(kind.len() + 8)
                + 2;
            let cw = stages
                .iter()
                .map(|st| st.chars().count())
                .max()
                .unwrap_or(4)
                .max(5)
                + 2;
            s.push_str(&format!("  stage × {kind} (✓n: n trials passed, !n: n known bugs reproduced, ✗: a trial failed, ·: none):\n"));
            s.push_str(&format!("    {:w$}", ""));
            for st in &stages {
                s.push_str(&format!("{st:cw$}"));
            }
            s.push('\n');
            for r in rows {
                s.push_str(&format!("    {r:w$}"));
                for st in &stages {
                    let cell = match self
                        .matrix
                        .get(&(kind.to_string(), r.to_string(), st.clone()))
                    {
                        None => "·".to_string(),
                        Some(c) if c.trials.iter().any(|(_, ok)| !ok) => "✗".to_string(),
                        Some(c) if c.known_bugs.is_empty() => format!("✓{}", c.trials.len()),
                        Some(c) if c.trials.is_empty() => format!("!{}", c.known_bugs.len()),
                        Some(c) => format!("✓{}!{}", c.trials.len(), c.known_bugs.len()),
                    };
                    s.push_str(&format!("{cell:cw$}"));
                }
                s.push('\n');
            }
        }
        s
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let mut s = String::from("scenario coverage\n");
        for (krate, all) in &self.all_methods {
            let called = self.methods.get(krate).cloned().unwrap_or_default();
            let missing: Vec<&String> = all.iter().filter(|m| !called.contains_key(*m)).collect();
            s.push_str(&format!(
                "  {krate}: {}/{} Candid methods called",
                all.len() - missing.len(),
                all.len()
            ));
            if !missing.is_empty() {
                s.push_str(&format!(
                    "; never called: {}",
                    short_list(missing.iter().map(|m| m.as_str()))
                ));
            }
            s.push('\n');
            // error variants: the union over the crate's methods (`Err.NotOwner`)
            let prefix = format!("{krate}.");
            let all_err: BTreeSet<&str> = self
                .all_cases
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .flat_map(|(_, v)| {
                    v.iter()
                        .map(String::as_str)
                        .filter(|c| c.starts_with("Err"))
                })
                .collect();
            let seen_err: BTreeSet<&str> = self
                .cases
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .flat_map(|(_, v)| v.iter().map(String::as_str))
                .filter(|c| all_err.contains(c))
                .collect();
            if !all_err.is_empty() {
                s.push_str(&format!(
                    "  {krate}: {}/{} error variants seen",
                    seen_err.len(),
                    all_err.len()
                ));
                let missing: Vec<&str> = all_err.difference(&seen_err).copied().collect();
                if !missing.is_empty() {
                    s.push_str(&format!(
                        "; never seen: {}",
                        short_list(missing.iter().copied())
                    ));
                }
                s.push('\n');
            }
        }
        if !self.rejects.is_empty() {
            s.push_str(&format!(
                "  reject codes seen: {}\n",
                self.rejects
                    .iter()
                    .map(|(k, n)| format!("{k}×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut by: BTreeMap<(String, String), Vec<(String, bool)>> = BTreeMap::new();
        for ((sc, kind, name, stage), ok) in &self.cells {
            by.entry((sc.clone(), format!("{kind}={name}")))
                .or_default()
                .push((stage.clone(), *ok));
        }
        if !by.is_empty() {
            s.push_str("  stage cells (✓ passed, ✗ failed):\n");
            for ((sc, what), cells) in by {
                s.push_str(&format!(
                    "    {sc} {what}: {}\n",
                    cells
                        .iter()
                        .map(|(st, ok)| format!("{}{st}", if *ok { "✓" } else { "✗" }))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
        }
        s.push_str(&self.matrix_summary(STAGE_ORDER));
        s
    }
}

/// Variant cases in a reply, down through records (`Err.NotOwner` for `Err: {kind: NotOwner, ...}`).
/// At most 12 names, then "… and N more" (set `SCENARIO_COVERAGE_FULL=1` for all).
fn short_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    let full = std::env::var("SCENARIO_COVERAGE_FULL")
        .map(|v| v == "1")
        .unwrap_or(false);
    if full || items.len() <= 12 {
        items.join(", ")
    } else {
        format!("{} … and {} more", items[..12].join(", "), items.len() - 12)
    }
}

fn observed_cases(v: &IDLValue, prefix: &str, depth: usize, out: &mut BTreeSet<String>) {
    match v {
        IDLValue::Variant(VariantValue(f, _)) => {
            let tag = match &f.id {
                candid::types::Label::Named(s) => s.clone(),
                other => other.to_string(),
            };
            let name = if prefix.is_empty() {
                tag
            } else {
                format!("{prefix}.{tag}")
            };
            out.insert(name.clone());
            if depth < 1 {
                observed_cases(&f.val, &name, depth + 1, out);
            }
        }
        IDLValue::Record(fields) if !prefix.is_empty() => {
            for f in fields {
                if matches!(f.val, IDLValue::Variant(_)) {
                    observed_cases(&f.val, prefix, depth, out);
                }
            }
        }
        _ => {}
    }
}

fn possible_cases(
    t: &candid::types::Type,
    iface: &codec::Interface,
    prefix: &str,
    depth: usize,
    out: &mut BTreeSet<String>,
) {
    match iface.trace(t).as_ref() {
        candid::types::TypeInner::Variant(fs) => {
            for f in fs {
                let tag = match f.id.as_ref() {
                    candid::types::Label::Named(s) => s.clone(),
                    other => other.to_string(),
                };
                let name = if prefix.is_empty() {
                    tag
                } else {
                    format!("{prefix}.{tag}")
                };
                let before = out.len();
                if depth < 1 {
                    possible_cases(&f.ty, iface, &name, depth + 1, out);
                }
                if out.len() == before {
                    out.insert(name);
                }
            }
        }
        candid::types::TypeInner::Record(fs) if !prefix.is_empty() => {
            for f in fs {
                if matches!(
                    iface.trace(&f.ty).as_ref(),
                    candid::types::TypeInner::Variant(_)
                ) {
                    possible_cases(&f.ty, iface, prefix, depth, out);
                }
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Assertion or snapshot failure.
    Fail,
    /// Build, backend or harness failure.
    Infra,
    Skip,
}

/// What a trial produced.
pub struct TrialResult {
    pub status: Status,
    /// Failure report (step table, mismatches, logs, reproduction) or skip reason.
    pub message: String,
    pub transcript: J,
    pub coverage: Coverage,
    pub elapsed: Duration,
}

/// Builds a canister variant.
pub type BuildFn = Arc<dyn Fn(&BuildSpec) -> Result<Arc<Artifact>, String> + Send + Sync>;
/// Opens a fresh IC: (backend, start time, seed).
pub type OpenFn =
    Arc<dyn Fn(BackendKind, u64, u64) -> Result<Box<dyn Ic>, Unavailable> + Send + Sync>;

/// Pluggable pieces (tests replace the builder and the backend).
#[derive(Clone)]
pub struct RunOptions {
    pub snapshot: bool,
    pub write_artifacts: bool,
    pub build: BuildFn,
    pub open: OpenFn,
}

impl RunOptions {
    pub fn standard(project: &Project) -> RunOptions {
        let ws = project.ws.clone();
        RunOptions {
            snapshot: true,
            write_artifacts: true,
            build: Arc::new(move |s| builds::build(&ws, s)),
            open: Arc::new(backend::open),
        }
    }
}

#[derive(Clone, Debug)]
struct Row {
    id: String,
    what: String,
    state: RowState,
    detail: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RowState {
    Ok,
    Failed,
    Relaxed,
}

struct Run<'a> {
    project: &'a Project,
    l: &'a Loaded,
    ic: Box<dyn Ic>,
    opts: &'a RunOptions,
    principals: BTreeMap<String, Principal>,
    names: BTreeMap<Principal, String>,
    captures: BTreeMap<String, Node>,
    submitted: BTreeMap<String, (u64, String, String)>,
    faults: BTreeMap<String, u64>,
    log_marks: BTreeMap<String, u64>,
    transcript: Vec<J>,
    rows: Vec<Row>,
    coverage: Coverage,
    builds: BTreeMap<String, BuildSpec>,
    wasms: BTreeMap<String, Arc<Artifact>>,
    /// `normalize:` options, with every wasm built so far.
    stable: Option<codec::Stable>,
}

struct RunResolve<'a> {
    principals: &'a BTreeMap<String, Principal>,
    wasms: &'a BTreeMap<String, Arc<Artifact>>,
    captures: &'a BTreeMap<String, Node>,
    vars: &'a BTreeMap<String, Node>,
    scope: &'a BTreeMap<String, Node>,
}

impl Resolve for RunResolve<'_> {
    fn principal(&self, name: &str) -> Option<Principal> {
        self.principals.get(name).copied()
    }
    fn var(&self, name: &str) -> Option<Node> {
        self.scope
            .get(name)
            .or_else(|| self.captures.get(name))
            .or_else(|| self.vars.get(name))
            .cloned()
    }
    fn names(&self) -> Vec<String> {
        self.captures
            .keys()
            .chain(self.vars.keys())
            .chain(self.scope.keys())
            .cloned()
            .collect()
    }
    fn wasm(&self, canister: &str) -> Option<Vec<u8>> {
        self.wasms.get(canister).map(|a| a.wasm.clone())
    }
    fn template(&self, name: &str) -> bool {
        self.scope.contains_key(name)
            || (!self.captures.contains_key(name) && self.vars.contains_key(name))
    }
}

type CanisterLogs = Vec<(String, Vec<LogLine>)>;

/// Which canister an install step acts on: a declared one, or (`at:`) a canister created at run time
/// that gets the declared one's build.
struct InstallTarget<'a> {
    name: &'a str,
    at: Option<Principal>,
    expect_reject: bool,
}

/// A failed step.
struct StepFail {
    span: Span,
    lines: Vec<String>,
    infra: bool,
}

impl StepFail {
    fn msg(span: Span, m: impl Into<String>) -> StepFail {
        StepFail {
            span,
            lines: vec![m.into()],
            infra: false,
        }
    }
    fn infra(span: Span, m: impl Into<String>) -> StepFail {
        StepFail {
            span,
            lines: vec![m.into()],
            infra: true,
        }
    }
    fn value(e: ValueError) -> StepFail {
        StepFail {
            span: e.span,
            lines: vec![e.message],
            infra: false,
        }
    }
}

impl Run<'_> {
    fn resolver<'b>(&'b self, scope: &'b BTreeMap<String, Node>) -> RunResolve<'b> {
        RunResolve {
            principals: &self.principals,
            wasms: &self.wasms,
            captures: &self.captures,
            vars: &self.l.vars,
            scope,
        }
    }

    fn norm(&self) -> Normalize<'_> {
        Normalize {
            names: &self.names,
            start_nanos: START_TIME_NANOS,
            stable: self.stable.as_ref(),
        }
    }

    fn now(&self) -> String {
        let t = self.ic.time_nanos() as i128 - START_TIME_NANOS as i128;
        if t >= 0 {
            format!("T+{}", codec::fmt_duration(t as u128))
        } else {
            format!("T-{}", codec::fmt_duration((-t) as u128))
        }
    }

    /// Replace principal texts by names in free text (reject messages, logs).
    fn names_in(&self, s: &str) -> String {
        let mut s = match &self.stable {
            Some(st) => st.text(s),
            None => s.to_string(),
        };
        for (p, n) in &self.names {
            let t = p.to_text();
            if s.contains(&t) {
                s = s.replace(&t, n);
            }
        }
        s
    }

    fn sender(&self, name: &str) -> Principal {
        self.principals
            .get(name)
            .copied()
            .or_else(|| Principal::from_text(name).ok())
            .unwrap_or_else(|| plan::identity_principal(name))
    }

    /// A canister reference (logical name, identity, principal or `${capture}`) at run time.
    fn principal_ref(
        &self,
        s: &Spanned<String>,
        scope: &BTreeMap<String, Node>,
    ) -> Result<Principal, StepFail> {
        match plan::principal_ref(self.l, s, &self.resolver(scope)).map_err(StepFail::value)? {
            Some(p) => Ok(p),
            None => Err(StepFail::msg(
                s.span,
                format!("`{}` does not name a principal", s.value),
            )),
        }
    }

    /// How a sender appears in the transcript: its name (a principal text is named when known).
    fn sender_obs(&self, sender: &str) -> String {
        if self.principals.contains_key(sender) {
            return sender.to_string();
        }
        match Principal::from_text(sender) {
            Ok(p) => self.norm().principal_name(&p),
            Err(_) => sender.to_string(),
        }
    }

    /// The target of a call step: `at:` when given.
    fn with_at(
        &self,
        mut p: plan::Prepared,
        st: &PStep,
        obs: &mut Map<String, J>,
    ) -> Result<plan::Prepared, StepFail> {
        if let Some(at) = &st.step.at {
            let id = self.principal_ref(at, &st.scope)?;
            obs.insert("at".into(), J::String(self.norm().principal_name(&id)));
            p.at = Some(id);
        }
        Ok(p)
    }

    fn canister_id(&self, name: &str) -> Result<Principal, StepFail> {
        self.principals.get(name).copied().ok_or_else(|| {
            StepFail::infra(
                Span::default(),
                format!("canister `{name}` was not created"),
            )
        })
    }

    fn build(&mut self, spec: &BuildSpec) -> Result<Arc<Artifact>, String> {
        let art = (self.opts.build)(&effective_spec(self.project, spec))?;
        if self
            .l
            .sc
            .normalize
            .iter()
            .any(|o| o.value == crate::model::NormalizeOpt::Wasm)
        {
            if let Some(st) = self.stable.as_mut() {
                st.add_wasm(&spec.key(), &art.wasm);
            }
        }
        Ok(art)
    }

    fn setup(&mut self) -> Result<(), String> {
        for id in &self.l.identities {
            let p = plan::identity_principal(id);
            self.principals.insert(id.clone(), p);
            self.names.insert(p, id.clone());
        }
        self.names
            .insert(Principal::management_canister(), "management".into());
        for c in &self.l.canisters {
            let art = self.build(&c.spec)?;
            let controllers: Vec<Principal> =
                c.controllers.iter().map(|n| self.sender(n)).collect();
            let id = self
                .ic
                .create_canister(&controllers, c.cycles)
                .map_err(|e| format!("creating canister `{}`: {e}", c.name))?;
            self.principals.insert(c.name.clone(), id);
            self.names.insert(id, c.name.clone());
            self.builds.insert(c.name.clone(), c.spec.clone());
            self.wasms.insert(c.name.clone(), art.clone());
            let empty = BTreeMap::new();
            let arg = plan::init_arg(c, &self.resolver(&empty))
                .map_err(|e| format!("init argument of `{}`: {}", c.name, e.message))?;
            let sender = controllers
                .first()
                .copied()
                .unwrap_or_else(Principal::anonymous);
            self.ic
                .install(sender, id, Install::Install, &art.wasm, &arg)
                .map_err(|e| format!("installing `{}` ({}): {e}", c.name, art.spec.key()))?;
            self.coverage
                .all_methods
                .entry(c.spec.krate.clone())
                .or_default()
                .extend(c.iface.methods());
            for m in c.iface.methods() {
                if let Some(rt) = c.iface.ret_type(&m) {
                    let mut cases = BTreeSet::new();
                    possible_cases(&rt, &c.iface, "", 0, &mut cases);
                    if !cases.is_empty() {
                        self.coverage
                            .all_cases
                            .entry(format!("{}.{m}", c.spec.krate))
                            .or_default()
                            .extend(cases);
                    }
                }
            }
        }
        self.ic
            .run_until_idle(100)
            .map_err(|e| format!("running init timers: {e}"))?;
        self.mark_logs();
        Ok(())
    }

    fn mark_logs(&mut self) {
        for c in &self.l.canisters {
            if let Some(p) = self.principals.get(&c.name).copied() {
                let last = self.ic.logs(p).last().map(|l| l.idx + 1).unwrap_or(0);
                self.log_marks.insert(c.name.clone(), last);
            }
        }
    }

    fn new_logs(&mut self) -> Vec<(String, Vec<LogLine>)> {
        let mut out = vec![];
        for c in &self.l.canisters {
            if let Some(p) = self.principals.get(&c.name).copied() {
                let from = self.log_marks.get(&c.name).copied().unwrap_or(0);
                let lines: Vec<LogLine> = self
                    .ic
                    .logs(p)
                    .into_iter()
                    .filter(|l| l.idx >= from)
                    .collect();
                if !lines.is_empty() {
                    out.push((c.name.clone(), lines));
                }
            }
        }
        out
    }

    fn note_reply(&mut self, canister: &str, method: &str, result: &Result<IDLValue, Reject>) {
        let krate = self
            .l
            .canister(canister)
            .map(|c| c.spec.krate.clone())
            .unwrap_or_default();
        *self
            .coverage
            .methods
            .entry(krate.clone())
            .or_default()
            .entry(method.to_string())
            .or_default() += 1;
        match result {
            Ok(v) => {
                let mut cases = BTreeSet::new();
                observed_cases(v, "", 0, &mut cases);
                if !cases.is_empty() {
                    self.coverage
                        .cases
                        .entry(format!("{krate}.{method}"))
                        .or_default()
                        .extend(cases);
                }
            }
            Err(r) => {
                *self
                    .coverage
                    .rejects
                    .entry(r.code_name().to_string())
                    .or_default() += 1
            }
        }
    }

    fn render_result(&self, obs: &mut Map<String, J>, result: &Result<IDLValue, Reject>) {
        match result {
            Ok(v) => {
                obs.insert("reply".into(), self.norm().render(v));
            }
            Err(r) => {
                obs.insert(
                    "reject".into(),
                    json!({ "code": r.code_name(), "message": self.names_in(&r.message) }),
                );
            }
        }
    }

    fn do_call(&mut self, p: &plan::Prepared) -> Result<IDLValue, Reject> {
        let canister =
            p.at.or_else(|| self.principals.get(&p.canister).copied())
                .unwrap_or_else(Principal::anonymous);
        let sender = self.sender(&p.sender);
        let raw = if p.query {
            self.ic.query(sender, canister, &p.method, &p.arg)
        } else {
            self.ic.update(sender, canister, &p.method, &p.arg)
        };
        self.decode(raw, p)
    }

    /// Fails the step if an execution of the called canister since `mark` used more than `bound`.
    fn check_instructions(
        &mut self,
        p: &plan::Prepared,
        mark: usize,
        bound: &Spanned<u64>,
    ) -> Result<(), StepFail> {
        let canister =
            p.at.or_else(|| self.principals.get(&p.canister).copied())
                .unwrap_or_else(Principal::anonymous);
        let used = self
            .ic
            .instructions_since(mark, canister)
            .map_err(|e| StepFail::msg(bound.span, e))?;
        match used.iter().max() {
            Some(&max) if max > bound.value => Err(StepFail::msg(
                bound.span,
                format!(
                    "an execution of {}.{} used {max} instructions, more than max_instructions {}",
                    p.canister, p.method, bound.value
                ),
            )),
            Some(_) => Ok(()),
            None => Err(StepFail::msg(
                bound.span,
                format!("{}.{} ran no execution to measure", p.canister, p.method),
            )),
        }
    }

    fn decode(&self, raw: Result<Vec<u8>, Reject>, p: &plan::Prepared) -> Result<IDLValue, Reject> {
        match raw {
            Ok(bytes) => codec::decode_reply(&bytes, &p.rets, &p.iface.env).map_err(|e| Reject {
                code: 0,
                message: format!("harness: {e}"),
                error_code: None,
            }),
            Err(r) => Err(r),
        }
    }

    fn args_obs(&self, p: &plan::Prepared) -> Option<J> {
        let f = p.iface.method(&p.method)?;
        if f.args.is_empty() {
            return None;
        }
        let vals = candid::IDLArgs::from_bytes_with_types(&p.arg, &p.iface.env, &f.args).ok()?;
        let n = self.norm();
        Some(if vals.args.len() == 1 {
            n.render(&vals.args[0])
        } else {
            J::Array(vals.args.iter().map(|v| n.render(v)).collect())
        })
    }

    fn expectations(
        &self,
        st: &PStep,
        p: &plan::Prepared,
        result: &Result<IDLValue, Reject>,
    ) -> Result<Vec<Mismatch>, StepFail> {
        if let Err(r) = result {
            if r.code == 0 {
                return Err(StepFail::infra(st.span, r.message.clone()));
            }
        }
        let r = self.resolver(&st.scope);
        let mm = plan::check_expect(
            &st.step,
            self.l.sc.strict,
            &p.iface,
            &p.rets,
            Some(result),
            &r,
            Some(&self.norm()),
        )
        .map_err(StepFail::value)?;
        Ok(mm
            .into_iter()
            .map(|mut m| {
                m.got = self.names_in(&m.got);
                m
            })
            .collect())
    }

    fn capture(
        &mut self,
        st: &PStep,
        p: &plan::Prepared,
        result: &Result<IDLValue, Reject>,
        obs: &mut Map<String, J>,
    ) -> Result<(), StepFail> {
        if st.step.capture.is_empty() {
            return Ok(());
        }
        let paths = plan::capture_paths(&st.step, &p.rets, &p.iface).map_err(StepFail::value)?;
        let v = match result {
            Ok(v) => v,
            Err(r) => {
                return Err(StepFail::msg(
                    st.span,
                    format!("cannot capture from a reject ({r})"),
                ))
            }
        };
        let mut caps = Map::new();
        for (name, segs, span) in paths {
            let name = codec::interpolate_str(&name, span, &self.resolver(&st.scope))
                .map_err(StepFail::value)?;
            let x = codec::value_at(v, &segs)
                .map_err(|e| StepFail::msg(span, format!("capture `{name}`: {e}")))?;
            caps.insert(name.clone(), self.norm().render(x));
            self.captures.insert(name, codec::value_to_node(x, span));
        }
        obs.insert("captured".into(), J::Object(caps));
        Ok(())
    }

    /// Run one step; its observation goes into the transcript.
    fn step(&mut self, st: &PStep, obs: &mut Map<String, J>) -> Result<Vec<Mismatch>, StepFail> {
        obs.insert("step".into(), J::String(st.id.clone()));
        let s = &st.step;
        let scope = st.scope.clone();
        macro_rules! r {
            () => {
                self.resolver(&scope)
            };
        }
        match st.action {
            "call" | "query" | "check" | "failpoint" => {
                let (target, force) = match st.action {
                    "call" => (s.call.clone().expect("call"), None),
                    "query" => (s.query.clone().expect("query"), Some(true)),
                    "check" => (s.check.clone().expect("check"), Some(true)),
                    _ => {
                        let c = s.failpoint.clone().expect("failpoint");
                        (
                            Spanned {
                                span: c.span,
                                value: format!("{}.failpoint_arm", c.value),
                            },
                            Some(false),
                        )
                    }
                };
                let p = plan::prepare_call(self.l, &target, force, s, &r!())
                    .map_err(StepFail::value)?;
                obs.insert(
                    st.action.into(),
                    J::String(format!("{}.{}", p.canister, p.method)),
                );
                obs.insert("as".into(), J::String(self.sender_obs(&p.sender)));
                let p = self.with_at(p, st, obs)?;
                if let Some(a) = self.args_obs(&p) {
                    obs.insert("args".into(), a);
                }
                let mark = self.ic.metrics_mark();
                let result = self.do_call(&p);
                if let Some(bound) = &s.max_instructions {
                    self.check_instructions(&p, mark, bound)?;
                }
                self.note_reply(&p.canister, &p.method, &result);
                self.render_result(obs, &result);
                let mm = self.expectations(st, &p, &result)?;
                if mm.is_empty() {
                    self.capture(st, &p, &result, obs)?;
                }
                Ok(mm)
            }
            "submit" => {
                let target = s.submit.clone().expect("submit");
                let p = plan::prepare_call(self.l, &target, Some(false), s, &r!())
                    .map_err(StepFail::value)?;
                obs.insert(
                    "submit".into(),
                    J::String(format!("{}.{}", p.canister, p.method)),
                );
                obs.insert("as".into(), J::String(self.sender_obs(&p.sender)));
                let p = self.with_at(p, st, obs)?;
                if let Some(a) = self.args_obs(&p) {
                    obs.insert("args".into(), a);
                }
                let canister = match p.at {
                    Some(id) => id,
                    None => self.canister_id(&p.canister)?,
                };
                let sender = self.sender(&p.sender);
                match self.ic.submit(sender, canister, &p.method, &p.arg) {
                    Ok(id) => {
                        self.submitted
                            .insert(st.id.clone(), (id, p.canister.clone(), p.method.clone()));
                        Ok(vec![])
                    }
                    Err(rej) => Err(StepFail::msg(
                        st.span,
                        format!("submit was rejected: {rej}"),
                    )),
                }
            }
            "await" => {
                let target = s.await_.clone().expect("await");
                let (id, canister, method) =
                    self.submitted.get(&target.value).cloned().ok_or_else(|| {
                        StepFail::msg(
                            target.span,
                            format!("call `{}` was not submitted", target.value),
                        )
                    })?;
                let cp = self.l.canister(&canister).expect("canister");
                let f = cp.iface.method(&method).expect("method").clone();
                let p = plan::Prepared {
                    canister: canister.clone(),
                    method: method.clone(),
                    query: false,
                    sender: String::new(),
                    arg: vec![],
                    iface: cp.iface.clone(),
                    rets: f.rets.clone(),
                    at: None,
                };
                obs.insert("await".into(), J::String(target.value.clone()));
                let raw = self.ic.await_call(id);
                let result = self.decode(raw, &p);
                self.note_reply(&canister, &method, &result);
                self.render_result(obs, &result);
                let mm = self.expectations(st, &p, &result)?;
                if mm.is_empty() {
                    self.capture(st, &p, &result, obs)?;
                }
                Ok(mm)
            }
            "tick" => {
                let n = s.tick.as_ref().map(|t| t.value).unwrap_or(1);
                for _ in 0..n {
                    self.ic.tick();
                }
                obs.insert("tick".into(), J::from(n));
                Ok(vec![])
            }
            "tick_until" => {
                let target = s.tick_until.clone().expect("tick_until");
                let p = plan::prepare_call(self.l, &target, Some(true), s, &r!())
                    .map_err(StepFail::value)?;
                let max = s.max_rounds.unwrap_or(100);
                let every = match &s.every {
                    Some(d) => {
                        let v = codec::interpolate_str(&d.value, d.span, &r!())
                            .map_err(StepFail::value)?;
                        Some(plan::parse_duration(&v).ok_or_else(|| {
                            StepFail::msg(d.span, format!("cannot read the duration `{v}`"))
                        })?)
                    }
                    None => None,
                };
                obs.insert(
                    "tick_until".into(),
                    J::String(format!("{}.{}", p.canister, p.method)),
                );
                obs.insert("as".into(), J::String(self.sender_obs(&p.sender)));
                let p = self.with_at(p, st, obs)?;
                let mut rounds = 0;
                loop {
                    let result = self.do_call(&p);
                    let mm = self.expectations(st, &p, &result)?;
                    if mm.is_empty() || rounds >= max {
                        self.note_reply(&p.canister, &p.method, &result);
                        self.render_result(obs, &result);
                        obs.insert("rounds".into(), J::from(rounds));
                        if every.is_some() {
                            obs.insert("time".into(), J::String(self.now()));
                        }
                        if mm.is_empty() {
                            self.capture(st, &p, &result, obs)?;
                        }
                        let mut mm = mm;
                        if !mm.is_empty() {
                            mm.push(Mismatch {
                                path: "$".into(),
                                expected: format!("the condition within {max} rounds"),
                                got: "still not met".into(),
                                span: st.span,
                            });
                        }
                        return Ok(mm);
                    }
                    match &every {
                        Some(d) => {
                            // one round after advancing time: due timers fire, calls progress one round
                            self.ic.advance_time(Duration::from_nanos(*d as u64));
                            self.ic.tick();
                        }
                        None => self.ic.tick(),
                    }
                    rounds += 1;
                }
            }
            "advance_time" | "set_time" => {
                if let Some(d) = &s.advance_time {
                    let nanos = plan::parse_duration(&d.value)
                        .ok_or_else(|| StepFail::msg(d.span, "bad duration"))?;
                    self.ic.advance_time(Duration::from_nanos(nanos as u64));
                    obs.insert("advance_time".into(), J::String(codec::fmt_duration(nanos)));
                } else if let Some(t) = &s.set_time {
                    let target = match plan::parse_set_time(&t.value) {
                        Some(plan::SetTime::Relative(d)) => START_TIME_NANOS + d as u64,
                        Some(plan::SetTime::Absolute(a)) => a,
                        None => return Err(StepFail::msg(t.span, "bad time")),
                    };
                    self.ic.set_time_nanos(target);
                    obs.insert("set_time".into(), J::String(t.value.clone()));
                }
                if s.idle.unwrap_or(true) {
                    // one round makes due timers fire, then their calls run to the end
                    self.ic.tick();
                    self.ic
                        .run_until_idle(s.max_rounds.unwrap_or(100))
                        .map_err(|e| StepFail::infra(st.span, e))?;
                }
                obs.insert("time".into(), J::String(self.now()));
                Ok(vec![])
            }
            "upgrade" | "reinstall" => {
                let c = s.upgrade.clone().or(s.reinstall.clone()).expect("target");
                let name =
                    codec::interpolate_str(&c.value, c.span, &r!()).map_err(StepFail::value)?;
                let mode = if st.action == "upgrade" {
                    Install::Upgrade {
                        skip_pre_upgrade: s.skip_pre_upgrade.unwrap_or(false),
                    }
                } else {
                    Install::Reinstall
                };
                obs.insert(st.action.into(), J::String(name.clone()));
                let at = match &s.at {
                    Some(a) => {
                        let id = self.principal_ref(a, &scope)?;
                        obs.insert("at".into(), J::String(self.norm().principal_name(&id)));
                        Some(id)
                    }
                    None => None,
                };
                let target = InstallTarget {
                    name: &name,
                    at,
                    expect_reject: s.reject.is_some(),
                };
                let refused = self.install(
                    target,
                    mode,
                    s.features.as_ref(),
                    s.args.as_ref().map(|a| a.0.clone()),
                    s.in_flight.unwrap_or(InFlight::StopFirst),
                    s.as_.as_ref(),
                    &scope,
                    c.span,
                    obs,
                )?;
                if s.reject.is_none() {
                    return Ok(vec![]);
                }
                // `reject:` — the upgrade must be refused (e.g. by the canister's pre_upgrade)
                let result: Result<IDLValue, Reject> = match refused {
                    Some(r) => {
                        obs.insert(
                            "reject".into(),
                            json!({ "code": r.code_name(), "message": self.names_in(&r.message) }),
                        );
                        Err(r)
                    }
                    None => Ok(IDLValue::Null),
                };
                let iface = plan::canisters_iface();
                let mut mm = plan::check_expect(
                    s,
                    self.l.sc.strict,
                    &iface,
                    &[],
                    Some(&result),
                    &r!(),
                    Some(&self.norm()),
                )
                .map_err(StepFail::value)?;
                for m in &mut mm {
                    if m.got.starts_with("a reply") {
                        m.got = format!("the {} succeeded", st.action);
                    }
                    m.got = self.names_in(&m.got);
                }
                Ok(mm)
            }
            "stop" | "start" => {
                let c = s.stop.clone().or(s.start.clone()).expect("target");
                let name =
                    codec::interpolate_str(&c.value, c.span, &r!()).map_err(StepFail::value)?;
                let id = self.canister_id(&name)?;
                let sender = self.controller_sender(&name, s.as_.as_ref(), &scope)?;
                let res = if st.action == "stop" {
                    self.ic.stop(sender, id)
                } else {
                    self.ic.start(sender, id)
                };
                obs.insert(st.action.into(), J::String(name));
                match res {
                    Ok(()) => Ok(vec![]),
                    Err(e) if s.reject.is_some() => {
                        obs.insert(
                            "reject".into(),
                            json!({ "code": e.code_name(), "message": self.names_in(&e.message) }),
                        );
                        Ok(vec![])
                    }
                    Err(e) => Err(StepFail::msg(st.span, format!("{} failed: {e}", st.action))),
                }
            }
            "canisters" => {
                let (st2, iface) =
                    plan::canisters_step(s).map_err(|m| StepFail::msg(st.span, m))?;
                let rets = plan::canisters_rets(&iface);
                let ids = self
                    .ic
                    .canister_ids()
                    .map_err(|e| StepFail::infra(st.span, e))?;
                let declared: BTreeSet<Principal> = self
                    .l
                    .canisters
                    .iter()
                    .filter_map(|c| self.principals.get(&c.name).copied())
                    .collect();
                let created: Vec<IDLValue> = ids
                    .iter()
                    .filter(|p| !declared.contains(p))
                    .map(|p| IDLValue::Principal(*p))
                    .collect();
                let value = IDLValue::Record(vec![
                    candid::types::value::IDLField {
                        id: candid::types::Label::Named("count".into()),
                        val: IDLValue::Nat64(ids.len() as u64),
                    },
                    candid::types::value::IDLField {
                        id: candid::types::Label::Named("canisters".into()),
                        val: IDLValue::Vec(ids.iter().map(|p| IDLValue::Principal(*p)).collect()),
                    },
                    candid::types::value::IDLField {
                        id: candid::types::Label::Named("created".into()),
                        val: IDLValue::Vec(created),
                    },
                ]);
                // field order as Candid sorts them (by label hash), so rendering matches a decoded reply
                let bytes = candid::IDLArgs::new(&[value])
                    .to_bytes_with_types(&iface.env, &rets)
                    .map_err(|e| StepFail::infra(st.span, e.to_string()))?;
                let p = plan::Prepared {
                    canister: "ic".into(),
                    method: "canisters".into(),
                    query: true,
                    sender: String::new(),
                    arg: vec![],
                    iface: iface.clone(),
                    rets,
                    at: None,
                };
                let result = self.decode(Ok(bytes), &p);
                obs.insert("canisters".into(), J::String("all".into()));
                self.render_result(obs, &result);
                let st2 = PStep {
                    step: st2,
                    ..st.clone()
                };
                let mm = self.expectations(&st2, &p, &result)?;
                if mm.is_empty() {
                    self.capture(&st2, &p, &result, obs)?;
                }
                Ok(mm)
            }
            "cycles" => {
                let c = s.cycles.clone().expect("cycles");
                let id = self.principal_ref(&c.canister, &scope)?;
                let amount = |n: &crate::yaml::RawNode| -> Result<u128, StepFail> {
                    let n = codec::interpolate(&n.0, &r!()).map_err(StepFail::value)?;
                    codec::parse_big(&n)
                        .and_then(|i| u128::try_from(i).ok())
                        .ok_or_else(|| {
                            StepFail::msg(n.span, "cycles must be a non-negative number")
                        })
                };
                let mut m = Map::new();
                m.insert(
                    "canister".into(),
                    J::String(self.norm().principal_name(&id)),
                );
                match (&c.set, &c.add) {
                    (Some(n), _) => {
                        let v = amount(n)?;
                        self.ic
                            .set_cycles(id, v)
                            .map_err(|e| StepFail::infra(st.span, e))?;
                        m.insert("set".into(), J::String(codec::bucket_cycles(v as i128)));
                    }
                    (None, Some(n)) => {
                        let v = amount(n)?;
                        self.ic
                            .add_cycles(id, v)
                            .map_err(|e| StepFail::infra(st.span, e))?;
                        m.insert("add".into(), J::String(codec::bucket_cycles(v as i128)));
                    }
                    (None, None) => {
                        return Err(StepFail::msg(st.span, "`cycles` needs `set` or `add`"))
                    }
                }
                obs.insert("cycles".into(), J::Object(m));
                Ok(vec![])
            }
            "fault" => {
                let f = s.fault.clone().expect("fault");
                let id = self.add_fault(&f, st.span, &scope)?;
                self.faults.insert(st.id.clone(), id);
                let mut fo = fault_obs(&f);
                // `${…}` targets, callers and methods appear resolved
                for (key, v) in [("target", Some(&f.target)), ("caller", f.caller.as_ref())] {
                    if let Some(v) = v.filter(|v| v.value.contains("${")) {
                        if let Ok(p) = self.principal_ref(v, &scope) {
                            fo[key] = J::String(self.norm().principal_name(&p));
                        }
                    }
                }
                if let Some(m) = f.method.as_ref().filter(|m| m.contains("${")) {
                    if let Ok(m) = codec::interpolate_str(m, st.span, &self.resolver(&scope)) {
                        fo["method"] = J::String(m);
                    }
                }
                obs.insert("fault".into(), fo);
                Ok(vec![])
            }
            "clear_fault" => {
                let t = s.clear_fault.clone().expect("clear_fault");
                if let Some(id) = self.faults.get(&t.value) {
                    self.ic.remove_fault(*id);
                }
                obs.insert("clear_fault".into(), J::String(t.value.clone()));
                Ok(vec![])
            }
            "release" => {
                let t = s.release.clone().expect("release");
                let n = self
                    .faults
                    .get(&t.value)
                    .map(|id| self.ic.release_held(*id))
                    .unwrap_or(0);
                obs.insert("release".into(), J::String(t.value.clone()));
                obs.insert("released".into(), J::from(n));
                Ok(vec![])
            }
            other => Err(StepFail::infra(
                st.span,
                format!("unexpected action `{other}`"),
            )),
        }
    }

    fn controller_sender(
        &self,
        canister: &str,
        as_: Option<&Spanned<String>>,
        scope: &BTreeMap<String, Node>,
    ) -> Result<Principal, StepFail> {
        match as_ {
            Some(a) => {
                let n = plan::sender_name(self.l, Some(a), &self.resolver(scope))
                    .map_err(StepFail::value)?;
                Ok(self.sender(&n))
            }
            None => {
                let c = self
                    .l
                    .canister(canister)
                    .ok_or_else(|| StepFail::infra(Span::default(), "no such canister"))?;
                Ok(self.sender(
                    c.controllers
                        .first()
                        .map(String::as_str)
                        .unwrap_or(plan::CONTROLLER),
                ))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Install (upgrade, reinstall) a canister. With `target.expect_reject`, a refused install is
    /// returned rather than failing the step.
    fn install(
        &mut self,
        target: InstallTarget<'_>,
        mode: Install,
        features: Option<&Vec<Spanned<String>>>,
        args: Option<Node>,
        in_flight: InFlight,
        as_: Option<&Spanned<String>>,
        scope: &BTreeMap<String, Node>,
        span: Span,
        obs: &mut Map<String, J>,
    ) -> Result<Option<Reject>, StepFail> {
        let name = target.name;
        let cp = self
            .l
            .canister(name)
            .ok_or_else(|| StepFail::msg(span, format!("no canister `{name}`")))?
            .clone();
        let mut spec = self
            .builds
            .get(name)
            .cloned()
            .unwrap_or_else(|| cp.spec.clone());
        if let Some(fs) = features {
            spec.features = fs.iter().map(|f| f.value.clone()).collect();
        }
        let art = self.build(&spec).map_err(|e| StepFail::infra(span, e))?;
        let arg = plan::upgrade_arg(&cp, args.as_ref(), &self.resolver(scope))
            .map_err(StepFail::value)?;
        let id = match target.at {
            Some(id) => id,
            None => self.canister_id(name)?,
        };
        let sender = self.controller_sender(name, as_, scope)?;
        if spec != cp.spec {
            obs.insert("build".into(), J::String(spec.key()));
        }
        let stop_first = in_flight == InFlight::StopFirst;
        if stop_first {
            self.ic.stop(sender, id).map_err(|e| {
                StepFail::msg(span, format!("stopping `{name}` before the upgrade: {e}"))
            })?;
        }
        let res = self.ic.install(sender, id, mode, &art.wasm, &arg);
        if stop_first {
            self.ic.start(sender, id).map_err(|e| {
                StepFail::msg(span, format!("starting `{name}` after the upgrade: {e}"))
            })?;
        }
        if let Err(e) = res {
            if target.expect_reject {
                self.ic
                    .run_until_idle(100)
                    .map_err(|e| StepFail::infra(span, e))?;
                return Ok(Some(e));
            }
            return Err(StepFail::msg(
                span,
                format!("{:?} of `{name}` failed: {e}", mode),
            ));
        }
        if target.at.is_none() {
            self.builds.insert(name.to_string(), spec);
            self.wasms.insert(name.to_string(), art);
        }
        self.ic
            .run_until_idle(100)
            .map_err(|e| StepFail::infra(span, e))?;
        Ok(None)
    }

    fn add_fault(
        &mut self,
        f: &FaultSpec,
        span: Span,
        scope: &BTreeMap<String, Node>,
    ) -> Result<u64, StepFail> {
        let target = if f.target.value == "management" {
            None
        } else {
            Some(self.principal_ref(&f.target, scope)?)
        };
        let caller = match &f.caller {
            Some(c) => Some(self.principal_ref(c, scope)?),
            None => None,
        };
        let method = match &f.method {
            Some(m) => Some(
                codec::interpolate_str(m, span, &self.resolver(scope)).map_err(StepFail::value)?,
            ),
            None => None,
        };
        let action = match &f.action {
            FaultActionSpec::Reject { code, message } => FaultAction::Reject {
                code: backend::code_of(*code),
                message: message.clone(),
            },
            FaultActionSpec::Trap(m) => FaultAction::Trap(m.clone()),
            FaultActionSpec::Hold => FaultAction::Hold,
            FaultActionSpec::DelayRounds(n) => FaultAction::DelayRounds(*n),
            FaultActionSpec::Timeout => FaultAction::Timeout,
            FaultActionSpec::LoseReply => FaultAction::LoseReply,
            FaultActionSpec::Reply(h) => {
                let h = codec::interpolate_str(h, span, &self.resolver(scope))
                    .map_err(StepFail::value)?;
                let digits = h.trim_start_matches("0x").replace('_', "");
                FaultAction::Reply(hex::decode(&digits).map_err(|e| {
                    StepFail::msg(span, format!("fault reply: `{h}` is not hex bytes: {e}"))
                })?)
            }
        };
        self.ic
            .add_fault(FaultRule {
                target,
                caller,
                method,
                nth: f.nth,
                times: f.times,
                action,
            })
            .map_err(|e| StepFail::infra(span, e))
    }

    fn invariants(&mut self, after: &str) -> Result<(), StepFail> {
        for inv in self.l.invariants.clone() {
            let mut obs = Map::new();
            let mm = self.step(&inv, &mut obs)?;
            if !mm.is_empty() {
                let mut lines = vec![format!(
                    "invariant `{}` does not hold after step `{after}`",
                    inv.id
                )];
                lines.extend(mm.iter().map(|m| m.to_string()));
                return Err(StepFail {
                    span: inv.span,
                    lines,
                    infra: false,
                });
            }
        }
        Ok(())
    }
}

fn fault_obs(f: &FaultSpec) -> J {
    let action = match &f.action {
        FaultActionSpec::Reject { code, message } => {
            json!({ "reject": { "code": format!("{code:?}"), "message": message } })
        }
        FaultActionSpec::Trap(m) => json!({ "trap": m }),
        FaultActionSpec::Hold => json!("hold"),
        FaultActionSpec::DelayRounds(n) => json!({ "delay_rounds": n }),
        FaultActionSpec::Timeout => json!("timeout"),
        FaultActionSpec::LoseReply => json!("lose_reply"),
        FaultActionSpec::Reply(h) => json!({ "reply": h }),
    };
    let mut m = Map::new();
    m.insert("target".into(), J::String(f.target.value.clone()));
    if let Some(c) = &f.caller {
        m.insert("caller".into(), J::String(c.value.clone()));
    }
    if let Some(x) = &f.method {
        m.insert("method".into(), J::String(x.clone()));
    }
    if let Some(x) = f.nth {
        m.insert("nth".into(), J::from(x));
    }
    if let Some(x) = f.times {
        m.insert("times".into(), J::from(x));
    }
    m.insert("action".into(), action);
    J::Object(m)
}

fn seed_of(t: &Trial) -> u64 {
    if let Some(s) = t.scenario.sc.seed {
        return s;
    }
    if let Some(s) = std::env::var("SCENARIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}::{}", t.scenario.id, t.variant_name).as_bytes());
    u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// Run a trial (without the skip check; see [`skip_reason`]).
pub fn run_trial(project: &Project, t: &Trial, opts: &RunOptions) -> TrialResult {
    let started = Instant::now();
    let l = &*t.scenario;
    let ic = match (opts.open)(t.backend, START_TIME_NANOS, seed_of(t)) {
        Ok(ic) => ic,
        Err(Unavailable(why)) => {
            return TrialResult {
                status: Status::Skip,
                message: why,
                transcript: J::Null,
                coverage: Coverage::default(),
                elapsed: started.elapsed(),
            }
        }
    };
    let mut run = Run {
        project,
        l,
        ic,
        opts,
        principals: BTreeMap::new(),
        names: BTreeMap::new(),
        captures: BTreeMap::new(),
        submitted: BTreeMap::new(),
        faults: BTreeMap::new(),
        log_marks: BTreeMap::new(),
        transcript: vec![],
        rows: vec![],
        coverage: Coverage::default(),
        builds: BTreeMap::new(),
        wasms: BTreeMap::new(),
        stable: if l.sc.normalize.is_empty() {
            None
        } else {
            Some(codec::Stable {
                wasms: vec![],
                balances: l
                    .sc
                    .normalize
                    .iter()
                    .any(|o| o.value == crate::model::NormalizeOpt::Balances),
                text_numbers: l
                    .sc
                    .normalize
                    .iter()
                    .any(|o| o.value == crate::model::NormalizeOpt::TextNumbers),
            })
        },
    };
    let trace = std::env::var("SCENARIO_TRACE")
        .map(|v| v == "1")
        .unwrap_or(false);
    let setup_started = Instant::now();
    let setup = run.setup();
    if trace {
        eprintln!(
            "  [{:>8.1} ms] setup (build, create, install)",
            setup_started.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Err(e) = setup {
        let msg = format!(
            "{}: setup failed: {e}\n  reproduce: {}\n",
            t.name,
            t.repro()
        );
        return TrialResult {
            status: Status::Infra,
            message: msg,
            transcript: J::Null,
            coverage: run.coverage,
            elapsed: started.elapsed(),
        };
    }

    let (fault_v, relax_after) = match &t.variant {
        VariantSel::Fault { idx, stage } => {
            let fv = &l.sc.variants.fault_at_each_stage[*idx];
            (
                Some((fv, stage.clone())),
                fv.then.unwrap_or(FaultThen::Relaxed) == FaultThen::Relaxed,
            )
        }
        _ => (None, false),
    };
    let upgrade_v = match &t.variant {
        VariantSel::Upgrade { idx, stage } => {
            Some((&l.sc.variants.upgrade_at_each_stage[*idx], stage.clone()))
        }
        _ => None,
    };

    let mut failure: Option<(String, StepFail, CanisterLogs)> = None;
    let mut relaxed = false;
    let mut steps: Vec<PStep> = match &t.variant {
        VariantSel::Case { idx } => l.cases[*idx].steps.clone(),
        _ => l.steps.clone(),
    };
    let on_fault_start = steps.len();
    if fault_v.is_some() {
        steps.extend(l.on_fault.iter().cloned());
    }
    let mut i = 0;
    while i < steps.len() {
        let st = steps[i].clone();
        let in_on_fault = i >= on_fault_start;
        // variant injection before the stage step
        if !in_on_fault {
            if let Some((fv, stage)) = &fault_v {
                if &st.id == stage {
                    let mut obs = Map::new();
                    obs.insert("inject".into(), J::String(t.variant_name.clone()));
                    let res = match (&fv.fault, &fv.failpoint) {
                        (Some(f), _) => {
                            run.add_fault(f, fv.name.span, &BTreeMap::new()).map(|_| {
                                obs.insert("fault".into(), fault_obs(f));
                            })
                        }
                        (None, Some(c)) => {
                            let ps = PStep {
                                id: format!("inject.{}", fv.name.value),
                                span: c.span,
                                step: crate::model::Step {
                                    failpoint: Some(c.clone()),
                                    as_: fv.as_.clone(),
                                    args: fv.args.clone(),
                                    ..Default::default()
                                },
                                action: "failpoint",
                                scope: Arc::new(BTreeMap::new()),
                                lint: true,
                            };
                            run.step(&ps, &mut obs).and_then(|mm| {
                                if mm.is_empty() {
                                    Ok(())
                                } else {
                                    Err(StepFail {
                                        span: c.span,
                                        lines: mm.iter().map(|m| m.to_string()).collect(),
                                        infra: false,
                                    })
                                }
                            })
                        }
                        _ => Ok(()),
                    };
                    run.transcript.push(J::Object(obs));
                    run.rows.push(Row {
                        id: "inject".into(),
                        what: t.variant_name.clone(),
                        state: if res.is_ok() {
                            RowState::Ok
                        } else {
                            RowState::Failed
                        },
                        detail: vec![],
                    });
                    if let Err(e) = res {
                        let logs = run.new_logs();
                        failure = Some(("inject".into(), e, logs));
                        break;
                    }
                    relaxed = relax_after;
                }
            }
            if let Some((uv, stage)) = &upgrade_v {
                if &st.id == stage {
                    let mut obs = Map::new();
                    obs.insert("inject".into(), J::String(t.variant_name.clone()));
                    let empty = BTreeMap::new();
                    let res = run.install(
                        InstallTarget {
                            name: &uv.canister.value,
                            at: None,
                            expect_reject: false,
                        },
                        Install::Upgrade {
                            skip_pre_upgrade: uv.skip_pre_upgrade.unwrap_or(false),
                        },
                        uv.features.as_ref(),
                        uv.args.as_ref().map(|a| a.0.clone()),
                        uv.in_flight.unwrap_or(InFlight::StopFirst),
                        None,
                        &empty,
                        uv.canister.span,
                        &mut obs,
                    );
                    run.transcript.push(J::Object(obs));
                    run.rows.push(Row {
                        id: "inject".into(),
                        what: t.variant_name.clone(),
                        state: if res.is_ok() {
                            RowState::Ok
                        } else {
                            RowState::Failed
                        },
                        detail: vec![],
                    });
                    if let Err(e) = res {
                        let logs = run.new_logs();
                        failure = Some(("inject".into(), e, logs));
                        break;
                    }
                    if let Err(e) = run.invariants("inject") {
                        let logs = run.new_logs();
                        failure = Some(("inject".into(), e, logs));
                        break;
                    }
                }
            }
        }
        let mut obs = Map::new();
        let step_started = Instant::now();
        let res = run.step(&st, &mut obs);
        let what = match obs.get(st.action).and_then(|v| v.as_str()) {
            Some(t) => match &st.step.as_ {
                Some(_) => format!(
                    "{} {t} as {}",
                    st.action,
                    obs.get("as").and_then(|v| v.as_str()).unwrap_or("?")
                ),
                None => format!("{} {t}", st.action),
            },
            None => describe(&st),
        };
        if trace {
            eprintln!(
                "  [{:>8.1} ms] {} {}",
                step_started.elapsed().as_secs_f64() * 1e3,
                st.id,
                what
            );
        }
        let enforce = !relaxed || in_on_fault;
        match res {
            Ok(mm) if mm.is_empty() => {
                run.rows.push(Row {
                    id: st.id.clone(),
                    what,
                    state: RowState::Ok,
                    detail: vec![],
                });
            }
            Ok(mm) if !enforce => {
                obs.insert(
                    "relaxed".into(),
                    J::Array(mm.iter().map(|m| J::String(m.to_string())).collect()),
                );
                run.rows.push(Row {
                    id: st.id.clone(),
                    what,
                    state: RowState::Relaxed,
                    detail: mm.iter().map(|m| m.to_string()).collect(),
                });
            }
            Ok(mm) => {
                run.rows.push(Row {
                    id: st.id.clone(),
                    what,
                    state: RowState::Failed,
                    detail: mm.iter().map(|m| m.to_string()).collect(),
                });
                if st.step.snapshot.unwrap_or(true) {
                    run.transcript.push(J::Object(obs));
                }
                let logs = run.new_logs();
                let span = mm
                    .first()
                    .map(|m| m.span)
                    .filter(|s| *s != Span::default())
                    .unwrap_or(st.span);
                failure = Some((
                    st.id.clone(),
                    StepFail {
                        span,
                        lines: mm.iter().map(|m| m.to_string()).collect(),
                        infra: false,
                    },
                    logs,
                ));
                break;
            }
            Err(e) if !enforce && !e.infra => {
                obs.insert(
                    "relaxed".into(),
                    J::Array(e.lines.iter().map(|m| J::String(m.clone())).collect()),
                );
                run.rows.push(Row {
                    id: st.id.clone(),
                    what,
                    state: RowState::Relaxed,
                    detail: e.lines.clone(),
                });
            }
            Err(e) => {
                run.rows.push(Row {
                    id: st.id.clone(),
                    what,
                    state: RowState::Failed,
                    detail: e.lines.clone(),
                });
                if st.step.snapshot.unwrap_or(true) {
                    run.transcript.push(J::Object(obs));
                }
                let logs = run.new_logs();
                failure = Some((st.id.clone(), e, logs));
                break;
            }
        }
        if st.step.snapshot.unwrap_or(true) {
            run.transcript.push(J::Object(obs));
        }
        if let Err(e) = run.invariants(&st.id) {
            if let Some(r) = run.rows.last_mut() {
                r.state = RowState::Failed;
                r.detail.extend(e.lines.clone());
            }
            let logs = run.new_logs();
            failure = Some((st.id.clone(), e, logs));
            break;
        }
        run.mark_logs();
        i += 1;
    }

    // final observations
    let mut fin = Map::new();
    let mut cycles = Map::new();
    for c in &l.canisters {
        if let Ok(id) = run.canister_id(&c.name) {
            if let Ok(b) = run.ic.cycle_balance(id) {
                cycles.insert(c.name.clone(), J::String(codec::bucket_cycles(b as i128)));
            }
        }
    }
    fin.insert("cycles".into(), J::Object(cycles));
    fin.insert("time".into(), J::String(run.now()));
    let transcript = json!({
        "scenario": l.id,
        "variant": t.variant_name,
        "steps": run.transcript,
        "final": fin,
    });

    // coverage cells
    let cell = |kind: &str, name: &str, stage: &str| {
        (
            l.id.clone(),
            kind.to_string(),
            name.to_string(),
            stage.to_string(),
        )
    };
    let ok = failure.is_none();
    match &t.variant {
        VariantSel::Fault { idx, stage } => {
            run.coverage.cells.insert(
                cell(
                    "fault",
                    &l.sc.variants.fault_at_each_stage[*idx].name.value,
                    stage,
                ),
                ok,
            );
        }
        VariantSel::Upgrade { idx, stage } => {
            run.coverage.cells.insert(
                cell(
                    "upgrade",
                    &l.sc.variants.upgrade_at_each_stage[*idx].canister.value,
                    stage,
                ),
                ok,
            );
        }
        VariantSel::Case { idx } => {
            if let Some((kind, name, stage)) = &l.cases[*idx].cell {
                let e = run
                    .coverage
                    .matrix
                    .entry((kind.clone(), name.clone(), stage.clone()))
                    .or_default();
                match &l.cases[*idx].known_bug {
                    // reproduced: shown as a known bug; no longer reproduced: the trial fails below
                    Some(k)
                        if failure
                            .as_ref()
                            .is_some_and(|(at, f, _)| !f.infra && *at == k.at.value) =>
                    {
                        e.known_bugs.push(t.name.clone());
                    }
                    Some(_) => e.trials.push((t.name.clone(), false)),
                    None => {
                        run.coverage.cells.insert(cell(kind, name, stage), ok);
                        e.trials.push((t.name.clone(), ok));
                    }
                }
            }
        }
        VariantSel::Base => {}
    }

    let elapsed = started.elapsed();
    let coverage = run.coverage.clone();
    if let Some(bug) = t.known_bug() {
        let expected_at = match &t.variant {
            VariantSel::Case { idx } => l.cases[*idx]
                .known_bug
                .as_ref()
                .map(|k| k.at.value.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        return match failure {
            Some((at, fail, logs)) if !fail.infra && at == expected_at => {
                let report = render_failure(&run, t, &at, &fail, &logs, &steps);
                if opts.write_artifacts {
                    write_artifacts(t, &transcript, Some(&report));
                }
                let message = format!("known bug, still reproduces at step `{at}`: {bug}");
                TrialResult {
                    status: Status::Pass,
                    message,
                    transcript,
                    coverage,
                    elapsed,
                }
            }
            Some((at, fail, logs)) => {
                let report = render_failure(&run, t, &at, &fail, &logs, &steps);
                let status = if fail.infra {
                    Status::Infra
                } else {
                    Status::Fail
                };
                let message = format!("(a known bug is expected at step `{expected_at}`, this failed at `{at}`)\n{report}");
                TrialResult {
                    status,
                    message,
                    transcript,
                    coverage,
                    elapsed,
                }
            }
            None => {
                let message = format!(
                    "{}: the known bug no longer reproduces ({bug}); make this case a normal one (remove `known_bug`) and accept its snapshot\n  reproduce: {}",
                    t.name,
                    t.repro()
                );
                TrialResult {
                    status: Status::Fail,
                    message,
                    transcript,
                    coverage,
                    elapsed,
                }
            }
        };
    }
    match failure {
        None => {
            if opts.write_artifacts {
                write_artifacts(t, &transcript, None);
            }
            TrialResult {
                status: Status::Pass,
                message: String::new(),
                transcript,
                coverage,
                elapsed,
            }
        }
        Some((at, fail, logs)) => {
            let report = render_failure(&run, t, &at, &fail, &logs, &steps);
            if opts.write_artifacts {
                write_artifacts(t, &transcript, Some(&report));
            }
            let status = if fail.infra {
                Status::Infra
            } else {
                Status::Fail
            };
            TrialResult {
                status,
                message: report,
                transcript,
                coverage,
                elapsed,
            }
        }
    }
}

fn describe(st: &PStep) -> String {
    let s = &st.step;
    let target = [
        &s.call,
        &s.query,
        &s.submit,
        &s.await_,
        &s.check,
        &s.tick_until,
        &s.advance_time,
        &s.set_time,
        &s.upgrade,
        &s.reinstall,
        &s.stop,
        &s.start,
        &s.clear_fault,
        &s.release,
        &s.failpoint,
        &s.at,
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|x| x.value.clone())
    .or_else(|| s.tick.as_ref().map(|t| t.value.to_string()))
    .or_else(|| s.fault.as_ref().map(|f| f.target.value.clone()))
    .or_else(|| s.cycles.as_ref().map(|c| c.canister.value.clone()))
    .or_else(|| s.repeat.as_ref().map(|n| format!("{}×", n.value)))
    .unwrap_or_default();
    let mut d = format!("{} {}", st.action, target);
    if let Some(a) = &s.as_ {
        d.push_str(&format!(" as {}", a.value));
    }
    d
}

fn render_failure(
    run: &Run,
    t: &Trial,
    at: &str,
    fail: &StepFail,
    logs: &[(String, Vec<LogLine>)],
    steps: &[PStep],
) -> String {
    let l = run.l;
    let mut s = String::new();
    let loc = format!(
        "{}:{}:{}",
        crate::paths::display(&l.file),
        fail.span.line,
        fail.span.col
    );
    s.push_str(&format!(
        "{} {} at step `{at}` ({loc})\n\n",
        t.name,
        if fail.infra {
            "hit an infrastructure error"
        } else {
            "failed"
        }
    ));
    let width = run
        .rows
        .iter()
        .map(|r| r.id.len())
        .chain(steps.iter().map(|s| s.id.len()))
        .max()
        .unwrap_or(4)
        .max(4);
    for r in &run.rows {
        let mark = match r.state {
            RowState::Ok => "✓",
            RowState::Failed => "✗",
            RowState::Relaxed => "~",
        };
        s.push_str(&format!("  {mark} {:width$}  {}\n", r.id, r.what));
        for d in &r.detail {
            s.push_str(&format!("        {d}\n"));
        }
    }
    let ran: BTreeSet<&str> = run.rows.iter().map(|r| r.id.as_str()).collect();
    for st in steps {
        if !ran.contains(st.id.as_str()) {
            s.push_str(&format!(
                "  · {:width$}  {} (not run)\n",
                st.id,
                describe(st)
            ));
        }
    }
    if !fail.lines.is_empty() && !run.rows.iter().any(|r| r.state == RowState::Failed) {
        for line in &fail.lines {
            s.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(line) = l.source.lines().nth(fail.span.line.saturating_sub(1)) {
        if fail.span.line > 0 {
            s.push_str(&format!("\n  {} | {}\n", fail.span.line, line));
            let pad: String = line
                .chars()
                .take(fail.span.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            s.push_str(&format!(
                "  {:w$} | {}^\n",
                "",
                pad,
                w = fail.span.line.to_string().len()
            ));
        }
    }
    if logs.is_empty() {
        s.push_str("\n  canister logs since the previous step: (none)\n");
    } else {
        s.push_str("\n  canister logs since the previous step:\n");
        for (c, lines) in logs {
            for line in lines.iter().rev().take(40).rev() {
                let rel = line.time_nanos as i128 - START_TIME_NANOS as i128;
                s.push_str(&format!(
                    "    {c} [T+{}] {}\n",
                    codec::fmt_duration(rel.max(0) as u128),
                    run.names_in(&line.text)
                ));
            }
        }
    }
    s.push_str(&format!("\n  reproduce: {}\n", t.repro()));
    s.push_str(&format!(
        "  artifacts: {}\n",
        crate::paths::display(&t.artifact_dir())
    ));
    s
}

fn write_artifacts(t: &Trial, transcript: &J, report: Option<&str>) {
    let dir = t.artifact_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let _ = std::fs::write(
        dir.join("transcript.json"),
        serde_json::to_string_pretty(transcript).unwrap_or_default(),
    );
    match report {
        Some(r) => {
            let _ = std::fs::write(dir.join("failure.txt"), r);
        }
        None => {
            let _ = std::fs::remove_file(dir.join("failure.txt"));
        }
    }
}

/// Compare the transcript with its insta snapshot (`harness/tests/snapshots/<name>.snap`).
/// Returns the failure message when it differs (or is new, under `CI=true`).
pub fn snapshot(t: &Trial, transcript: &J) -> Result<(), String> {
    let name = t.snapshot_name();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(crate::paths::snapshots_dir());
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(&t.scenario.file);
    settings.set_description(format!("{} ({})", t.scenario.id, t.variant_name));
    let transcript = Ordered(transcript.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| {
            insta::assert_yaml_snapshot!(name.as_str(), transcript);
        })
    }));
    result.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        format!(
            "transcript snapshot `{name}` does not match ({msg}).\n  review with `cargo insta review`, or rerun with --update\n  reproduce: {}",
            t.repro()
        )
    })
}

/// A transcript serialized with the keys of each step in reading order (step id, action, caller,
/// arguments, outcome) rather than alphabetically.
pub struct Ordered(pub J);

const KEY_ORDER: &[&str] = &[
    "scenario",
    "variant",
    "step",
    "inject",
    "call",
    "query",
    "check",
    "submit",
    "await",
    "tick",
    "tick_until",
    "advance_time",
    "set_time",
    "upgrade",
    "reinstall",
    "stop",
    "start",
    "fault",
    "clear_fault",
    "release",
    "failpoint",
    "canisters",
    "build",
    "as",
    "at",
    "args",
    "reply",
    "reject",
    "rounds",
    "released",
    "captured",
    "relaxed",
    "time",
    "steps",
    "final",
];

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match &self.0 {
            J::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by_key(|k| {
                    (
                        KEY_ORDER.iter().position(|x| x == k).unwrap_or(usize::MAX),
                        k.to_string(),
                    )
                });
                let mut map = ser.serialize_map(Some(keys.len()))?;
                for k in keys {
                    // only the transcript's own levels are reordered; values keep sorted keys
                    if matches!(k.as_str(), "steps" | "final") {
                        map.serialize_entry(k, &Ordered(m[k].clone()))?;
                    } else {
                        map.serialize_entry(k, &m[k])?;
                    }
                }
                map.end()
            }
            J::Array(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&Ordered(i.clone()))?;
                }
                seq.end()
            }
            other => other.serialize(ser),
        }
    }
}
