//! Loading a scenario: parse, check everything against the workspace and the `.did` files, expand
//! includes and variants. Every problem becomes a [`Diagnostic`] with `file:line:col`, before anything
//! runs. The same helpers prepare calls at run time, so lint and run cannot disagree.

use crate::builds::{BuildSpec, Workspace};
use crate::codec::{self, Interface, Resolve, ValueError};
use crate::diag::{Diagnostic, ErrorKind};
use crate::model::*;
use crate::yaml::{self, Kind, Node, Span, Spanned};
use candid::types::Type;
use candid::Principal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// Built-in identities.
pub const ANONYMOUS: &str = "anonymous";
pub const CONTROLLER: &str = "controller";

/// The principal of a named identity: self-authenticating, derived from the name.
pub fn identity_principal(name: &str) -> Principal {
    if name == ANONYMOUS {
        return Principal::anonymous();
    }
    use sha2::{Digest, Sha256};
    let key = Sha256::digest(format!("harness-identity:{name}").as_bytes());
    Principal::self_authenticating(key)
}

/// Where scenarios get their crates and `.did` files from.
#[derive(Clone, Debug)]
pub struct Project {
    pub ws: Workspace,
}

impl Project {
    pub fn load() -> Result<Project, String> {
        Ok(Project {
            ws: Workspace::load(&crate::paths::root())?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct CanisterPlan {
    pub name: String,
    pub span: Span,
    pub spec: BuildSpec,
    pub did: PathBuf,
    pub iface: Rc<Interface>,
    pub init: Option<Node>,
    pub init_candid: Option<Spanned<String>>,
    pub cycles: u128,
    pub controllers: Vec<String>,
}

/// A step after include expansion.
#[derive(Clone, Debug)]
pub struct PStep {
    pub id: String,
    pub span: Span,
    pub step: Step,
    pub action: &'static str,
    /// Include parameters (and `repeat` variables) in scope.
    pub scope: Arc<BTreeMap<String, Node>>,
    /// Whether lint dry-runs this step (false for the middle iterations of a long `repeat`).
    pub lint: bool,
}

/// A loaded, linted scenario.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: PathBuf,
    /// `dir/file` under `scenarios/`.
    pub id: String,
    pub source: String,
    pub sc: Scenario,
    pub canisters: Vec<CanisterPlan>,
    pub identities: BTreeSet<String>,
    pub vars: BTreeMap<String, Node>,
    pub steps: Vec<PStep>,
    pub on_fault: Vec<PStep>,
    pub invariants: Vec<PStep>,
    /// Ids of the stage steps, in order.
    pub stages: Vec<String>,
    /// The steps of each `variants.cases` entry (expanded with the case's vars), in order.
    pub cases: Vec<LoadedCase>,
}

/// One case of `variants.cases`, expanded.
#[derive(Clone, Debug)]
pub struct LoadedCase {
    pub name: String,
    pub steps: Vec<PStep>,
    /// `(kind, name, stage)` of its coverage cell: kind `fault` or `upgrade`.
    pub cell: Option<(String, String, String)>,
    /// `known_bug:` the trial is expected to fail (see [`crate::model::CaseVariant::known_bug`]).
    pub known_bug: Option<crate::model::KnownBug>,
}

impl Loaded {
    /// Every step of every trial (base steps, on_fault, invariants, cases).
    pub fn all_steps(&self) -> impl Iterator<Item = &PStep> {
        self.steps
            .iter()
            .chain(&self.on_fault)
            .chain(&self.invariants)
            .chain(self.cases.iter().flat_map(|c| c.steps.iter()))
    }
}

impl Loaded {
    pub fn canister(&self, name: &str) -> Option<&CanisterPlan> {
        self.canisters.iter().find(|c| c.name == name)
    }
    pub fn names(&self) -> Vec<String> {
        self.identities
            .iter()
            .cloned()
            .chain(self.canisters.iter().map(|c| c.name.clone()))
            .collect()
    }
}

const ACTIONS: &[&str] = &[
    "call",
    "query",
    "submit",
    "await",
    "check",
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
    "include",
    "repeat",
    "canisters",
    "cycles",
];

/// Iterations a `repeat` may have.
pub const MAX_REPEAT: u32 = 100_000;
/// Above this many iterations, lint dry-runs only the first and the last iteration of a `repeat`.
pub const LINT_ALL_ITERATIONS: u32 = 100;

/// Which action keys a step has.
pub fn actions_of(s: &Step) -> Vec<&'static str> {
    let present = [
        s.call.is_some(),
        s.query.is_some(),
        s.submit.is_some(),
        s.await_.is_some(),
        s.check.is_some(),
        s.tick.is_some(),
        s.tick_until.is_some(),
        s.advance_time.is_some(),
        s.set_time.is_some(),
        s.upgrade.is_some(),
        s.reinstall.is_some(),
        s.stop.is_some(),
        s.start.is_some(),
        s.fault.is_some(),
        s.clear_fault.is_some(),
        s.release.is_some(),
        s.failpoint.is_some(),
        s.include.is_some(),
        s.repeat.is_some(),
        s.canisters.is_some(),
        s.cycles.is_some(),
    ];
    ACTIONS
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(a, _)| *a)
        .collect()
}

/// `90s`, `10m`, `1h30m`, `2d`, `500ms`, `250us`, `7ns`, or a number of nanoseconds.
pub fn parse_duration(s: &str) -> Option<u128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(n) = codec::parse_big_str(s) {
        return u128::try_from(n).ok();
    }
    let mut total: u128 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' || c == '_' {
            if c != '_' {
                num.push(c);
            }
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let mult: f64 = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return None,
        };
        let v: f64 = num.parse().ok()?;
        total += (v * mult).round() as u128;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total)
}

fn vdiag(file: &Path, e: ValueError) -> Diagnostic {
    let kind = match e.kind {
        "undefined-capture" => ErrorKind::UndefinedCapture,
        "matcher" => ErrorKind::Matcher,
        "unknown-canister" => ErrorKind::UnknownCanister,
        "unknown-identity" => ErrorKind::UnknownIdentity,
        "unknown-method" => ErrorKind::UnknownMethod,
        "capture-path" => ErrorKind::CapturePath,
        "step-id" => ErrorKind::StepId,
        "duration" => ErrorKind::Duration,
        "failpoint" => ErrorKind::Failpoint,
        _ => ErrorKind::Type,
    };
    Diagnostic::new(kind, file, Some(e.span), e.message)
}

fn verr(kind: &'static str, span: Span, message: impl Into<String>) -> ValueError {
    ValueError {
        span,
        message: message.into(),
        kind,
    }
}

/// Load and lint one scenario file.
pub fn load(project: &Project, file: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            return Err(vec![Diagnostic::new(
                ErrorKind::Yaml,
                file,
                None,
                format!("cannot read: {e}"),
            )])
        }
    };
    load_text(project, file, &source)
}

