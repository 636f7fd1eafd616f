//! The scenario format (schema 1), as read from YAML. Shape only: meaning is checked in `lint`.

use crate::yaml::{RawNode, Spanned};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The format version this harness reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One scenario file.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Scenario", description = "A harness scenario (schema 1)")]
pub struct Scenario {
    /// Format version; must be 1.
    pub schema: Spanned<u32>,
    /// Human name (defaults to the file name).
    pub name: Option<String>,
    pub description: Option<String>,
    /// Free tags, selected with `SCENARIO_TAGS=smoke,!slow`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a trial needs; unmet requirements skip the trial with the reason printed.
    #[serde(default)]
    pub requires: Requires,
    /// Seed for deterministic choices (default: derived from the path and variant).
    pub seed: Option<u64>,
    /// Make every expectation strict (records must list all fields).
    #[serde(default)]
    pub strict: bool,
    /// Constants, used as `${name}`.
    #[serde(default)]
    pub vars: OrderedMap<RawNode>,
    /// Named identities; principals are derived from the name. `anonymous` and `controller` are built in.
    #[serde(default)]
    pub identities: Vec<Spanned<String>>,
    /// Canisters by logical name, created and installed in this order before the first step.
    #[serde(default)]
    pub canisters: OrderedMap<CanisterDecl>,
    /// Reusable step groups with parameters, used by `include:` steps.
    #[serde(default)]
    pub includes: OrderedMap<Include>,
    /// Checks run after every step (and after every injected fault).
    #[serde(default)]
    pub invariants: Vec<Spanned<Step>>,
    /// Expansion of this file into many trials.
    #[serde(default)]
    pub variants: Variants,
    /// The steps, in order.
    pub steps: Vec<Spanned<Step>>,
    /// Steps run at the end of a fault variant; their expectations must hold.
    #[serde(default)]
    pub on_fault: Vec<Spanned<Step>>,
    /// How transcripts normalize values beyond the defaults: `wasm` shows blobs cut from a built
    /// canister wasm, its SHA-256 (blob or hex text) and its length symbolically, so a change to the
    /// canister code does not change the snapshot; `balances` buckets fields named `*balance*` like
    /// cycles; `text_numbers` buckets numbers of 10 digits or more inside text (a balance quoted in
    /// an error message).
    #[serde(default)]
    pub normalize: Vec<Spanned<NormalizeOpt>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeOpt {
    Wasm,
    Balances,
    TextNumbers,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Cargo features that must be enabled (`name`) or disabled (`!name`) in the canister builds under
    /// test. `SCENARIO_FEATURES` (a CI matrix job) adds features to every build that declares them.
    #[serde(default)]
    pub features: Vec<Spanned<String>>,
    /// Backends the scenario can run on (default: all).
    #[serde(default)]
    pub backends: Vec<Spanned<BackendKind>>,
    /// Engine capabilities the scenario needs.
    #[serde(default)]
    pub capabilities: Vec<Spanned<Capability>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Embedded,
    Pocketic,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Embedded, BackendKind::Pocketic];
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Pocketic => "pocketic",
        }
    }
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "embedded" => Some(BackendKind::Embedded),
            "pocketic" => Some(BackendKind::Pocketic),
            _ => None,
        }
    }
}

/// Things only some backends can do.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Inject faults into calls between canisters (reject, trap, time out).
    Faults,
    /// Inject faults into management canister calls.
    ManagementFaults,
    /// Hold calls until released.
    HeldCalls,
    /// Count instructions, messages and bytes.
    Metrics,
    /// List every canister on the IC and set a canister's cycles (`canisters`, `cycles` steps).
    Inspect,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Faults => "faults",
            Capability::ManagementFaults => "management_faults",
            Capability::HeldCalls => "held_calls",
            Capability::Metrics => "metrics",
            Capability::Inspect => "inspect",
        }
    }
}