/// Lint from text (the file name is used for messages and the scenario id).
pub fn load_text(project: &Project, file: &Path, source: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let with_src = |ds: Vec<Diagnostic>| {
        ds.into_iter()
            .map(|d| d.with_source(source))
            .collect::<Vec<_>>()
    };
    let root = match yaml::parse(source) {
        Ok(n) => n,
        Err(e) => {
            return Err(with_src(vec![Diagnostic::new(
                ErrorKind::from_yaml(e.kind),
                file,
                e.span,
                e.message,
            )]))
        }
    };
    // the version first, so that a file of another version gets one clear message
    match root.get("schema") {
        None if matches!(root.kind, Kind::Map(_)) => {
            return Err(with_src(vec![Diagnostic::new(
                ErrorKind::Schema,
                file,
                Some(root.span),
                format!("missing `schema: {SCHEMA_VERSION}` (the format version)"),
            )]))
        }
        Some(v) if v.kind != Kind::Int(SCHEMA_VERSION as i128) => {
            return Err(with_src(vec![Diagnostic::new(
                ErrorKind::Schema,
                file,
                Some(v.span),
                format!(
                    "unsupported schema version {}; this harness reads schema {SCHEMA_VERSION}",
                    v.brief()
                ),
            )]))
        }
        _ => {}
    }
    let sc: Scenario = match yaml::from_node(&root) {
        Ok(s) => s,
        Err(e) => {
            return Err(with_src(vec![Diagnostic::new(
                ErrorKind::from_yaml(e.kind),
                file,
                e.span,
                e.message,
            )]))
        }
    };
    let mut l = Linter {
        project,
        file,
        diags: vec![],
    };
    let loaded = l.check(sc, source);
    if l.diags.is_empty() {
        Ok(loaded)
    } else {
        l.diags.sort_by_key(|d| d.span);
        // the same problem in every iteration of a `repeat` (or every use of an include): once
        let mut seen = BTreeSet::new();
        l.diags.retain(|d| seen.insert((d.span, d.message.clone())));
        Err(with_src(l.diags))
    }
}

struct Linter<'a> {
    project: &'a Project,
    file: &'a Path,
    diags: Vec<Diagnostic>,
}

/// Lint-time resolution: names are known, captures are not.
pub struct LintResolve<'a> {
    pub names: &'a BTreeSet<String>,
    pub canisters: &'a BTreeSet<String>,
    pub vars: &'a BTreeMap<String, Node>,
    pub scope: &'a BTreeMap<String, Node>,
}

impl Resolve for LintResolve<'_> {
    fn principal(&self, name: &str) -> Option<Principal> {
        self.names.contains(name).then(|| identity_principal(name))
    }
    fn var(&self, name: &str) -> Option<Node> {
        self.scope
            .get(name)
            .or_else(|| self.vars.get(name))
            .cloned()
    }
    fn lenient(&self) -> bool {
        true
    }
    fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }
    fn wasm(&self, canister: &str) -> Option<Vec<u8>> {
        self.canisters
            .contains(canister)
            .then(|| b"\0asm\x01\0\0\0".to_vec())
    }
    fn template(&self, name: &str) -> bool {
        self.scope.contains_key(name) || self.vars.contains_key(name)
    }
}

/// The canister and method of `canister.method`.
pub fn split_target(
    l: &Loaded,
    target: &Spanned<String>,
    r: &dyn Resolve,
) -> Result<(String, String), ValueError> {
    let t = codec::interpolate_str(&target.value, target.span, r)?;
    let (c, m) = t.split_once('.').ok_or_else(|| {
        verr(
            "unknown-method",
            target.span,
            format!("expected `canister.method`, found `{t}`"),
        )
    })?;
    let can = l.canister(c).ok_or_else(|| {
        verr(
            "unknown-canister",
            target.span,
            format!(
                "no canister `{c}` in this scenario{}",
                crate::diag::did_you_mean(c, l.canisters.iter().map(|c| c.name.as_str()))
            ),
        )
    })?;
    if can.iface.method(m).is_none() {
        let methods = can.iface.methods();
        return Err(verr(
            "unknown-method",
            target.span,
            format!(
                "`{}` has no method `{m}` in {}{}",
                c,
                crate::paths::display(&can.did),
                crate::diag::did_you_mean(m, methods.iter().map(String::as_str))
            ),
        ));
    }
    Ok((c.to_string(), m.to_string()))
}

/// The identity a step calls as.
pub fn sender_name(
    l: &Loaded,
    as_: Option<&Spanned<String>>,
    r: &dyn Resolve,
) -> Result<String, ValueError> {
    match as_ {
        None => Ok(CONTROLLER.to_string()),
        Some(a) => {
            let name = codec::interpolate_str(&a.value, a.span, r)?;
            if l.identities.contains(&name)
                || l.canister(&name).is_some()
                || Principal::from_text(&name).is_ok()
            {
                Ok(name)
            } else if r.lenient() && name.contains("${") {
                Ok(CONTROLLER.to_string())
            } else {
                Err(verr(
                    "unknown-identity",
                    a.span,
                    format!(
                        "no identity `{name}` (declare it under `identities:`){}",
                        crate::diag::did_you_mean(&name, l.identities.iter().map(String::as_str))
                    ),
                ))
            }
        }
    }
}

/// A canister reference: a canister's logical name, an identity, or a principal (usually a
/// `${capture}`); checked at lint time (captures are unknown then), resolved at run time.
pub fn principal_ref(
    l: &Loaded,
    s: &Spanned<String>,
    r: &dyn Resolve,
) -> Result<Option<Principal>, ValueError> {
    let name = codec::interpolate_str(&s.value, s.span, r)?;
    if l.canister(&name).is_some() || l.identities.contains(&name) {
        return Ok(r
            .principal(&name)
            .or_else(|| Some(identity_principal(&name))));
    }
    if let Ok(p) = Principal::from_text(&name) {
        return Ok(Some(p));
    }
    if r.lenient() && s.value.contains("${") {
        return Ok(None);
    }
    Err(verr(
        "unknown-canister",
        s.span,
        format!(
            "`{name}` is neither a canister, an identity nor a principal{}",
            crate::diag::did_you_mean(&name, l.canisters.iter().map(|c| c.name.as_str()))
        ),
    ))
}

/// The Candid interface of the `canisters` step's reply.
pub const CANISTERS_DID: &str = "service : { canisters : () -> (record { count : nat64; canisters : vec principal; created : vec principal }) query }";

/// The interface of the `canisters` step (parsed once per thread).
pub fn canisters_iface() -> Rc<Interface> {
    thread_local! {
        static IFACE: Rc<Interface> = Rc::new(Interface::from_text(CANISTERS_DID).expect("canisters interface"));
    }
    IFACE.with(|i| i.clone())
}

pub fn canisters_rets(iface: &Interface) -> Vec<Type> {
    iface
        .method("canisters")
        .map(|f| f.rets.clone())
        .unwrap_or_default()
}

/// A `canisters` step as a plain step (`expect`/`capture` inside the spec or beside it).
pub fn canisters_step(st: &Step) -> Result<(Step, Rc<Interface>), String> {
    let spec = st.canisters.clone().unwrap_or_default();
    if spec.expect.is_some() && st.expect.is_some() {
        return Err("give `expect` inside `canisters:` or beside it, not both".into());
    }
    if !spec.capture.is_empty() && !st.capture.is_empty() {
        return Err("give `capture` inside `canisters:` or beside it, not both".into());
    }
    let mut out = st.clone();
    if spec.expect.is_some() {
        out.expect = spec.expect;
    }
    if !spec.capture.is_empty() {
        out.capture = spec.capture;
    }
    Ok((out, canisters_iface()))
}

/// A call ready to send.
pub struct Prepared {
    pub canister: String,
    pub method: String,
    pub query: bool,
    pub sender: String,
    pub arg: Vec<u8>,
    pub iface: Rc<Interface>,
    pub rets: Vec<Type>,
    /// `at:` — send to this principal instead of the named canister (resolved by the runner).
    pub at: Option<Principal>,
}

/// Prepare the call of a step (`call`, `query`, `submit`, `check`, `tick_until`, `failpoint`).
pub fn prepare_call(
    l: &Loaded,
    target: &Spanned<String>,
    force_query: Option<bool>,
    step: &Step,
    r: &dyn Resolve,
) -> Result<Prepared, ValueError> {
    let (canister, method) = split_target(l, target, r)?;
    let can = l.canister(&canister).expect("checked by split_target");
    let f = can
        .iface
        .method(&method)
        .expect("checked by split_target")
        .clone();
    let sender = sender_name(l, step.as_.as_ref(), r)?;
    let arg = match (&step.args, &step.args_candid) {
        (Some(_), Some(c)) => {
            return Err(verr(
                "type",
                c.span,
                "give `args` or `args_candid`, not both",
            ))
        }
        (_, Some(c)) => codec::encode_candid_args(&c.value, c.span, &f.args, &can.iface.env)?,
        (a, None) => {
            let node = match a {
                Some(n) => Some(codec::interpolate(&n.0, r)?),
                None => None,
            };
            codec::encode_args(node.as_ref(), &f.args, &can.iface.env, r).map_err(|mut e| {
                if e.span == Span::default() {
                    e.span = target.span;
                }
                e
            })?
        }
    };
    let query = force_query.unwrap_or_else(|| f.is_query());
    Ok(Prepared {
        canister,
        method,
        query,
        sender,
        arg,
        iface: can.iface.clone(),
        rets: f.rets.clone(),
        at: None,
    })
}