/// A canister of the scenario: which build, with what init argument and settings.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CanisterDecl {
    /// The workspace crate to build for wasm32 (e.g. `backend`).
    #[serde(rename = "crate")]
    pub krate: Spanned<String>,
    /// Cargo features of the build.
    #[serde(default)]
    pub features: Vec<Spanned<String>>,
    /// Whether the crate's default features are on (default: true).
    pub default_features: Option<bool>,
    /// Candid interface, relative to the workspace root (default: `canisters/<crate>/<crate>.did`, or
    /// `<crate>.<feature>.did` if the build has that feature and the file exists). `wasm`: read it out
    /// of this build's wasm (`ic_cdk::export_candid!()`), building it during lint if needed.
    pub did: Option<Spanned<String>>,
    /// Init argument as YAML, typed by the service's init arguments.
    pub init: Option<RawNode>,
    /// Init argument as Candid text, e.g. `(record { admins = vec {} })`.
    pub init_candid: Option<Spanned<String>>,
    /// Cycles to create the canister with (default 100T).
    pub cycles: Option<RawNode>,
    /// Controllers (identity names; default: `controller`).
    pub controllers: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Include {
    /// Parameter names, used as `${name}` inside the steps.
    #[serde(default)]
    pub params: Vec<Spanned<String>>,
    pub steps: Vec<Spanned<Step>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Variants {
    /// Backends to run on (default: every backend; those that cannot run are skipped with a reason).
    pub backends: Option<Vec<Spanned<BackendKind>>>,
    /// One trial per (fault × stage step): the fault is injected just before the stage step.
    #[serde(default)]
    pub fault_at_each_stage: Vec<FaultVariant>,
    /// One trial per (upgrade × stage step): the canister is upgraded just before the stage step.
    #[serde(default)]
    pub upgrade_at_each_stage: Vec<UpgradeVariant>,
    /// Whether the plain run (no fault, no upgrade) is a trial too (default true; false when `cases`
    /// are given).
    pub base: Option<bool>,
    /// One trial per case: the steps run with the case's `vars` (which may name the `include` to run,
    /// `include: "${inject}"`); `cell` names the stage × fault/upgrade cell the trial checks.
    #[serde(default)]
    pub cases: Vec<CaseVariant>,
}

/// One parameterized trial (`case=<name>`).
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CaseVariant {
    /// Short name used in the trial name (`case=<name>`).
    pub name: Spanned<String>,
    pub description: Option<String>,
    /// Vars of this trial, used as `${name}` (over the scenario's `vars`).
    #[serde(default)]
    pub vars: OrderedMap<RawNode>,
    /// The coverage cell this trial fills when it passes.
    pub cell: Option<CellSpec>,
    /// A reported bug this trial shows: the trial is expected to fail at an assertion of step `at`
    /// (it passes while it does, and shows `!` in the matrix); it fails if it fails anywhere else, and
    /// once the bug is fixed, so that the case is turned into a normal one. No snapshot is kept.
    pub known_bug: Option<KnownBug>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct KnownBug {
    /// The step id where the bug shows (the first failing step).
    pub at: Spanned<String>,
    /// What is wrong, for the report.
    pub bug: String,
}

/// A cell of the stage × fault or stage × upgrade matrix in the coverage summary.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// The workflow stage (a column), e.g. `Creating`.
    pub stage: Spanned<String>,
    /// A fault (a row of the fault matrix), e.g. `call-rejected`.
    pub fault: Option<Spanned<String>>,
    /// Or an upgrade policy (a row of the upgrade matrix), e.g. `stop-first`.
    pub upgrade: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FaultVariant {
    /// Short name used in the trial name (`fault=<name>@<stage>`).
    pub name: Spanned<String>,
    /// An engine fault rule (needs the `faults` capability).
    pub fault: Option<FaultSpec>,
    /// Or: arm a failpoint (a call to `failpoint_arm` on this canister, with `args`).
    pub failpoint: Option<Spanned<String>>,
    #[serde(rename = "as")]
    pub as_: Option<Spanned<String>>,
    pub args: Option<RawNode>,
    /// Only at these stages (a stage id, or a prefix ending in `.` such as `backend.`); default: all.
    pub stages: Option<Vec<Spanned<String>>>,
    /// After the fault, do the normal step expectations still apply? `relaxed` (default) records them
    /// without failing; `on_fault` steps and invariants always apply.
    pub then: Option<FaultThen>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultThen {
    Relaxed,
    Normal,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct UpgradeVariant {
    /// Canister to upgrade.
    pub canister: Spanned<String>,
    /// Build features of the new wasm (default: the canister's own build).
    pub features: Option<Vec<Spanned<String>>>,
    pub skip_pre_upgrade: Option<bool>,
    pub in_flight: Option<InFlight>,
    /// Upgrade argument (YAML).
    pub args: Option<RawNode>,
    /// Only at these stages (a stage id, or a prefix ending in `.` such as `backend.`); default: all.
    pub stages: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InFlight {
    /// Stop the canister (draining outstanding calls), upgrade, start. The default.
    StopFirst,
    /// Upgrade with calls in flight.
    Allow,
}

/// One step. Exactly one action key (`call`, `query`, `submit`, `await`, `check`, `tick`,
/// `tick_until`, `advance_time`, `set_time`, `upgrade`, `reinstall`, `stop`, `start`, `fault`,
/// `clear_fault`, `release`, `failpoint`, `include`, `repeat`, `canisters`, `cycles`); the other
/// keys qualify it.
#[derive(Deserialize, JsonSchema, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Stable id (default `<action>-<n>`); used in stage names, captures, `await`, errors.
    pub id: Option<Spanned<String>>,
    /// Human description.
    pub name: Option<String>,
    /// Mark the step as a stage of the workflow (variants inject faults/upgrades before it).
    #[serde(default)]
    pub stage: bool,

    // ---- actions
    /// Update call (or query if the .did says so): `canister.method`.
    pub call: Option<Spanned<String>>,
    /// Query call: `canister.method`.
    pub query: Option<Spanned<String>>,
    /// Submit an update call without waiting; `await: <id>` later.
    pub submit: Option<Spanned<String>>,
    /// Wait for a submitted call (by step id).
    #[serde(rename = "await")]
    pub await_: Option<Spanned<String>>,
    /// A query with expectations that does not go in captures (a state assertion).
    pub check: Option<Spanned<String>>,
    /// Execute this many rounds.
    pub tick: Option<Spanned<u32>>,
    /// Repeat a query, one round apart, until its expectation holds (at most `max_rounds`).
    pub tick_until: Option<Spanned<String>>,
    /// Advance time (`90s`, `10m`, `1h30m`, `2d`, `500ms`), then run until idle unless `idle: false`.
    pub advance_time: Option<Spanned<String>>,
    /// Set time relative to the start (`+1h`) or absolutely (nanoseconds since epoch).
    pub set_time: Option<Spanned<String>>,
    /// Upgrade a canister (`args`, `features`, `skip_pre_upgrade`, `in_flight`).
    pub upgrade: Option<Spanned<String>>,
    /// Reinstall a canister (`args`, `features`).
    pub reinstall: Option<Spanned<String>>,
    pub stop: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
    /// Install an engine fault rule; remove it with `clear_fault: <this step id>`.
    pub fault: Option<FaultSpec>,
    pub clear_fault: Option<Spanned<String>>,
    /// Release the calls held by a `hold` fault (by the fault step's id).
    pub release: Option<Spanned<String>>,
    /// Arm a failpoint: a call to the canister's admin-only `failpoint_arm` with `args`.
    pub failpoint: Option<Spanned<String>>,
    /// Run a step group from `includes`, with parameters in `with`.
    pub include: Option<Spanned<String>>,
    /// Run `steps` this many times, with `${var}` (default `${i}`) = 0, 1, …, N-1. The ids of the
    /// inner steps become `<id>.<inner id>-<i>`, so they stay unique.
    pub repeat: Option<Spanned<u32>>,
    /// Assert (and capture) every canister that exists on the IC: `{count, canisters, created}`.
    /// Declared canisters appear by logical name, canisters created at run time (by a canister) as
    /// principals. Give `expect`/`capture` inside it or beside it.
    pub canisters: Option<CanistersSpec>,
    /// Set or add a canister's cycle balance (an engine fault: drain a canister).
    pub cycles: Option<CyclesSpec>,

    // ---- qualifiers
    /// Identity making the call (default `controller`): an identity, a canister's logical name (the
    /// canister's principal is the sender), or a principal / `${capture}` of one.
    #[serde(rename = "as")]
    pub as_: Option<Spanned<String>>,
    /// Send the call to this principal (usually a `${capture}` of a canister created at run time)
    /// instead of the named canister, whose interface is still used: `call: personal.api_version`
    /// with `at: ${pid}`.
    pub at: Option<Spanned<String>>,
    /// For `repeat`: the loop variable (default `i`).
    pub var: Option<Spanned<String>>,
    /// For `repeat`: the steps to repeat.
    pub steps: Option<Vec<Spanned<Step>>>,
    /// Arguments: the value for a one-parameter method, a list for several.
    pub args: Option<RawNode>,
    /// Arguments as Candid text, e.g. `("x", opt 5)`.
    pub args_candid: Option<Spanned<String>>,
    /// Pattern the reply must match (partial unless `strict`).
    pub expect: Option<RawNode>,
    /// The call must be rejected: `{code: CanisterReject, message: <matcher>}`.
    pub reject: Option<RejectExpect>,
    pub strict: Option<bool>,
    /// Captures: `name: $.Ok.id`.
    #[serde(default)]
    pub capture: OrderedMap<Spanned<String>>,
    /// Parameters of an `include`.
    #[serde(default)]
    pub with: OrderedMap<RawNode>,
    /// For time steps: run until idle afterwards (default true).
    pub idle: Option<bool>,
    /// Bound for `tick_until` and running until idle (default 100).
    pub max_rounds: Option<u32>,
    /// For `tick_until`: advance time by this much before each round (for workflows driven by
    /// timers); without it, attempts are one round apart at the same time.
    pub every: Option<Spanned<String>>,
    /// Build features for `upgrade`/`reinstall` (default: the canister's build).
    pub features: Option<Vec<Spanned<String>>>,
    pub skip_pre_upgrade: Option<bool>,
    pub in_flight: Option<InFlight>,
    /// Leave the step out of the transcript (default: in).
    pub snapshot: Option<bool>,
    /// For `call`, `query` and `check`: the most instructions any one execution of the called canister
    /// may use during the step (a cost bound; needs the `metrics` capability).
    pub max_instructions: Option<Spanned<u64>>,
}

/// `canisters: {expect: {count: 3, created: ["${pid}"]}}`: every canister on the IC.
#[derive(Deserialize, JsonSchema, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct CanistersSpec {
    /// Pattern for `record { count : nat64; canisters : vec principal; created : vec principal }`.
    pub expect: Option<RawNode>,
    /// Captures from the same record, e.g. `{pid: $.created[0]}`.
    #[serde(default)]
    pub capture: OrderedMap<Spanned<String>>,
}

/// `cycles: {canister: backend, set: 0}` or `{canister: "${pid}", add: 5T}`.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CyclesSpec {
    /// A canister's logical name, or a principal / `${capture}`.
    pub canister: Spanned<String>,
    /// The new balance.
    pub set: Option<RawNode>,
    /// Cycles to add to the balance.
    pub add: Option<RawNode>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RejectExpect {
    /// `SysFatal`, `SysTransient`, `DestinationInvalid`, `CanisterReject`, `CanisterError`, `SysUnknown`.
    pub code: Option<Spanned<RejectCodeName>>,
    /// Matcher for the message (a string means "contains").
    pub message: Option<RawNode>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RejectCodeName {
    SysFatal,
    SysTransient,
    DestinationInvalid,
    CanisterReject,
    CanisterError,
    SysUnknown,
}

/// An engine fault rule.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Canister logical name, or `management`.
    pub target: Spanned<String>,
    /// Only calls from this canister (logical name) or identity.
    pub caller: Option<Spanned<String>>,
    pub method: Option<String>,
    /// Only the nth matching call (1-based).
    pub nth: Option<u32>,
    /// At most this many times.
    pub times: Option<u32>,
    pub action: FaultActionSpec,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub enum FaultActionSpec {
    Reject {
        code: RejectCodeName,
        message: String,
    },
    Trap(String),
    Hold,
    DelayRounds(u32),
    Timeout,
    /// The callee runs but its reply is lost: the caller gets SYS_UNKNOWN at its deadline.
    LoseReply,
    /// The callee answers with these raw bytes (hex) without running, as a canister whose code was
    /// replaced could: e.g. a reply bomb.
    Reply(String),
}

/// A map that keeps the file's order, with spanned keys.
#[derive(Debug, Clone)]
pub struct OrderedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<T> OrderedMap<T> {
    pub fn get(&self, k: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n.value == k).map(|(_, v)| v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Spanned<String>, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap(vec![]))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    let v = m.next_value()?;
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for OrderedMap<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let inner = g.subschema_for::<T>();
        schemars::json_schema!({ "type": "object", "additionalProperties": inner })
    }
}

/// The JSON Schema of the format, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Scenario);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// Does a stage filter select `stage`?
pub fn stage_selected(filter: &Option<Vec<Spanned<String>>>, stage: &str) -> bool {
    match filter {
        None => true,
        Some(f) => f.iter().any(|x| {
            x.value == stage || (x.value.ends_with('.') && stage.starts_with(x.value.as_str()))
        }),
    }
}