/// Check a step's expectations against a result (or, with `result == None`, only their types).
pub fn check_expect(
    step: &Step,
    strict_default: bool,
    iface: &Interface,
    rets: &[Type],
    result: Option<&Result<candid::types::value::IDLValue, crate::backend::Reject>>,
    r: &dyn Resolve,
    norm: Option<&codec::Normalize>,
) -> Result<Vec<codec::Mismatch>, ValueError> {
    use candid::types::value::IDLValue;
    let strict = step.strict.unwrap_or(strict_default);
    let m = codec::Matcher {
        env: &iface.env,
        resolve: r,
        strict,
        norm,
    };
    let ret = codec::tuple_type(rets);
    let mut out = vec![];
    let expect = match &step.expect {
        Some(e) => Some(codec::interpolate(&e.0, r)?),
        None => None,
    };
    if let Some(rej) = &step.reject {
        if expect.is_some() {
            return Err(verr(
                "type",
                step.expect.as_ref().map(|e| e.0.span).unwrap_or_default(),
                "a step expects either a reply (`expect`) or a reject (`reject`), not both",
            ));
        }
        let text: Type = candid::types::TypeInner::Text.into();
        let msg_pat = match &rej.message {
            Some(n) => {
                let n = codec::interpolate(&n.0, r)?;
                // a plain string means "contains"
                Some(match &n.kind {
                    Kind::Str(s) => Node {
                        span: n.span,
                        kind: Kind::Map(vec![(
                            Node {
                                span: n.span,
                                kind: Kind::Str("contains".into()),
                            },
                            Node {
                                span: n.span,
                                kind: Kind::Str(s.clone()),
                            },
                        )]),
                    },
                    _ => n,
                })
            }
            None => None,
        };
        match result {
            None => {
                if let Some(p) = &msg_pat {
                    m.check(p, &text, None, &mut vec![], &mut vec![])?;
                }
            }
            Some(Ok(v)) => out.push(codec::Mismatch {
                path: "$".into(),
                expected: format!(
                    "a reject{}",
                    rej.code
                        .as_ref()
                        .map(|c| format!(" {:?}", c.value))
                        .unwrap_or_default()
                ),
                got: format!(
                    "a reply {}",
                    norm.map(|n| codec::compact(&n.render(v)))
                        .unwrap_or_else(|| v.to_string())
                ),
                span: rej.code.as_ref().map(|c| c.span).unwrap_or_default(),
            }),
            Some(Err(reject)) => {
                if let Some(c) = &rej.code {
                    if crate::backend::code_of(c.value) != reject.code {
                        out.push(codec::Mismatch {
                            path: "$.reject.code".into(),
                            expected: format!("{:?}", c.value),
                            got: format!("{} ({})", reject.code_name(), reject.message),
                            span: c.span,
                        });
                    }
                }
                if let Some(p) = &msg_pat {
                    let mut path = vec![
                        codec::Seg::Field("reject".into()),
                        codec::Seg::Field("message".into()),
                    ];
                    m.check(
                        p,
                        &text,
                        Some(&IDLValue::Text(reject.message.clone())),
                        &mut path,
                        &mut out,
                    )?;
                }
            }
        }
        return Ok(out);
    }
    match result {
        None => {
            if let Some(p) = &expect {
                m.check(p, &ret, None, &mut vec![], &mut vec![])?;
            }
        }
        Some(Err(reject)) => out.push(codec::Mismatch {
            path: "$".into(),
            expected: "a reply".into(),
            got: format!("reject {}: {}", reject.code_name(), reject.message),
            span: expect.as_ref().map(|e| e.span).unwrap_or_default(),
        }),
        Some(Ok(v)) => {
            if let Some(p) = &expect {
                m.check(p, &ret, Some(v), &mut vec![], &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Check the capture paths of a step against the reply type; returns (name, path).
pub fn capture_paths(
    step: &Step,
    rets: &[Type],
    iface: &Interface,
) -> Result<Vec<(String, Vec<codec::Seg>, Span)>, ValueError> {
    let ret = codec::tuple_type(rets);
    let mut out = vec![];
    for (name, path) in step.capture.iter() {
        let segs =
            codec::parse_path(&path.value).map_err(|e| verr("capture-path", path.span, e))?;
        codec::type_at(&ret, &segs, &iface.env).map_err(|e| {
            verr(
                "capture-path",
                path.span,
                format!("capture `{}`: {e}", name.value),
            )
        })?;
        out.push((name.value.clone(), segs, path.span));
    }
    Ok(out)
}

fn collect_refs(n: &Node, out: &mut Vec<(String, Span)>) {
    match &n.kind {
        Kind::Str(s) => {
            for r in codec::var_refs(s) {
                out.push((r.to_string(), n.span));
            }
        }
        Kind::Seq(v) => v.iter().for_each(|c| collect_refs(c, out)),
        Kind::Map(m) => m.iter().for_each(|(_, v)| collect_refs(v, out)),
        _ => {}
    }
}

fn step_refs(s: &Step) -> Vec<(String, Span)> {
    let mut out = vec![];
    let sp = |x: &Option<Spanned<String>>, out: &mut Vec<(String, Span)>| {
        if let Some(x) = x {
            for r in codec::var_refs(&x.value) {
                out.push((r.to_string(), x.span));
            }
        }
    };
    for t in [
        &s.call,
        &s.query,
        &s.submit,
        &s.check,
        &s.tick_until,
        &s.failpoint,
        &s.as_,
        &s.at,
        &s.upgrade,
        &s.reinstall,
        &s.stop,
        &s.start,
    ] {
        sp(t, &mut out);
    }
    if let Some(f) = &s.fault {
        sp(&Some(f.target.clone()), &mut out);
        sp(&f.caller, &mut out);
    }
    if let Some(c) = &s.cycles {
        sp(&Some(c.canister.clone()), &mut out);
        for n in [&c.set, &c.add].into_iter().flatten() {
            collect_refs(&n.0, &mut out);
        }
    }
    if let Some(c) = &s.canisters {
        if let Some(e) = &c.expect {
            collect_refs(&e.0, &mut out);
        }
    }
    for n in [&s.args, &s.expect].into_iter().flatten() {
        collect_refs(&n.0, &mut out);
    }
    if let Some(r) = &s.reject {
        if let Some(m) = &r.message {
            collect_refs(&m.0, &mut out);
        }
    }
    for (_, n) in s.with.iter() {
        collect_refs(&n.0, &mut out);
    }
    out
}

impl Linter<'_> {
    fn push(&mut self, kind: ErrorKind, span: Span, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(kind, self.file, Some(span), msg));
    }

    fn check(&mut self, sc: Scenario, source: &str) -> Loaded {
        let file = self.file.to_path_buf();
        // identities
        let mut identities: BTreeSet<String> =
            [ANONYMOUS.to_string(), CONTROLLER.to_string()].into();
        for i in &sc.identities {
            if !identities.insert(i.value.clone()) && i.value != ANONYMOUS && i.value != CONTROLLER
            {
                self.push(
                    ErrorKind::DuplicateKey,
                    i.span,
                    format!("identity `{}` declared twice", i.value),
                );
            }
        }
        // vars
        let vars: BTreeMap<String, Node> = sc
            .vars
            .iter()
            .map(|(k, v)| (k.value.clone(), v.0.clone()))
            .collect();
        // canisters
        let mut canisters = vec![];
        for (name, c) in sc.canisters.iter() {
            if identities.contains(&name.value) {
                self.push(
                    ErrorKind::DuplicateKey,
                    name.span,
                    format!("`{}` is both an identity and a canister", name.value),
                );
            }
            if let Some(cp) = self.canister(name, c) {
                canisters.push(cp);
            }
        }
        let mut loaded = Loaded {
            file: file.clone(),
            id: crate::paths::scenario_id(&file),
            source: source.to_string(),
            sc: sc.clone(),
            canisters,
            identities,
            vars,
            steps: vec![],
            on_fault: vec![],
            invariants: vec![],
            stages: vec![],
            cases: vec![],
        };
        // init args (need the canister list for principals)
        let names: BTreeSet<String> = loaded.names().into_iter().collect();
        let can_names: BTreeSet<String> = loaded.canisters.iter().map(|c| c.name.clone()).collect();
        let empty = BTreeMap::new();
        for cp in &loaded.canisters {
            let r = LintResolve {
                names: &names,
                canisters: &can_names,
                vars: &loaded.vars,
                scope: &empty,
            };
            if let Err(e) = init_arg(cp, &r) {
                self.diags.push(vdiag(self.file, e));
            }
            for ctl in &cp.controllers {
                if !loaded.identities.contains(ctl) && loaded.canister(ctl).is_none() {
                    let span = sc
                        .canisters
                        .get(&cp.name)
                        .and_then(|c| c.controllers.as_ref())
                        .and_then(|cs| cs.iter().find(|x| &x.value == ctl))
                        .map(|x| x.span)
                        .unwrap_or(cp.span);
                    self.push(
                        ErrorKind::UnknownIdentity,
                        span,
                        format!("controller `{ctl}` is not a declared identity or canister"),
                    );
                }
            }
        }
        // requires.features must exist in some crate of the scenario
        for f in &sc.requires.features {
            let name = f.value.trim_start_matches('!');
            let known = loaded.canisters.iter().any(|c| {
                self.project
                    .ws
                    .crates
                    .get(&c.spec.krate)
                    .map(|k| k.features.contains(name))
                    .unwrap_or(false)
            });
            if !known {
                let all: Vec<&str> = loaded
                    .canisters
                    .iter()
                    .filter_map(|c| self.project.ws.crates.get(&c.spec.krate))
                    .flat_map(|k| k.features.iter().map(String::as_str))
                    .collect();
                self.push(
                    ErrorKind::UnknownFeature,
                    f.span,
                    format!(
                        "no canister crate of this scenario has a feature `{name}`{}",
                        crate::diag::did_you_mean(name, all)
                    ),
                );
            }
        }
        // steps
        let root_scope = Arc::new(BTreeMap::new());
        let with_cases = !sc.variants.cases.is_empty();
        let lint_base = !with_cases || sc.variants.base == Some(true);
        if with_cases
            && (!sc.variants.fault_at_each_stage.is_empty()
                || !sc.variants.upgrade_at_each_stage.is_empty())
        {
            self.push(ErrorKind::Variant, sc.variants.cases[0].name.span, "`cases` do not combine with `fault_at_each_stage`/`upgrade_at_each_stage`; use one or the other");
        }
        loaded.steps = if lint_base {
            self.expand(&sc, &sc.steps, "", &root_scope, 0)
        } else {
            vec![]
        };
        loaded.on_fault = self.expand(&sc, &sc.on_fault, "on_fault.", &root_scope, 0);
        loaded.invariants = self.expand(&sc, &sc.invariants, "invariant.", &root_scope, 0);
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for s in loaded
            .steps
            .iter()
            .chain(&loaded.on_fault)
            .chain(&loaded.invariants)
        {
            if let Some(prev) = seen.insert(s.id.clone(), s.span) {
                self.push(
                    ErrorKind::StepId,
                    s.span,
                    format!("step id `{}` is already used at line {}", s.id, prev.line),
                );
            }
        }
        for s in &loaded.invariants {
            if !matches!(s.action, "check" | "query" | "call") {
                self.push(
                    ErrorKind::StepAction,
                    s.span,
                    format!(
                        "an invariant is a `check` (a query with expectations), not `{}`",
                        s.action
                    ),
                );
            }
        }
        loaded.stages = loaded
            .steps
            .iter()
            .filter(|s| s.step.stage)
            .map(|s| s.id.clone())
            .collect();
        // dry run of every step
        let mut defined: BTreeSet<String> = loaded.vars.keys().cloned().collect();
        let mut submits: BTreeMap<String, (String, String)> = BTreeMap::new();
        let steps = loaded.steps.clone();
        for s in &steps {
            self.dry(&loaded, s, &mut defined, &mut submits, &names);
        }
        let mut d2 = defined.clone();
        for s in loaded
            .on_fault
            .clone()
            .iter()
            .chain(loaded.invariants.clone().iter())
        {
            self.dry(&loaded, s, &mut d2, &mut submits, &names);
        }
        // cases: the steps once per case, with the case's vars in scope
        let mut case_names = BTreeSet::new();
        for case in &sc.variants.cases {
            if !case_names.insert(case.name.value.clone()) {
                self.push(
                    ErrorKind::Variant,
                    case.name.span,
                    format!("case `{}` is listed twice", case.name.value),
                );
            }
            let mut scope = BTreeMap::new();
            for (k, v) in case.vars.iter() {
                scope.insert(k.value.clone(), v.0.clone());
            }
            let scope = Arc::new(scope);
            let steps = self.expand(&sc, &sc.steps, "", &scope, 0);
            let mut seen: BTreeMap<String, Span> = BTreeMap::new();
            for s in steps.iter().chain(&loaded.invariants) {
                if let Some(prev) = seen.insert(s.id.clone(), s.span) {
                    self.push(
                        ErrorKind::StepId,
                        s.span,
                        format!(
                            "step id `{}` is already used at line {} (case `{}`)",
                            s.id, prev.line, case.name.value
                        ),
                    );
                }
            }
            let mut defined: BTreeSet<String> = loaded.vars.keys().cloned().collect();
            let mut submits = BTreeMap::new();
            let before = loaded.steps.clone();
            // `clear_fault`/`release` look for fault steps among `loaded.steps`
            loaded.steps = steps.clone();
            for s in &steps {
                self.dry(&loaded, s, &mut defined, &mut submits, &names);
            }
            loaded.steps = before;
            let cell = case
                .cell
                .as_ref()
                .and_then(|c| match (&c.fault, &c.upgrade) {
                    (Some(f), None) => {
                        Some(("fault".to_string(), f.value.clone(), c.stage.value.clone()))
                    }
                    (None, Some(u)) => Some((
                        "upgrade".to_string(),
                        u.value.clone(),
                        c.stage.value.clone(),
                    )),
                    _ => {
                        self.push(
                            ErrorKind::Variant,
                            c.stage.span,
                            "a `cell` names a `stage` and exactly one of `fault` or `upgrade`",
                        );
                        None
                    }
                });
            if let Some(k) = &case.known_bug {
                if !steps.iter().any(|s| s.id == k.at.value) {
                    self.push(
                        ErrorKind::StepId,
                        k.at.span,
                        format!(
                            "known_bug.at: case `{}` has no step `{}`",
                            case.name.value, k.at.value
                        ),
                    );
                }
            }
            loaded.cases.push(LoadedCase {
                name: case.name.value.clone(),
                steps,
                cell,
                known_bug: case.known_bug.clone(),
            });
        }
        // variants
        let v = &sc.variants;
        if (!v.fault_at_each_stage.is_empty() || !v.upgrade_at_each_stage.is_empty())
            && loaded.stages.is_empty()
        {
            let span = v
                .fault_at_each_stage
                .first()
                .map(|f| f.name.span)
                .or(v.upgrade_at_each_stage.first().map(|u| u.canister.span))
                .unwrap_or_default();
            self.push(
                ErrorKind::Variant,
                span,
                "variants at each stage need steps marked `stage: true`",
            );
        }
        for fv in &v.fault_at_each_stage {
            match (&fv.fault, &fv.failpoint) {
                (Some(f), None) => self.fault_spec(&loaded, f),
                (None, Some(c)) => {
                    let st = Step {
                        failpoint: Some(c.clone()),
                        as_: fv.as_.clone(),
                        args: fv.args.clone(),
                        ..Default::default()
                    };
                    let ps = PStep {
                        id: format!("variant.{}", fv.name.value),
                        span: c.span,
                        step: st,
                        action: "failpoint",
                        scope: root_scope.clone(),
                        lint: true,
                    };
                    let mut d = defined.clone();
                    self.dry(&loaded, &ps, &mut d, &mut submits, &names);
                }
                _ => self.push(
                    ErrorKind::Variant,
                    fv.name.span,
                    format!(
                        "fault variant `{}` needs exactly one of `fault` or `failpoint`",
                        fv.name.value
                    ),
                ),
            }
        }
        let stage_filters = v
            .fault_at_each_stage
            .iter()
            .filter_map(|f| f.stages.as_ref())
            .chain(
                v.upgrade_at_each_stage
                    .iter()
                    .filter_map(|u| u.stages.as_ref()),
            );
        for filter in stage_filters {
            for f in filter {
                if !loaded.stages.iter().any(|s| {
                    *s == f.value || (f.value.ends_with('.') && s.starts_with(f.value.as_str()))
                }) {
                    self.push(
                        ErrorKind::Variant,
                        f.span,
                        format!(
                            "`{}` selects no stage (stages: {}){}",
                            f.value,
                            loaded.stages.join(", "),
                            crate::diag::did_you_mean(
                                &f.value,
                                loaded.stages.iter().map(String::as_str)
                            )
                        ),
                    );
                }
            }
        }
        for uv in &v.upgrade_at_each_stage {
            match loaded.canister(&uv.canister.value) {
                None => self.push(
                    ErrorKind::UnknownCanister,
                    uv.canister.span,
                    format!(
                        "no canister `{}`{}",
                        uv.canister.value,
                        crate::diag::did_you_mean(
                            &uv.canister.value,
                            loaded.canisters.iter().map(|c| c.name.as_str())
                        )
                    ),
                ),
                Some(c) => {
                    if let Some(fs) = &uv.features {
                        self.features(&c.spec.krate, fs);
                    }
                }
            }
        }
        loaded
    }

    fn features(&mut self, krate: &str, fs: &[Spanned<String>]) {
        let Some(info) = self.project.ws.crates.get(krate) else {
            return;
        };
        for f in fs {
            if !info.features.contains(&f.value) {
                self.push(
                    ErrorKind::UnknownFeature,
                    f.span,
                    format!(
                        "crate `{krate}` has no feature `{}` (features: {}){}",
                        f.value,
                        if info.features.is_empty() {
                            "none".to_string()
                        } else {
                            info.features.iter().cloned().collect::<Vec<_>>().join(", ")
                        },
                        crate::diag::did_you_mean(
                            &f.value,
                            info.features.iter().map(String::as_str)
                        )
                    ),
                );
            }
        }
    }

    fn canister(&mut self, name: &Spanned<String>, c: &CanisterDecl) -> Option<CanisterPlan> {
        let ws = &self.project.ws;
        let krate = &c.krate.value;
        if !ws.crates.contains_key(krate) {
            let names: Vec<&str> = ws.crates.keys().map(String::as_str).collect();
            self.push(
                ErrorKind::Build,
                c.krate.span,
                format!(
                    "`{krate}` is not a crate of the workspace{}",
                    crate::diag::did_you_mean(krate, names)
                ),
            );
            return None;
        }
        self.features(krate, &c.features);
        let spec = BuildSpec {
            krate: krate.clone(),
            features: c.features.iter().map(|f| f.value.clone()).collect(),
            default_features: c.default_features.unwrap_or(true),
        };
        let did_span = c.did.as_ref().map(|d| d.span).unwrap_or(c.krate.span);
        if c.did.as_ref().map(|d| d.value == "wasm").unwrap_or(false) {
            // the interface of this very build, read from its wasm (builds it now if needed)
            let iface = crate::builds::build(ws, &spec)
                .and_then(|a| crate::builds::candid_of(&a).map(|t| (a, t)))
                .and_then(|(a, text)| Interface::from_text(&text).map(|i| (a, i)));
            return match iface {
                Ok((art, iface)) => {
                    Some(self.plan(name, c, spec, art.path.clone(), Rc::new(iface)))
                }
                Err(e) => {
                    self.push(
                        ErrorKind::Build,
                        did_span,
                        format!(
                            "cannot read the Candid interface from the wasm of {}: {e}",
                            spec.key()
                        ),
                    );
                    None
                }
            };
        }
        let did = match &c.did {
            Some(d) => self.project.ws.root.join(&d.value),
            None => ws.did_for(krate, &spec.features).unwrap_or_default(),
        };
        let iface = match Interface::load_file(&did) {
            Ok(i) => Rc::new(i),
            Err(e) => {
                self.push(
                    ErrorKind::Build,
                    did_span,
                    format!("cannot load the Candid interface: {e}"),
                );
                return None;
            }
        };
        Some(self.plan(name, c, spec, did, iface))
    }

    fn plan(
        &mut self,
        name: &Spanned<String>,
        c: &CanisterDecl,
        spec: BuildSpec,
        did: PathBuf,
        iface: Rc<Interface>,
    ) -> CanisterPlan {
        let cycles = match &c.cycles {
            None => 100_000_000_000_000u128,
            Some(n) => match codec::parse_big(&n.0).and_then(|i| u128::try_from(i).ok()) {
                Some(v) => v,
                None => {
                    self.push(
                        ErrorKind::Type,
                        n.0.span,
                        "cycles must be a non-negative number (`100T`, \"5_000_000\")",
                    );
                    0
                }
            },
        };
        CanisterPlan {
            name: name.value.clone(),
            span: name.span,
            spec,
            did,
            iface,
            init: c.init.as_ref().map(|n| n.0.clone()),
            init_candid: c.init_candid.clone(),
            cycles,
            controllers: c
                .controllers
                .as_ref()
                .map(|v| v.iter().map(|x| x.value.clone()).collect())
                .unwrap_or_else(|| vec![CONTROLLER.to_string()]),
        }
    }

    fn expand(
        &mut self,
        sc: &Scenario,
        steps: &[Spanned<Step>],
        prefix: &str,
        scope: &Arc<BTreeMap<String, Node>>,
        depth: usize,
    ) -> Vec<PStep> {
        let mut out = vec![];
        for (i, s) in steps.iter().enumerate() {
            let acts = actions_of(&s.value);
            let action = match acts.as_slice() {
                [a] => *a,
                [] => {
                    self.push(
                        ErrorKind::StepAction,
                        s.span,
                        format!(
                            "this step has no action; give one of: {}",
                            ACTIONS.join(", ")
                        ),
                    );
                    continue;
                }
                many => {
                    self.push(
                        ErrorKind::StepAction,
                        s.span,
                        format!(
                            "this step has {} actions ({}); a step does exactly one thing",
                            many.len(),
                            many.join(", ")
                        ),
                    );
                    continue;
                }
            };
            let id = match &s.value.id {
                Some(id) => format!("{prefix}{}", id.value),
                None => format!("{prefix}{action}-{}", i + 1),
            };
            if action == "include" {
                let mut inc_name = s.value.include.clone().expect("include");
                if let Some(var) = codec::var_ref(&inc_name.value) {
                    match scope
                        .get(var)
                        .or_else(|| sc.vars.get(var).map(|n| &n.0))
                        .and_then(|n| n.as_str().map(str::to_string))
                    {
                        Some(name) => inc_name.value = name,
                        None => {
                            self.push(ErrorKind::Include, inc_name.span, format!("`include: {}` needs `{var}` to be the name of an include here (a var, case var or include parameter)", inc_name.value));
                            continue;
                        }
                    }
                }
                let inc_name = &inc_name;
                let Some(inc) = sc.includes.get(&inc_name.value) else {
                    self.push(
                        ErrorKind::Include,
                        inc_name.span,
                        format!(
                            "no include named `{}`{}",
                            inc_name.value,
                            crate::diag::did_you_mean(&inc_name.value, sc.includes.keys())
                        ),
                    );
                    continue;
                };
                if depth > 8 {
                    self.push(
                        ErrorKind::Include,
                        inc_name.span,
                        "includes nest too deeply (a cycle?)",
                    );
                    continue;
                }
                let params: Vec<&str> = inc.params.iter().map(|p| p.value.as_str()).collect();
                for (k, _) in s.value.with.iter() {
                    if !params.contains(&k.value.as_str()) {
                        self.push(
                            ErrorKind::Include,
                            k.span,
                            format!(
                                "include `{}` has no parameter `{}`{}",
                                inc_name.value,
                                k.value,
                                crate::diag::did_you_mean(&k.value, params.iter().copied())
                            ),
                        );
                    }
                }
                for p in &params {
                    if s.value.with.get(p).is_none() {
                        self.push(
                            ErrorKind::Include,
                            inc_name.span,
                            format!(
                                "include `{}` needs parameter `{p}` (under `with:`)",
                                inc_name.value
                            ),
                        );
                    }
                }
                let mut inner = (**scope).clone();
                for (k, v) in s.value.with.iter() {
                    inner.insert(k.value.clone(), v.0.clone());
                }
                let inner = Arc::new(inner);
                let expanded = self.expand(sc, &inc.steps, &format!("{id}."), &inner, depth + 1);
                out.extend(expanded);
                continue;
            }
            if action == "repeat" {
                out.extend(self.repeat(sc, s, &id, scope, depth));
                continue;
            }
            if s.value.steps.is_some() || s.value.var.is_some() {
                let span = s.value.var.as_ref().map(|v| v.span).unwrap_or(s.span);
                self.push(
                    ErrorKind::StepAction,
                    span,
                    "`steps` and `var` belong to a `repeat` step",
                );
            }
            out.push(PStep {
                id,
                span: s.span,
                step: s.value.clone(),
                action,
                scope: scope.clone(),
                lint: true,
            });
        }
        out
    }

    /// `{id: fill, repeat: N, var: i, steps: [...]}`: the steps N times with `${i}` = 0..N-1; inner ids
    /// become `fill.<inner>-<i>`.
    fn repeat(
        &mut self,
        sc: &Scenario,
        s: &Spanned<Step>,
        id: &str,
        scope: &Arc<BTreeMap<String, Node>>,
        depth: usize,
    ) -> Vec<PStep> {
        let st = &s.value;
        let n = st.repeat.as_ref().expect("repeat");
        let Some(inner) = &st.steps else {
            self.push(
                ErrorKind::StepAction,
                n.span,
                "a `repeat` step needs `steps:` (the steps to repeat)",
            );
            return vec![];
        };
        if n.value == 0 || n.value > MAX_REPEAT {
            self.push(
                ErrorKind::StepAction,
                n.span,
                format!(
                    "`repeat` takes 1 to {MAX_REPEAT} iterations, found {}",
                    n.value
                ),
            );
            return vec![];
        }
        if inner.is_empty() {
            self.push(ErrorKind::StepAction, n.span, "`repeat` has no steps");
            return vec![];
        }
        if st.stage {
            self.push(
                ErrorKind::StepAction,
                s.span,
                "a `repeat` step is not a stage; mark a step inside it with `stage: true`",
            );
        }
        for (k, what) in [
            (st.as_.is_some(), "as"),
            (st.args.is_some(), "args"),
            (st.expect.is_some(), "expect"),
            (!st.capture.is_empty(), "capture"),
        ] {
            if k {
                self.push(
                    ErrorKind::StepAction,
                    s.span,
                    format!(
                        "`{what}` does not apply to a `repeat` step (put it on the steps inside)"
                    ),
                );
            }
        }
        if depth > 8 {
            self.push(
                ErrorKind::Include,
                n.span,
                "repeats and includes nest too deeply",
            );
            return vec![];
        }
        let var = st
            .var
            .as_ref()
            .map(|v| v.value.clone())
            .unwrap_or_else(|| "i".to_string());
        if var.is_empty() || !var.chars().all(|c| c.is_alphanumeric() || c == '_') {
            self.push(
                ErrorKind::StepAction,
                st.var.as_ref().map(|v| v.span).unwrap_or(n.span),
                format!("`var: {var}` is not a plain name"),
            );
            return vec![];
        }
        let mut out = vec![];
        for k in 0..n.value {
            let mut inner_scope = (**scope).clone();
            inner_scope.insert(
                var.clone(),
                Node {
                    span: n.span,
                    kind: crate::yaml::Kind::Int(k as i128),
                },
            );
            let before = self.diags.len();
            let expanded = self.expand(
                sc,
                inner,
                &format!("{id}."),
                &Arc::new(inner_scope),
                depth + 1,
            );
            let lint = n.value <= LINT_ALL_ITERATIONS || k == 0 || k + 1 == n.value;
            let ids: BTreeSet<String> = expanded.iter().map(|p| format!("{}-{k}", p.id)).collect();
            for mut p in expanded {
                // `await`, `clear_fault`, `release` name steps of the same iteration by their inner id
                for r in [
                    &mut p.step.await_,
                    &mut p.step.clear_fault,
                    &mut p.step.release,
                ]
                .into_iter()
                .flatten()
                {
                    let full = format!("{id}.{}-{k}", r.value);
                    if ids.contains(&full) {
                        r.value = full;
                    }
                }
                p.id = format!("{}-{k}", p.id);
                p.lint &= lint;
                if st.snapshot == Some(false) && p.step.snapshot.is_none() {
                    p.step.snapshot = Some(false);
                }
                out.push(p);
            }
            if self.diags.len() > before {
                break; // the same problem in every iteration: report it once
            }
        }
        out
    }

    fn fault_spec(&mut self, l: &Loaded, f: &FaultSpec) {
        let is_ref = |s: &str| s.contains("${") || Principal::from_text(s).is_ok();
        if f.target.value != "management"
            && l.canister(&f.target.value).is_none()
            && !is_ref(&f.target.value)
        {
            self.push(
                ErrorKind::UnknownCanister,
                f.target.span,
                format!("fault target `{}` is neither `management`, a canister nor a principal or `${{capture}}`{}", f.target.value, crate::diag::did_you_mean(&f.target.value, l.canisters.iter().map(|c| c.name.as_str()))),
            );
        }
        if let Some(c) = &f.caller {
            if !l.identities.contains(&c.value)
                && l.canister(&c.value).is_none()
                && !is_ref(&c.value)
            {
                self.push(
                    ErrorKind::UnknownIdentity,
                    c.span,
                    format!(
                        "fault caller `{}` is neither an identity nor a canister",
                        c.value
                    ),
                );
            }
        }
    }

    fn dry(
        &mut self,
        l: &Loaded,
        s: &PStep,
        defined: &mut BTreeSet<String>,
        submits: &mut BTreeMap<String, (String, String)>,
        names: &BTreeSet<String>,
    ) {
        if !s.lint {
            // a middle iteration of a long `repeat`: only what it defines
            let can_names: BTreeSet<String> = l.canisters.iter().map(|c| c.name.clone()).collect();
            let r = LintResolve {
                names,
                canisters: &can_names,
                vars: &l.vars,
                scope: &s.scope,
            };
            for (k, _) in s.step.capture.iter() {
                if let Ok(n) = codec::interpolate_str(&k.value, k.span, &r) {
                    defined.insert(n);
                }
            }
            return;
        }
        // undefined ${…}
        for (name, span) in step_refs(&s.step) {
            if !defined.contains(&name) && !s.scope.contains_key(&name) {
                let cands: Vec<&str> = defined
                    .iter()
                    .map(String::as_str)
                    .chain(s.scope.keys().map(String::as_str))
                    .collect();
                self.push(
                    ErrorKind::UndefinedCapture,
                    span,
                    format!("`${{{name}}}` is not defined here (not a var, an include parameter or a capture of an earlier step){}", crate::diag::did_you_mean(&name, cands)),
                );
            }
        }
        let can_names: BTreeSet<String> = l.canisters.iter().map(|c| c.name.clone()).collect();
        let r = LintResolve {
            names,
            canisters: &can_names,
            vars: &l.vars,
            scope: &s.scope,
        };
        let st = &s.step;
        let res: Result<(), ValueError> = (|| {
            if let Some(at) = &st.at {
                if !matches!(
                    s.action,
                    "call"
                        | "query"
                        | "check"
                        | "submit"
                        | "tick_until"
                        | "failpoint"
                        | "upgrade"
                        | "reinstall"
                ) {
                    return Err(verr("type", at.span, "`at` applies to `call`, `query`, `check`, `submit`, `tick_until`, `upgrade` and `reinstall`"));
                }
                if matches!(s.action, "upgrade" | "reinstall") {
                    principal_ref(l, at, &r)?;
                }
            }
            if let Some(m) = &st.max_instructions {
                if !matches!(s.action, "call" | "query" | "check") {
                    return Err(verr(
                        "type",
                        m.span,
                        "`max_instructions` applies to `call`, `query` and `check`",
                    ));
                }
            }
            if st.reject.is_some()
                && matches!(s.action, "upgrade" | "reinstall")
                && st.expect.is_some()
            {
                return Err(verr(
                    "type",
                    s.span,
                    "an upgrade expects `reject:` (refused) or nothing (succeeds)",
                ));
            }
            match s.action {
                "call" | "query" | "submit" | "check" | "tick_until" | "failpoint" => {
                    let (target, force) = match s.action {
                        "call" => (st.call.clone().expect("call"), None),
                        "query" => (st.query.clone().expect("query"), Some(true)),
                        "submit" => (st.submit.clone().expect("submit"), Some(false)),
                        "check" => (st.check.clone().expect("check"), Some(true)),
                        "tick_until" => (st.tick_until.clone().expect("tick_until"), Some(true)),
                        _ => {
                            let c = st.failpoint.clone().expect("failpoint");
                            if let Some(cp) = l.canister(&c.value) {
                                if !cp.spec.features.contains("failpoints") {
                                    return Err(verr(
                                        "failpoint",
                                        c.span,
                                        format!("canister `{}` is not built with the `failpoints` feature (add `features: [failpoints]`)", c.value),
                                    ));
                                }
                            }
                            (
                                Spanned {
                                    span: c.span,
                                    value: format!("{}.failpoint_arm", c.value),
                                },
                                Some(false),
                            )
                        }
                    };
                    let p = prepare_call(l, &target, force, st, &r)?;
                    if let Some(at) = &st.at {
                        if s.action == "failpoint" {
                            return Err(verr("type", at.span, "`at` applies to `call`, `query`, `check`, `submit` and `tick_until`"));
                        }
                        principal_ref(l, at, &r)?;
                    }
                    if s.action == "submit" {
                        if st.expect.is_some() || st.reject.is_some() || !st.capture.is_empty() {
                            return Err(verr("type", s.span, "a `submit` has no reply yet: put `expect`/`capture` on the `await` step"));
                        }
                        submits.insert(s.id.clone(), (p.canister.clone(), p.method.clone()));
                    } else {
                        if let Some(d) = &st.every {
                            let v = codec::interpolate_str(&d.value, d.span, &r)?;
                            if !v.contains("${") {
                                parse_duration(&v).ok_or_else(|| {
                                    verr(
                                        "duration",
                                        d.span,
                                        format!("cannot read the duration `{v}`"),
                                    )
                                })?;
                            }
                        }
                        if s.action == "tick_until" && st.expect.is_none() {
                            return Err(verr(
                                "type",
                                s.span,
                                "`tick_until` needs an `expect` (the condition to wait for)",
                            ));
                        }
                        check_expect(st, l.sc.strict, &p.iface, &p.rets, None, &r, None)?;
                        for (name, _, span) in capture_paths(st, &p.rets, &p.iface)? {
                            defined.insert(codec::interpolate_str(&name, span, &r)?);
                        }
                    }
                }
                "canisters" => {
                    let (st2, iface) = canisters_step(st).map_err(|m| verr("type", s.span, m))?;
                    let rets = canisters_rets(&iface);
                    check_expect(&st2, l.sc.strict, &iface, &rets, None, &r, None)?;
                    for (name, _, span) in capture_paths(&st2, &rets, &iface)? {
                        defined.insert(codec::interpolate_str(&name, span, &r)?);
                    }
                }
                "cycles" => {
                    let c = st.cycles.as_ref().expect("cycles");
                    principal_ref(l, &c.canister, &r)?;
                    match (&c.set, &c.add) {
                        (Some(n), None) | (None, Some(n)) => {
                            let n = codec::interpolate(&n.0, &r)?;
                            if codec::parse_big(&n)
                                .and_then(|i| u128::try_from(i).ok())
                                .is_none()
                                && !n.as_str().map(|x| x.contains("${")).unwrap_or(false)
                            {
                                return Err(verr(
                                    "type",
                                    n.span,
                                    "cycles must be a non-negative number (`0`, `5T`, \"1_000\")",
                                ));
                            }
                        }
                        _ => {
                            return Err(verr(
                                "type",
                                c.canister.span,
                                "`cycles` needs exactly one of `set` or `add`",
                            ))
                        }
                    }
                }
                "await" => {
                    let target = st.await_.as_ref().expect("await");
                    let Some((c, m)) = submits.get(&target.value).cloned() else {
                        return Err(verr(
                            "step-id",
                            target.span,
                            format!("no earlier `submit` step with id `{}`", target.value),
                        ));
                    };
                    let cp = l.canister(&c).expect("submitted canister");
                    let f = cp.iface.method(&m).expect("submitted method");
                    check_expect(st, l.sc.strict, &cp.iface, &f.rets, None, &r, None)?;
                    for (name, _, span) in capture_paths(st, &f.rets, &cp.iface)? {
                        defined.insert(codec::interpolate_str(&name, span, &r)?);
                    }
                }
                "advance_time" => {
                    let d = st.advance_time.as_ref().expect("advance_time");
                    parse_duration(&d.value).ok_or_else(|| {
                        verr(
                            "duration",
                            d.span,
                            format!(
                                "cannot read the duration `{}` (use 90s, 10m, 1h30m, 2d, 500ms)",
                                d.value
                            ),
                        )
                    })?;
                }
                "set_time" => {
                    let d = st.set_time.as_ref().expect("set_time");
                    parse_set_time(&d.value).ok_or_else(|| verr("duration", d.span, format!("cannot read the time `{}` (use +1h relative to the start, or nanoseconds)", d.value)))?;
                }
                "upgrade" | "reinstall" | "stop" | "start" => {
                    let c = st
                        .upgrade
                        .as_ref()
                        .or(st.reinstall.as_ref())
                        .or(st.stop.as_ref())
                        .or(st.start.as_ref())
                        .expect("target");
                    let name = codec::interpolate_str(&c.value, c.span, &r)?;
                    let cp = l.canister(&name).ok_or_else(|| {
                        verr(
                            "unknown-canister",
                            c.span,
                            format!(
                                "no canister `{name}`{}",
                                crate::diag::did_you_mean(
                                    &name,
                                    l.canisters.iter().map(|c| c.name.as_str())
                                )
                            ),
                        )
                    })?;
                    sender_name(l, st.as_.as_ref(), &r)?;
                    if let Some(fs) = &st.features {
                        self.features(&cp.spec.krate, fs);
                    }
                    if matches!(s.action, "upgrade" | "reinstall") {
                        upgrade_arg(cp, st.args.as_ref().map(|a| &a.0), &r)?;
                    }
                }
                "fault" => self.fault_spec(l, st.fault.as_ref().expect("fault")),
                "clear_fault" | "release" => {
                    let t = st
                        .clear_fault
                        .as_ref()
                        .or(st.release.as_ref())
                        .expect("target");
                    if !l
                        .steps
                        .iter()
                        .any(|x| x.id == t.value && x.action == "fault")
                    {
                        return Err(verr(
                            "step-id",
                            t.span,
                            format!("no `fault` step with id `{}`", t.value),
                        ));
                    }
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(e) = res {
            self.diags.push(vdiag(self.file, e));
        }
    }
}

/// `+1h` (relative to the start) or absolute nanoseconds.
pub enum SetTime {
    Relative(u128),
    Absolute(u64),
}

pub fn parse_set_time(s: &str) -> Option<SetTime> {
    let s = s.trim();
    if let Some(rel) = s.strip_prefix("T+").or_else(|| s.strip_prefix('+')) {
        return parse_duration(rel).map(SetTime::Relative);
    }
    codec::parse_big_str(s)
        .and_then(|n| u64::try_from(n).ok())
        .map(SetTime::Absolute)
}

/// The encoded init argument of a canister.
pub fn init_arg(cp: &CanisterPlan, r: &dyn Resolve) -> Result<Vec<u8>, ValueError> {
    let types = &cp.iface.init_args;
    match (&cp.init, &cp.init_candid) {
        (_, Some(c)) => codec::encode_candid_args(&c.value, c.span, types, &cp.iface.env),
        (Some(n), None) => {
            let n = codec::interpolate(n, r)?;
            codec::encode_args(Some(&n), types, &cp.iface.env, r)
        }
        (None, None) => codec::encode_args(None, types, &cp.iface.env, r).map_err(|mut e| {
            e.span = cp.span;
            e.message = format!(
                "canister `{}` needs an init argument (`init:`): {}",
                cp.name, e.message
            );
            e
        }),
    }
}

/// The encoded argument of an upgrade/reinstall (the init types; none given = the canister's `init`).
pub fn upgrade_arg(
    cp: &CanisterPlan,
    args: Option<&Node>,
    r: &dyn Resolve,
) -> Result<Vec<u8>, ValueError> {
    match args {
        Some(n) => {
            let n = codec::interpolate(n, r)?;
            codec::encode_args(Some(&n), &cp.iface.init_args, &cp.iface.env, r)
        }
        None => init_arg(cp, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("2d"), Some(172_800_000_000_000));
        assert_eq!(parse_duration("1000"), Some(1000));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }

    #[test]
    fn identities_are_deterministic() {
        assert_eq!(identity_principal("alice"), identity_principal("alice"));
        assert_ne!(identity_principal("alice"), identity_principal("bob"));
        assert_eq!(identity_principal("anonymous"), Principal::anonymous());
    }
}
