//! The engine: canisters, scheduler (queues, rounds, call contexts, deadlines), management canister,
//! faults, metrics and the host API.

use crate::metrics::{ExecKind, ExecRecord, Metrics};
use crate::mgmt_types::*;
use crate::runtime::{self, CanisterInstance, Compiled, Ctx, Entry, Fees, HostTrap, Kind, OutCall};
use crate::types::*;
use crate::wasm;
use candid::{Nat, Principal};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

const MGMT: Principal = Principal::management_canister();
const FIRST_CANISTER: u64 = 0xFFFF_FFFF_FFE0_0000;
const DEFAULT_PROVISIONAL_CYCLES: u128 = 100_000_000_000_000;
const HELP_TRAPPED: &str = "Consider gracefully handling failures from this canister or altering the canister to handle exceptions. See documentation: https://internetcomputer.org/docs/current/references/execution-errors#trapped-explicitly";

fn candid_empty() -> Vec<u8> {
    candid::encode_args(()).unwrap_or_default()
}

fn enc<T: candid::CandidType>(v: &T) -> Vec<u8> {
    candid::encode_one(v).unwrap_or_default()
}

fn nat_u64(n: &Nat) -> Option<u64> {
    u64::try_from(&n.0).ok()
}
fn nat_u128(n: &Nat) -> Option<u128> {
    u128::try_from(&n.0).ok()
}

/// The principal of the canister with index `n` on the engine's subnet (PocketIC's first application subnet).
pub fn canister_id_at(n: u64) -> Principal {
    let mut b = (FIRST_CANISTER + n).to_be_bytes().to_vec();
    b.extend_from_slice(&[1, 1]);
    Principal::from_slice(&b)
}

#[derive(Clone, Debug)]
enum ReqOrigin {
    Ingress(u64),
    Canister(u64),
}

#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Request {
    sender: Principal,
    receiver: Principal,
    method: String,
    arg: Vec<u8>,
    cycles: u128,
    origin: ReqOrigin,
    deadline: u64,
    /// Already went through fault matching (released from hold / delay).
    exempt: bool,
    /// Submitted through the host API's management helpers (no ingress size limit).
    host: bool,
}

#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Callback {
    context: u64,
    reply: (u32, u32),
    reject: (u32, u32),
    cleanup: Option<(u32, u32)>,
    deadline: u64,
    callee: Principal,
    method: String,
}

#[derive(Debug)]
struct Response {
    receiver: Principal,
    callback: u64,
    result: Result<Vec<u8>, Reject>,
    refund: u128,
    /// Set for a deadline expiry: the callback, already removed from the canister.
    expired: Option<Callback>,
}

#[derive(Debug)]
enum Msg {
    Req(Request),
    Resp(Response),
}

#[derive(Clone, Debug)]
enum CtxOrigin {
    Request {
        origin: ReqOrigin,
        caller: Principal,
    },
    System,
}

#[derive(Clone, Debug)]
#[allow(dead_code)]
struct CallContext {
    origin: CtxOrigin,
    responded: bool,
    available: u128,
    outstanding: u32,
    instructions: u64,
    deadline: u64,
    method: String,
}

#[derive(Clone, Debug)]
enum IngressState {
    Pending,
    Done(Result<Vec<u8>, Reject>),
}

struct FaultState {
    rule: FaultRule,
    matches: u32,
    fired: u32,
}

struct Canister {
    #[allow(dead_code)]
    id: Principal,
    settings: DefiniteSettings,
    cycles: u128,
    status: Status,
    version: u64,
    inst: Option<CanisterInstance>,
    module_hash: Option<[u8; 32]>,
    certified_data: Vec<u8>,
    timer: u64,
    logs: VecDeque<LogRecord>,
    log_bytes: usize,
    next_log: u64,
    chunks: BTreeMap<[u8; 32], Vec<u8>>,
    history: Vec<Change>,
    total_changes: u64,
    contexts: BTreeMap<u64, CallContext>,
    callbacks: BTreeMap<u64, Callback>,
    stops: Vec<(ReqOrigin, Principal, u64)>,
    last_charge: u64,
    /// Outstanding calls per callee (the IC's per-pair queue capacity).
    inflight: BTreeMap<Principal, u32>,
    /// `canister_on_low_wasm_memory`: None = condition not met, Some(false) = due, Some(true) = ran.
    low_memory: Option<bool>,
}

impl Canister {
    fn footprint(&self) -> u64 {
        let mut m = self.chunks.len() as u64 * (1 << 20);
        if let Some(i) = &self.inst {
            m += i.heap_bytes()
                + i.ctx().stable.size_bytes()
                + i.compiled.wasm_size
                + i.globals_bytes();
        }
        m.max(self.settings.memory_allocation)
    }
    fn status_code(&self) -> u32 {
        match self.status {
            Status::Running => 1,
            Status::Stopping => 2,
            Status::Stopped => 3,
        }
    }
}

/// What to run and how (see `Engine::run_exec`).
struct ExecCall {
    kind: Kind,
    entry: Entry,
    caller: Principal,
    arg: Vec<u8>,
    reject: (u32, String),
    refunded: u128,
    available: u128,
    can_respond: bool,
    deadline: u64,
    method_name: String,
    cc_instructions: u64,
    fuel: u64,
    /// Prepay the execution now (updates, tasks, installs); callbacks were prepaid at `call_perform`.
    prepay: bool,
    /// Charge instructions at all (false for non-replicated queries).
    charge: bool,
    keep: Keep,
    certificate: Option<Vec<u8>>,
    metric_kind: ExecKind,
    metric_method: String,
}

impl ExecCall {
    fn new(
        kind: Kind,
        entry: Entry,
        fuel: u64,
        metric_kind: ExecKind,
        metric_method: &str,
    ) -> ExecCall {
        ExecCall {
            kind,
            entry,
            caller: MGMT,
            arg: vec![],
            reject: (0, String::new()),
            refunded: 0,
            available: 0,
            can_respond: false,
            deadline: 0,
            method_name: String::new(),
            cc_instructions: 0,
            fuel,
            prepay: true,
            charge: true,
            keep: Keep::Commit,
            certificate: None,
            metric_kind,
            metric_method: metric_method.to_string(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Commit on success, roll back on trap.
    Commit,
    /// Always roll back (queries), but keep the response.
    Discard,
    /// On success leave the checkpoint open (the caller commits or rolls back); roll back on trap.
    Leave,
    /// Inside a composite query: no checkpoint, no commit, no rollback (the caller discards everything at the
    /// end), no cycles.
    Nested,
}

struct Outcome {
    result: Result<(), HostTrap>,
    instructions: u64,
    response: Option<Result<Vec<u8>, String>>,
    calls: Vec<OutCall>,
    available_left: u128,
    accepted: bool,
}

enum MgmtResult {
    Reply(Vec<u8>, u128),
    Reject(Reject, u128),
    Deferred,
}

/// One simulated application subnet (13 nodes) plus the management canister.
pub struct Engine {
    cfg: EngineConfig,
    wt: wasmtime::Engine,
    linker: wasmtime::Linker<Ctx>,
    cache: HashMap<[u8; 32], Arc<Compiled>>,
    fees: Arc<Fees>,
    root_key: Arc<Vec<u8>>,
    subnet_id: Principal,
    canisters: BTreeMap<Principal, Canister>,
    next_canister: u64,
    time: u64,
    time_changed: bool,
    round_time: u64,
    round: u64,
    queue: VecDeque<Msg>,
    delayed: Vec<(u64, Msg)>,
    held: BTreeMap<u64, Vec<Msg>>,
    /// Callbacks whose reply a `LoseReply` fault drops, and whether their caller waits unbounded.
    lost_replies: BTreeMap<u64, bool>,
    ingress: BTreeMap<u64, IngressState>,
    next_msg: u64,
    next_id: u64,
    rand_counter: u64,
    faults: BTreeMap<u64, FaultState>,
    next_fault: u64,
    metrics: Metrics,
    composite_stack: Vec<Principal>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let (wt, linker) = shared_wasmtime();
        let fees = Arc::new(Fees::from_config(&cfg.fees, &cfg.limits, cfg.subnet_size));
        let seed_hash = |tag: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(tag);
            h.update(cfg.seed);
            h.finalize().into()
        };
        let mut root_key =
            hex_bytes("308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100");
        for i in 0..3u8 {
            root_key.extend_from_slice(&seed_hash(&[b'r', b'k', i]));
        }
        let mut subnet = seed_hash(b"subnet")[..28].to_vec();
        subnet.push(2);
        let time = cfg.start_time_nanos;
        Engine {
            wt,
            linker,
            cache: HashMap::new(),
            fees,
            root_key: Arc::new(root_key),
            subnet_id: Principal::from_slice(&subnet),
            canisters: BTreeMap::new(),
            next_canister: 0,
            time,
            time_changed: false,
            round_time: time,
            round: 0,
            queue: VecDeque::new(),
            delayed: vec![],
            held: BTreeMap::new(),
            lost_replies: BTreeMap::new(),
            ingress: BTreeMap::new(),
            next_msg: 0,
            next_id: 0,
            rand_counter: 0,
            faults: BTreeMap::new(),
            next_fault: 0,
            metrics: Metrics {
                keep_records: true,
                ..Default::default()
            },
            composite_stack: vec![],
            cfg,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }
    pub fn root_key(&self) -> Vec<u8> {
        self.root_key.as_ref().clone()
    }
    pub fn round(&self) -> u64 {
        self.round
    }

    // -----------------------------------------------------------------------------------------------------------
    // Compile cache

    /// Decode, validate, rewrite and compile a module (cached by the SHA-256 of the decoded module).
    pub fn compile(&mut self, wasm_bytes: &[u8]) -> Result<Arc<Compiled>, Reject> {
        let decoded = wasm::decode_module(wasm_bytes, self.cfg.limits.max_wasm_module_bytes)
            .map_err(|e| Reject::ic(505, format!("Wasm module error: {e}")))?;
        let key: [u8; 32] = Sha256::digest(&decoded).into();
        if let Some(c) = self.cache.get(&key) {
            self.metrics.compile_cache_hits += 1;
            return Ok(c.clone());
        }
        if let Some(c) = global_cache()
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            self.metrics.compile_cache_hits += 1;
            self.cache.insert(key, c.clone());
            return Ok(c);
        }
        let info = wasm::validate(&decoded).map_err(|e| Reject::ic(505, e))?;
        let rewritten = wasm::rewrite(&decoded)
            .map_err(|e| Reject::ic(505, format!("Wasm module has an invalid format: {e}")))?;
        let module = match disk_cache_load(&self.wt, &key) {
            Some(m) => m,
            None => {
                let m = wasmtime::Module::new(&self.wt, &rewritten).map_err(|e| {
                    Reject::ic(
                        505,
                        format!("Wasm module has an invalid format: {}", e.root_cause()),
                    )
                })?;
                disk_cache_store(&self.wt, &key, &m);
                m
            }
        };
        let pre = self.linker.instantiate_pre(&module).map_err(|e| {
            Reject::ic(
                505,
                format!(
                    "Wasm module has an invalid import section: {}",
                    e.root_cause()
                ),
            )
        })?;
        let c = Arc::new(Compiled {
            pre,
            module,
            info,
            wasm_size: wasm_bytes.len() as u64,
        });
        self.metrics.modules_compiled += 1;
        self.cache.insert(key, c.clone());
        if let Ok(mut m) = global_cache().lock() {
            m.insert(key, c.clone());
        }
        Ok(c)
    }

    /// Number of modules compiled so far (cache misses).
    pub fn modules_compiled(&self) -> u64 {
        self.metrics.modules_compiled
    }

    // -----------------------------------------------------------------------------------------------------------
    // Host API

    pub fn create_canister(
        &mut self,
        sender: Principal,
        settings: Option<CanisterSettings>,
        cycles: u128,
    ) -> Result<Principal, Reject> {
        let args = ProvisionalCreateArgs {
            amount: Some(Nat::from(cycles)),
            settings: settings.map(|s| to_wire(&s)),
            specified_id: None,
            sender_canister_version: None,
        };
        let r = self.host_mgmt(
            sender,
            "provisional_create_canister_with_cycles",
            enc(&args),
        )?;
        let res: CanisterIdResult =
            candid::decode_one(&r).map_err(|e| Reject::new(RejectCode::SysFatal, e.to_string()))?;
        Ok(res.canister_id)
    }

    pub fn install_code(
        &mut self,
        sender: Principal,
        canister: Principal,
        mode: InstallMode,
        wasm: &[u8],
        arg: &[u8],
    ) -> Result<(), Reject> {
        let mode = match mode {
            InstallMode::Install => WireInstallMode::Install,
            InstallMode::Reinstall => WireInstallMode::Reinstall,
            InstallMode::Upgrade { skip_pre_upgrade } => {
                WireInstallMode::Upgrade(Some(UpgradeFlags {
                    skip_pre_upgrade: Some(skip_pre_upgrade),
                    wasm_memory_persistence: None,
                }))
            }
        };
        let args = InstallCodeArgs {
            mode,
            canister_id: canister,
            wasm_module: ByteBuf::from(wasm.to_vec()),
            arg: ByteBuf::from(arg.to_vec()),
            sender_canister_version: None,
        };
        self.host_mgmt(sender, "install_code", enc(&args))
            .map(|_| ())
    }

    pub fn update_call(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject> {
        let id = self.submit_call(sender, canister, method, arg)?;
        self.await_call(id)
    }

    pub fn submit_call(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<MessageId, Reject> {
        self.submit(sender, canister, method, arg.to_vec(), false)
    }

    fn submit(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
        host: bool,
    ) -> Result<MessageId, Reject> {
        if !host && arg.len() > self.cfg.limits.max_ingress_payload {
            return Err(Reject::ic(
                409,
                format!(
                    "Ingress message payload of {} bytes exceeds the maximum of {} bytes",
                    arg.len(),
                    self.cfg.limits.max_ingress_payload
                ),
            ));
        }
        if canister == MGMT {
            if !INGRESS_MGMT_METHODS.contains(&method) {
                if KNOWN_MGMT_METHODS.contains(&method) {
                    return Err(Reject::ic(
                        406,
                        format!("Only canisters can call ic00 method {method}"),
                    ));
                }
                return Err(Reject::ic(
                    536,
                    format!("Management canister has no method '{method}'"),
                ));
            }
            // Ingress to the management canister is validated against its effective canister at submission.
            #[derive(candid::CandidType, serde::Deserialize)]
            struct Effective {
                canister_id: Option<Principal>,
                target_canister: Option<Principal>,
            }
            if method != "provisional_create_canister_with_cycles" {
                if let Ok(eff) = candid::decode_one::<Effective>(&arg) {
                    if let Some(target) = eff.canister_id.or(eff.target_canister) {
                        let c = self.get(target)?;
                        if method != "provisional_top_up_canister"
                            && !c.settings.controllers.contains(&sender)
                        {
                            return Err(not_controller(target, &c.settings.controllers, sender));
                        }
                    }
                }
            }
        } else {
            let Some(c) = self.canisters.get(&canister) else {
                return Err(Reject::ic(301, format!("Canister {canister} not found")));
            };
            // A message sent as a canister stands for that canister's call, which the IC never runs
            // inspect_message for: only ingress from users goes through it.
            let from_canister = self.canisters.contains_key(&sender);
            let inspect = c
                .inst
                .as_ref()
                .is_some_and(|i| i.compiled.info.has_inspect_message)
                && c.status == Status::Running
                && !from_canister;
            if inspect {
                let mut call = ExecCall::new(
                    Kind::InspectMessage,
                    Entry::Export("canister_inspect_message".into()),
                    self.cfg.limits.max_instructions_inspect,
                    ExecKind::InspectMessage,
                    method,
                );
                call.caller = sender;
                call.arg = arg.clone();
                call.method_name = method.to_string();
                call.prepay = false;
                call.charge = false;
                call.keep = Keep::Discard;
                let out = self.run_exec(canister, call);
                match out.result {
                    Err(t) => {
                        let r = trap_reject(canister, &t, self.cfg.limits.max_instructions_inspect);
                        return Err(Reject {
                            code: r.code,
                            message: r.message,
                            error_code: r.error_code,
                        });
                    }
                    Ok(()) if !out.accepted => {
                        return Err(Reject::ic(
                            406,
                            format!(
                                "Error from Canister {canister}: Canister rejected the message"
                            ),
                        ));
                    }
                    Ok(()) => {}
                }
            }
        }
        let id = self.next_msg;
        self.next_msg += 1;
        self.ingress.insert(id, IngressState::Pending);
        self.queue.push_back(Msg::Req(Request {
            sender,
            receiver: canister,
            method: method.to_string(),
            arg,
            cycles: 0,
            origin: ReqOrigin::Ingress(id),
            deadline: 0,
            exempt: false,
            host,
        }));
        Ok(MessageId(id))
    }

    pub fn await_call(&mut self, id: MessageId) -> Result<Vec<u8>, Reject> {
        if !self.ingress.contains_key(&id.0) {
            return Err(Reject::new(
                RejectCode::SysFatal,
                format!("unknown message id {}", id.0),
            ));
        }
        for _ in 0..=self.cfg.limits.max_rounds_per_await {
            if let Some(IngressState::Done(r)) = self.ingress.get(&id.0) {
                return r.clone();
            }
            self.tick();
        }
        if let Some(IngressState::Done(r)) = self.ingress.get(&id.0) {
            return r.clone();
        }
        Err(Reject::new(
            RejectCode::SysTransient,
            format!(
                "Failed to answer to ingress {} after {} rounds.",
                id.0, self.cfg.limits.max_rounds_per_await
            ),
        ))
    }

    pub fn call_result(&self, id: MessageId) -> Option<Result<Vec<u8>, Reject>> {
        match self.ingress.get(&id.0) {
            Some(IngressState::Done(r)) => Some(r.clone()),
            _ => None,
        }
    }

    pub fn query_call(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject> {
        if arg.len() > self.cfg.limits.max_ingress_payload {
            return Err(Reject::ic(
                409,
                format!(
                    "Query payload of {} bytes exceeds the maximum of {} bytes",
                    arg.len(),
                    self.cfg.limits.max_ingress_payload
                ),
            ));
        }
        if canister == MGMT {
            return self.mgmt_query(sender, method, arg);
        }
        if !self.canisters.contains_key(&canister) {
            return Err(Reject::ic(301, format!("Canister {canister} not found")));
        }
        if let Some((_, action)) = self.match_fault(sender, canister, method) {
            match action {
                FaultAction::Reject { code, message } => return Err(Reject::new(code, message)),
                FaultAction::Reply { bytes } => return Ok(bytes),
                FaultAction::Trap { message } => {
                    return Err(trap_reject(
                        canister,
                        &HostTrap {
                            code: 503,
                            msg: message,
                        },
                        0,
                    ));
                }
                _ => {}
            }
        }
        let c = &self.canisters[&canister];
        match c.status {
            Status::Stopped => {
                return Err(Reject::ic(508, format!("Canister {canister} is stopped")))
            }
            Status::Stopping => {
                return Err(Reject::ic(509, format!("Canister {canister} is stopping")))
            }
            Status::Running => {}
        }
        let Some(inst) = &c.inst else {
            return Err(Reject::ic(
                537,
                format!("Error from Canister {canister}: Attempted to execute a message, but the canister contains no Wasm module."),
            ));
        };
        let info = &inst.compiled.info;
        let export = if info.query_methods.contains(method) {
            format!("canister_query {method}")
        } else if info.composite_query_methods.contains(method) {
            return self.composite_query(sender, canister, method, arg, 0);
        } else {
            return Err(Reject::ic(
                536,
                format!("Error from Canister {canister}: Canister has no query method '{method}'."),
            ));
        };
        let limit = self.cfg.limits.max_instructions_per_query;
        let mut call = ExecCall::new(
            Kind::NonReplicatedQuery,
            Entry::Export(export),
            limit,
            ExecKind::Query,
            method,
        );
        call.caller = sender;
        call.arg = arg.to_vec();
        call.can_respond = true;
        call.prepay = false;
        call.charge = false;
        call.keep = Keep::Discard;
        call.certificate = Some(self.certificate(canister));
        let out = self.run_exec(canister, call);
        match (out.result, out.response) {
            (Ok(()), Some(Ok(b))) => Ok(b),
            (Ok(()), Some(Err(m))) => Err(Reject::canister(m)),
            (Ok(()), None) => Err(Reject::ic(
                506,
                format!("Error from Canister {canister}: Canister did not reply to the call"),
            )),
            (Err(t), _) => Err(trap_reject(canister, &t, limit)),
        }
    }

    /// A composite query: the method and its callbacks run against one snapshot of the canister that is
    /// discarded at the end; the calls it makes (to query or composite-query methods of other canisters on the
    /// subnet) run synchronously, depth first, up to depth 6.
    fn composite_query(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
        depth: u32,
    ) -> Result<Vec<u8>, Reject> {
        let limit = self.cfg.limits.max_instructions_per_query;
        let cert = self.certificate(canister);
        if let Some(i) = self
            .canisters
            .get_mut(&canister)
            .and_then(|c| c.inst.as_mut())
        {
            i.checkpoint();
        }
        self.composite_stack.push(canister);
        let mut call = ExecCall::new(
            Kind::CompositeQuery,
            Entry::Export(format!("canister_composite_query {method}")),
            limit,
            ExecKind::Query,
            method,
        );
        call.caller = sender;
        call.arg = arg.to_vec();
        call.can_respond = true;
        call.prepay = false;
        call.charge = false;
        call.keep = Keep::Nested;
        call.certificate = Some(cert.clone());
        let out = self.run_exec(canister, call);
        let mut last_trap = out.result.err();
        let mut response = out.response;
        let mut pending: VecDeque<OutCall> = out.calls.into();
        while let Some(c) = pending.pop_front() {
            let result = if depth >= 6 {
                Err(Reject::ic(
                    504,
                    "Composite query call graph exceeds the maximum depth of 6".to_string(),
                ))
            } else if c.callee == canister || self.composite_stack.contains(&c.callee) {
                Err(Reject::ic(504, "The engine does not support composite query calls back into a canister of the same call graph".to_string()))
            } else {
                let callee_composite = self
                    .canisters
                    .get(&c.callee)
                    .and_then(|x| x.inst.as_ref())
                    .is_some_and(|i| i.compiled.info.composite_query_methods.contains(&c.method));
                if callee_composite {
                    self.composite_query(canister, c.callee, &c.method, &c.arg, depth + 1)
                } else if c.callee == MGMT {
                    self.mgmt_query(canister, &c.method, &c.arg)
                } else {
                    self.query_call(canister, c.callee, &c.method, &c.arg)
                }
            };
            let (kind, entry, arg, reject) = match &result {
                Ok(b) => (
                    Kind::CompositeReplyCallback,
                    c.reply,
                    b.clone(),
                    (0, String::new()),
                ),
                Err(r) => (
                    Kind::CompositeRejectCallback,
                    c.reject,
                    vec![],
                    (r.code as u32, r.message.clone()),
                ),
            };
            let mut cb = ExecCall::new(
                kind,
                Entry::Callback {
                    fun: entry.0,
                    env: entry.1,
                },
                limit,
                ExecKind::Query,
                method,
            );
            cb.caller = sender;
            cb.arg = arg;
            cb.reject = reject.clone();
            cb.can_respond = response.is_none();
            cb.prepay = false;
            cb.charge = false;
            cb.keep = Keep::Nested;
            cb.certificate = Some(cert.clone());
            let out = self.run_exec(canister, cb);
            if let Err(t) = out.result {
                last_trap = Some(t);
                if let Some((f, e)) = c.cleanup {
                    let mut cl = ExecCall::new(
                        Kind::Cleanup,
                        Entry::Callback { fun: f, env: e },
                        limit,
                        ExecKind::Cleanup,
                        method,
                    );
                    cl.caller = sender;
                    cl.reject = (reject.0, String::new());
                    cl.prepay = false;
                    cl.charge = false;
                    cl.keep = Keep::Nested;
                    let _ = self.run_exec(canister, cl);
                }
            } else {
                last_trap = None;
            }
            if response.is_none() {
                response = out.response;
            }
            pending.extend(out.calls);
        }
        let wt = self.wt.clone();
        if let Some(i) = self
            .canisters
            .get_mut(&canister)
            .and_then(|c| c.inst.as_mut())
        {
            i.rollback(&wt);
        }
        self.composite_stack.pop();
        match (response, last_trap) {
            (Some(Ok(b)), _) => Ok(b),
            (Some(Err(m)), _) => Err(Reject::canister(m)),
            (None, Some(t)) => Err(trap_reject(canister, &t, limit)),
            (None, None) => Err(Reject::ic(
                506,
                format!("Error from Canister {canister}: Canister did not reply to the call"),
            )),
        }
    }

    fn certificate(&self, canister: Principal) -> Vec<u8> {
        // An opaque stand-in for the certificate: tag, canister, certified data, time.
        let mut v = b"engine-certificate".to_vec();
        if let Some(c) = self.canisters.get(&canister) {
            v.extend_from_slice(canister.as_slice());
            v.extend_from_slice(&c.certified_data);
        }
        v.extend_from_slice(&self.round_time.to_be_bytes());
        v
    }

    /// One round: time +1 ns unless it was set, due delayed messages, deadlines, storage charges, heartbeats and
    /// timers, then messages (including those produced in this round) until the queue is empty or the budget is
    /// exhausted.
    pub fn tick(&mut self) {
        self.round += 1;
        if !self.time_changed {
            self.time += 1;
        }
        self.time_changed = false;
        self.round_time = self.time;
        // Delayed messages.
        let round = self.round;
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(r, _)| *r <= round);
        self.delayed = keep;
        for (_, m) in due {
            self.queue.push_back(m);
        }
        self.expire_deadlines();
        self.expire_stops();
        self.charge_storage();
        self.system_tasks();
        let mut n = 0;
        while let Some(m) = self.queue.pop_front() {
            match m {
                Msg::Req(r) => self.deliver_request(r),
                Msg::Resp(r) => self.deliver_response(r),
            }
            n += 1;
            if n >= self.cfg.limits.max_executions_per_round {
                break;
            }
        }
    }

    /// Run rounds until no message is queued or delayed (held messages do not count). Returns the rounds run.
    /// A global timer that is due but has not fired yet is not counted as work: `tick()` fires it (the harness's
    /// snapshots rely on this round count).
    pub fn run_until_idle(&mut self, max_rounds: u32) -> Result<u32, EngineError> {
        let mut rounds = 0;
        loop {
            if self.queue.is_empty() && self.delayed.is_empty() {
                return Ok(rounds);
            }
            if rounds >= max_rounds {
                return Err(EngineError::NotIdle {
                    rounds,
                    pending: self.queue.len() + self.delayed.len(),
                });
            }
            self.tick();
            rounds += 1;
        }
    }

    pub fn time_nanos(&self) -> u64 {
        self.time
    }
    /// Set the time (takes effect for executions from the next round on). Setting it into the past is ignored.
    pub fn set_time_nanos(&mut self, t: u64) {
        if t >= self.time {
            self.time = t;
            self.time_changed = true;
        }
    }
    pub fn advance_time(&mut self, d: std::time::Duration) {
        self.time = self.time.saturating_add(d.as_nanos() as u64);
        self.time_changed = true;
    }

    fn get(&self, c: Principal) -> Result<&Canister, Reject> {
        self.canisters
            .get(&c)
            .ok_or_else(|| Reject::ic(301, format!("Canister {c} not found")))
    }

    pub fn cycle_balance(&self, c: Principal) -> Result<u128, Reject> {
        Ok(self.get(c)?.cycles)
    }
    /// Mint cycles to a canister; returns the new balance.
    pub fn add_cycles(&mut self, c: Principal, n: u128) -> Result<u128, Reject> {
        self.get(c)?;
        let can = self.canisters.get_mut(&c).expect("checked");
        can.cycles += n;
        Ok(can.cycles)
    }
    /// Scenario-level fault: set a canister's balance (e.g. drain it).
    pub fn set_cycles(&mut self, c: Principal, n: u128) -> Result<(), Reject> {
        self.get(c)?;
        self.canisters.get_mut(&c).expect("checked").cycles = n;
        Ok(())
    }
    pub fn controllers(&self, c: Principal) -> Result<Vec<Principal>, Reject> {
        Ok(self.get(c)?.settings.controllers.clone())
    }
    pub fn module_hash(&self, c: Principal) -> Result<Option<[u8; 32]>, Reject> {
        Ok(self.get(c)?.module_hash)
    }
    pub fn canister_exists(&self, c: Principal) -> bool {
        self.canisters.contains_key(&c)
    }
    pub fn canister_ids(&self) -> Vec<Principal> {
        self.canisters.keys().copied().collect()
    }
    pub fn status(&self, c: Principal) -> Result<Status, Reject> {
        Ok(self.get(c)?.status)
    }
    pub fn canister_version(&self, c: Principal) -> Result<u64, Reject> {
        Ok(self.get(c)?.version)
    }
    pub fn global_timer(&self, c: Principal) -> Result<u64, Reject> {
        Ok(self.get(c)?.timer)
    }
    pub fn certified_data(&self, c: Principal) -> Result<Vec<u8>, Reject> {
        Ok(self.get(c)?.certified_data.clone())
    }
    pub fn stable_memory_bytes(&self, c: Principal) -> Result<u64, Reject> {
        Ok(self
            .get(c)?
            .inst
            .as_ref()
            .map(|i| i.ctx().stable.size_bytes())
            .unwrap_or(0))
    }
    /// Full stable memory contents (allocates its size).
    pub fn stable_memory(&self, c: Principal) -> Result<Vec<u8>, Reject> {
        Ok(self
            .get(c)?
            .inst
            .as_ref()
            .map(|i| i.ctx().stable.to_vec())
            .unwrap_or_default())
    }
    pub fn heap_bytes(&self, c: Principal) -> Result<u64, Reject> {
        Ok(self
            .get(c)?
            .inst
            .as_ref()
            .map(|i| i.heap_bytes())
            .unwrap_or(0))
    }
    /// Open call contexts of a canister (for tests of stop/upgrade behaviour).
    pub fn open_call_contexts(&self, c: Principal) -> Result<usize, Reject> {
        Ok(self.get(c)?.contexts.len())
    }
    /// Messages queued, delayed or held.
    pub fn pending_messages(&self) -> usize {
        self.queue.len() + self.delayed.len() + self.held.values().map(|v| v.len()).sum::<usize>()
    }

    pub fn canister_status(
        &mut self,
        sender: Principal,
        c: Principal,
    ) -> Result<CanisterStatus, Reject> {
        let can = self.get(c)?;
        if sender != c && !can.settings.controllers.contains(&sender) {
            return Err(not_controller(c, &can.settings.controllers, sender));
        }
        Ok(self.status_of(c))
    }

    fn status_of(&self, c: Principal) -> CanisterStatus {
        let can = &self.canisters[&c];
        let (heap, stable, globals, binary, custom) = match &can.inst {
            Some(i) => (
                i.heap_bytes(),
                i.ctx().stable.size_bytes(),
                i.globals_bytes(),
                i.compiled.wasm_size,
                i.compiled.info.custom_sections_size,
            ),
            None => (0, 0, 0, 0, 0),
        };
        let history = can.history.len() as u64 * 100;
        let chunks = can.chunks.len() as u64 * (1 << 20);
        let memory_size = heap + stable + globals + binary + custom + history + chunks;
        let per_day = self.fees.idle_per_second(can.footprint()) * 86_400;
        CanisterStatus {
            status: can.status,
            version: can.version,
            settings: can.settings.clone(),
            module_hash: can.module_hash,
            memory_size,
            wasm_memory_size: heap,
            stable_memory_size: stable,
            global_memory_size: globals,
            wasm_binary_size: binary,
            custom_sections_size: custom,
            canister_history_size: history,
            wasm_chunk_store_size: chunks,
            cycles: can.cycles,
            idle_cycles_burned_per_day: per_day,
        }
    }

    /// A management method whose only argument is the target canister, called by `sender`.
    fn host_mgmt_on(
        &mut self,
        sender: Principal,
        method: &str,
        c: Principal,
    ) -> Result<(), Reject> {
        self.host_mgmt(sender, method, enc(&CanisterIdRecord { canister_id: c }))
            .map(|_| ())
    }

    pub fn stop_canister(&mut self, sender: Principal, c: Principal) -> Result<(), Reject> {
        self.host_mgmt_on(sender, "stop_canister", c)
    }
    pub fn start_canister(&mut self, sender: Principal, c: Principal) -> Result<(), Reject> {
        self.host_mgmt_on(sender, "start_canister", c)
    }
    pub fn delete_canister(&mut self, sender: Principal, c: Principal) -> Result<(), Reject> {
        self.host_mgmt_on(sender, "delete_canister", c)
    }
    pub fn uninstall_code(&mut self, sender: Principal, c: Principal) -> Result<(), Reject> {
        let a = UninstallCodeArgs {
            canister_id: c,
            sender_canister_version: None,
        };
        self.host_mgmt(sender, "uninstall_code", enc(&a))
            .map(|_| ())
    }
    pub fn update_settings(
        &mut self,
        sender: Principal,
        c: Principal,
        settings: CanisterSettings,
    ) -> Result<(), Reject> {
        let a = UpdateSettingsArgs {
            canister_id: c,
            settings: to_wire(&settings),
            sender_canister_version: None,
        };
        self.host_mgmt(sender, "update_settings", enc(&a))
            .map(|_| ())
    }
    /// Upload a chunk to a canister's chunk store; returns its SHA-256.
    pub fn upload_chunk(
        &mut self,
        sender: Principal,
        c: Principal,
        chunk: &[u8],
    ) -> Result<[u8; 32], Reject> {
        let a = UploadChunkArgs {
            canister_id: c,
            chunk: ByteBuf::from(chunk.to_vec()),
        };
        let r = self.host_mgmt(sender, "upload_chunk", enc(&a))?;
        let r: UploadChunkResult =
            candid::decode_one(&r).map_err(|e| Reject::new(RejectCode::SysFatal, e.to_string()))?;
        let mut h = [0u8; 32];
        h.copy_from_slice(&r.hash);
        Ok(h)
    }

    pub fn canister_logs(&self, c: Principal) -> Vec<LogRecord> {
        self.canisters
            .get(&c)
            .map(|c| c.logs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    pub fn reset_metrics(&mut self) {
        self.metrics.reset();
    }
    /// Keep per-execution records (default) or only totals.
    pub fn set_keep_metric_records(&mut self, keep: bool) {
        self.metrics.keep_records = keep;
    }

    pub fn add_fault(&mut self, rule: FaultRule) -> FaultId {
        let id = self.next_fault;
        self.next_fault += 1;
        self.faults.insert(
            id,
            FaultState {
                rule,
                matches: 0,
                fired: 0,
            },
        );
        FaultId(id)
    }
    /// Stop matching the rule; messages it still holds are released.
    pub fn remove_fault(&mut self, id: FaultId) {
        self.faults.remove(&id.0);
        self.release_held(id);
    }
    /// Put the messages held by a rule back into the queue (in order); returns how many.
    pub fn release_held(&mut self, id: FaultId) -> usize {
        let msgs = self.held.remove(&id.0).unwrap_or_default();
        let n = msgs.len();
        self.queue.extend(msgs);
        n
    }
    /// How many messages a rule currently holds.
    pub fn held_count(&self, id: FaultId) -> usize {
        self.held.get(&id.0).map(|v| v.len()).unwrap_or(0)
    }

    fn host_mgmt(
        &mut self,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject> {
        let id = self.submit(sender, MGMT, method, arg, true)?;
        self.await_call(id)
    }

    // -----------------------------------------------------------------------------------------------------------
    // Execution

    fn run_exec(&mut self, cid: Principal, call: ExecCall) -> Outcome {
        let bytes_in = (call.arg.len() + call.reject.1.len()) as u64;
        let fees = self.fees.clone();
        let time = self.round_time;
        let max_payload = self.cfg.limits.max_inter_canister_payload;
        let max_inflight = self.cfg.limits.max_queue_per_pair as u32;
        let max_stable = self.cfg.limits.max_stable_memory_bytes;
        let Some(c) = self.canisters.get_mut(&cid) else {
            return Outcome::trap(HostTrap {
                code: 301,
                msg: "canister not found".into(),
            });
        };
        let footprint = c.footprint();
        let freezing = fees.freezing_limit(footprint, c.settings.freezing_threshold);
        let prepay = if call.prepay && call.charge {
            fees.prepay(call.fuel)
        } else {
            0
        };
        let base_balance = c.cycles.saturating_sub(prepay);
        let status = c.status_code();
        let Some(inst) = c.inst.as_mut() else {
            return Outcome::trap(HostTrap {
                code: 537,
                msg: "no wasm module".into(),
            });
        };
        {
            let ctx = inst.ctx_mut();
            ctx.reset(call.kind);
            ctx.caller.extend_from_slice(call.caller.as_slice());
            ctx.arg = call.arg;
            ctx.reject_code = call.reject.0;
            ctx.reject_msg = call.reject.1;
            ctx.refunded = call.refunded;
            ctx.cycles_available = call.available;
            ctx.can_respond = call.can_respond;
            ctx.deadline = call.deadline;
            ctx.method_name = call.method_name;
            ctx.cc_instructions = call.cc_instructions;
            ctx.balance = base_balance;
            ctx.freezing_limit = freezing;
            ctx.time = time;
            ctx.timer = c.timer;
            ctx.controllers.clone_from(&c.settings.controllers);
            ctx.version = c.version;
            ctx.status = status;
            ctx.env_vars = c
                .settings
                .environment_variables
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect();
            ctx.heap_limit_bytes = if c.settings.wasm_memory_limit == 0 {
                u64::MAX
            } else {
                c.settings.wasm_memory_limit
            };
            ctx.enforce_heap_limit =
                matches!(call.kind, Kind::Update | Kind::Init | Kind::PostUpgrade);
            ctx.certificate = call.certificate;
            ctx.max_payload = max_payload;
            ctx.inflight.clone_from(&c.inflight);
            ctx.max_inflight = max_inflight;
            ctx.max_stable_bytes = max_stable;
        }
        if call.keep != Keep::Nested {
            inst.checkpoint();
        }
        let (result, used) = inst.call(&call.entry, call.fuel);
        let ctx = inst.ctx_mut();
        let logs = std::mem::take(&mut ctx.logs);
        let mut response = ctx.response.take();
        let mut calls = std::mem::take(&mut ctx.calls);
        let balance = ctx.balance;
        let timer = ctx.timer;
        let certified = ctx.certified.take();
        let available_left = ctx.cycles_available;
        let accepted = ctx.accepted;
        let refund = if call.charge {
            fees.instructions(call.fuel.saturating_sub(used))
        } else {
            0
        };
        let ok = result.is_ok();
        match (ok, call.keep) {
            (_, Keep::Nested) => {
                if !ok {
                    calls.clear();
                    response = None;
                }
            }
            (true, Keep::Commit) | (true, Keep::Leave) => {
                if call.keep == Keep::Commit {
                    inst.commit();
                }
                c.cycles = balance + refund;
                c.timer = timer;
                if let Some(cd) = certified {
                    c.certified_data = cd;
                }
            }
            (true, Keep::Discard) => {
                inst.rollback(&self.wt);
                if call.charge {
                    c.cycles = base_balance + refund;
                }
                calls.clear();
            }
            (false, _) => {
                inst.rollback(&self.wt);
                if call.charge {
                    c.cycles = base_balance + refund;
                }
                calls.clear();
                response = None;
            }
        }
        if ok
            && matches!(
                call.kind,
                Kind::Update
                    | Kind::Init
                    | Kind::PostUpgrade
                    | Kind::ReplyCallback
                    | Kind::RejectCallback
                    | Kind::SystemTask
            )
        {
            let threshold = c.settings.wasm_memory_threshold;
            let limit = c.settings.wasm_memory_limit;
            let heap = c.inst.as_ref().map(|i| i.heap_bytes()).unwrap_or(0);
            let low = threshold > 0 && limit > 0 && limit.saturating_sub(heap) < threshold;
            c.low_memory = match (low, c.low_memory) {
                (false, _) => None,
                (true, None) => Some(false),
                (true, x) => x,
            };
        }
        let record_logs = !call.kind.non_replicated();
        if record_logs {
            for l in logs {
                push_log(c, l, time, self.cfg.log_capacity_bytes);
            }
            if let Err(t) = &result {
                let text = match t.code {
                    503 if t.msg.is_empty() => "[TRAP]: (no message)".to_string(),
                    _ => format!("[TRAP]: {}", t.msg),
                };
                push_log(c, text.into_bytes(), time, self.cfg.log_capacity_bytes);
            }
        }
        let bytes_sent = calls
            .iter()
            .map(|c| (c.method.len() + c.arg.len()) as u64)
            .sum::<u64>()
            + match &response {
                Some(Ok(b)) => b.len() as u64,
                Some(Err(m)) => m.len() as u64,
                None => 0,
            };
        self.metrics.record(ExecRecord {
            round: self.round,
            canister: cid,
            method: call.metric_method,
            kind: call.metric_kind,
            instructions: used,
            trapped: !ok,
            messages_sent: calls.len() as u64,
            bytes_sent,
            bytes_received: bytes_in,
        });
        Outcome {
            result,
            instructions: used,
            response,
            calls,
            available_left,
            accepted,
        }
    }

    fn respond(
        &mut self,
        origin: &ReqOrigin,
        caller: Principal,
        result: Result<Vec<u8>, Reject>,
        refund: u128,
    ) {
        match origin {
            ReqOrigin::Ingress(id) => {
                self.ingress.insert(*id, IngressState::Done(result));
            }
            ReqOrigin::Canister(cb) => {
                let result = match self.lost_replies.remove(cb) {
                    // The caller's deadline expires with nothing received: SYS_UNKNOWN then.
                    Some(false) => return,
                    Some(true) => Err(Reject::ic(
                        601,
                        "Call deadline has expired (injected lost reply).",
                    )),
                    None => result,
                };
                self.queue.push_back(Msg::Resp(Response {
                    receiver: caller,
                    callback: *cb,
                    result,
                    refund,
                    expired: None,
                }))
            }
        }
    }

    fn deliver_request(&mut self, req: Request) {
        if !req.exempt {
            if let Some((fid, action)) = self.match_fault(req.sender, req.receiver, &req.method) {
                self.apply_fault(fid, action, req);
                return;
            }
        }
        if req.receiver == MGMT {
            let origin = req.origin.clone();
            let sender = req.sender;
            match self.mgmt_request(&req) {
                MgmtResult::Reply(b, refund) => self.respond(&origin, sender, Ok(b), refund),
                MgmtResult::Reject(r, refund) => self.respond(&origin, sender, Err(r), refund),
                MgmtResult::Deferred => {}
            }
            return;
        }
        let rid = req.receiver;
        let Some(c) = self.canisters.get(&rid) else {
            let r = Reject::ic(301, format!("Canister {rid} not found"));
            self.respond(&req.origin, req.sender, Err(r), req.cycles);
            return;
        };
        let reject = |code: u32, msg: String| Some(Reject::ic(code, msg));
        let mut err = match c.status {
            Status::Stopping => reject(509, format!("Canister {rid} is stopping")),
            Status::Stopped => reject(508, format!("Canister {rid} is stopped")),
            Status::Running => None,
        };
        let mut export = String::new();
        let mut kind = Kind::Update;
        if err.is_none() {
            match &c.inst {
                None => {
                    err = reject(
                        537,
                        format!("Error from Canister {rid}: Attempted to execute a message, but the canister contains no Wasm module."),
                    )
                }
                Some(i) => {
                    let info = &i.compiled.info;
                    if info.update_methods.contains(&req.method) {
                        export = format!("canister_update {}", req.method);
                    } else if info.query_methods.contains(&req.method) {
                        export = format!("canister_query {}", req.method);
                        kind = Kind::ReplicatedQuery;
                    } else if info.composite_query_methods.contains(&req.method) {
                        err = reject(
                            527,
                            format!("Error from Canister {rid}: Composite query cannot be called in replicated mode"),
                        );
                    } else {
                        err = reject(536, format!("Error from Canister {rid}: Canister has no update method '{}'.", req.method));
                    }
                }
            }
        }
        let limit = self.cfg.limits.max_instructions_per_message;
        if err.is_none() {
            let liquid = c.cycles.saturating_sub(
                self.fees
                    .freezing_limit(c.footprint(), c.settings.freezing_threshold),
            );
            let need = self.fees.prepay(limit);
            if liquid < need {
                err = reject(
                    207,
                    format!(
                        "Canister {rid} is out of cycles: please top up the canister with at least {} additional cycles",
                        need - liquid
                    ),
                );
            }
        }
        if err.is_none() {
            if let ReqOrigin::Canister(_) = req.origin {
                let min = c.settings.minimum_incoming_canister_call_cycles;
                if req.sender != rid && req.cycles < min {
                    err = reject(
                        520,
                        format!(
                            "Canister {rid} requires at least {min} cycles attached to incoming calls, but only {} were attached",
                            req.cycles
                        ),
                    );
                }
            }
        }
        if let Some(r) = err {
            self.respond(&req.origin, req.sender, Err(r), req.cycles);
            return;
        }
        if let ReqOrigin::Ingress(_) = req.origin {
            let fee = self.fees.ingress_base
                + self.fees.ingress_byte * (req.method.len() + req.arg.len()) as u128;
            let c = self.canisters.get_mut(&rid).expect("exists");
            c.cycles = c.cycles.saturating_sub(fee);
        }
        let ctx_id = self.fresh_id();
        let cc = CallContext {
            origin: CtxOrigin::Request {
                origin: req.origin.clone(),
                caller: req.sender,
            },
            responded: false,
            available: req.cycles,
            outstanding: 0,
            instructions: 0,
            deadline: req.deadline,
            method: req.method.clone(),
        };
        self.canisters
            .get_mut(&rid)
            .expect("exists")
            .contexts
            .insert(ctx_id, cc);
        let mut call = ExecCall::new(
            kind,
            Entry::Export(export),
            limit,
            if kind == Kind::Update {
                ExecKind::Update
            } else {
                ExecKind::ReplicatedQuery
            },
            &req.method,
        );
        call.caller = req.sender;
        call.arg = req.arg;
        call.available = req.cycles;
        call.can_respond = true;
        call.deadline = req.deadline;
        if kind == Kind::ReplicatedQuery {
            call.keep = Keep::Discard;
        }
        let out = self.run_exec(rid, call);
        self.after_execution(rid, ctx_id, out);
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Commit the effects of an execution on its call context: enqueue calls, send the response, close the
    /// context when nothing can answer any more.
    fn after_execution(&mut self, cid: Principal, ctx_id: u64, out: Outcome) {
        let limit = self.cfg.limits.max_instructions_per_message;
        let mut new_calls = vec![];
        type Pending = (ReqOrigin, Principal, Result<Vec<u8>, Reject>, u128);
        let mut respond: Option<Pending> = None;
        let mut close = false;
        {
            let Some(c) = self.canisters.get_mut(&cid) else {
                return;
            };
            let Some(cc) = c.contexts.get_mut(&ctx_id) else {
                return;
            };
            cc.instructions += out.instructions;
            if out.result.is_ok() {
                cc.available = out.available_left;
            }
            for call in out.calls {
                let cb_id = {
                    self.next_id += 1;
                    self.next_id
                };
                *c.inflight.entry(call.callee).or_default() += 1;
                c.callbacks.insert(
                    cb_id,
                    Callback {
                        context: ctx_id,
                        reply: call.reply,
                        reject: call.reject,
                        cleanup: call.cleanup,
                        deadline: call.deadline,
                        callee: call.callee,
                        method: call.method.clone(),
                    },
                );
                cc.outstanding += 1;
                new_calls.push(Request {
                    sender: cid,
                    receiver: call.callee,
                    method: call.method,
                    arg: call.arg,
                    cycles: call.cycles,
                    origin: ReqOrigin::Canister(cb_id),
                    deadline: call.deadline,
                    exempt: false,
                    host: false,
                });
            }
            if let CtxOrigin::Request { origin, caller } = &cc.origin {
                if !cc.responded {
                    if let Some(resp) = out.response {
                        cc.responded = true;
                        let refund = std::mem::take(&mut cc.available);
                        let r = resp.map_err(Reject::canister);
                        respond = Some((origin.clone(), *caller, r, refund));
                    } else if cc.outstanding == 0 {
                        cc.responded = true;
                        let refund = std::mem::take(&mut cc.available);
                        let r = match &out.result {
                            Err(t) => trap_reject(cid, t, limit),
                            Ok(()) => Reject::ic(506, format!("Error from Canister {cid}: Canister did not produce a response")),
                        };
                        respond = Some((origin.clone(), *caller, Err(r), refund));
                    }
                }
            }
            if cc.outstanding == 0 && (cc.responded || matches!(cc.origin, CtxOrigin::System)) {
                close = true;
            }
            if close {
                c.contexts.remove(&ctx_id);
            }
        }
        for r in new_calls {
            self.queue.push_back(Msg::Req(r));
        }
        if let Some((origin, caller, r, refund)) = respond {
            self.respond(&origin, caller, r, refund);
        }
        if close {
            self.check_stopped(cid);
        }
    }

    fn check_stopped(&mut self, cid: Principal) {
        let Some(c) = self.canisters.get_mut(&cid) else {
            return;
        };
        if c.status == Status::Stopping && c.contexts.is_empty() {
            c.status = Status::Stopped;
            c.version += 1;
            let stops = std::mem::take(&mut c.stops);
            for (origin, caller, _) in stops {
                self.respond(&origin, caller, Ok(candid_empty()), 0);
            }
        }
    }

    fn deliver_response(&mut self, mut resp: Response) {
        let cid = resp.receiver;
        let fees = self.fees.clone();
        let limit = self.cfg.limits.max_instructions_per_message;
        let Some(c) = self.canisters.get_mut(&cid) else {
            return;
        };
        let cb = match resp.expired.take() {
            Some(cb) => cb,
            None => match c.callbacks.remove(&resp.callback) {
                Some(cb) => {
                    dec_inflight(&mut c.inflight, cb.callee);
                    cb
                }
                None => return, // expired earlier: the late response is dropped
            },
        };
        let payload_len = match &resp.result {
            Ok(b) => b.len(),
            Err(r) => r.message.len(),
        } as u128;
        c.cycles +=
            resp.refund + fees.byte * (fees.max_response_bytes as u128).saturating_sub(payload_len);
        // A callback that will not run is charged only the base fee of its prepayment.
        let unexecuted_refund = fees.instructions(limit);
        let Some(cc) = c.contexts.get(&cb.context) else {
            c.cycles += unexecuted_refund;
            return; // context deleted (uninstall): refunds credited, no callback runs
        };
        if c.inst.is_none() {
            c.cycles += unexecuted_refund;
            if let Some(cc) = c.contexts.get_mut(&cb.context) {
                cc.outstanding = cc.outstanding.saturating_sub(1);
            }
            return;
        }
        let (caller, can_respond, available, cc_instr, deadline) = match &cc.origin {
            CtxOrigin::Request { caller, .. } => (
                *caller,
                !cc.responded,
                cc.available,
                cc.instructions,
                cc.deadline,
            ),
            CtxOrigin::System => (MGMT, false, 0, cc.instructions, 0),
        };
        let _ = cc;
        let (kind, entry, arg, reject, mk) = match &resp.result {
            Ok(b) => (
                Kind::ReplyCallback,
                cb.reply,
                b.clone(),
                (0, String::new()),
                ExecKind::ReplyCallback,
            ),
            Err(r) => (
                Kind::RejectCallback,
                cb.reject,
                vec![],
                (r.code as u32, r.message.clone()),
                ExecKind::RejectCallback,
            ),
        };
        let mut call = ExecCall::new(
            kind,
            Entry::Callback {
                fun: entry.0,
                env: entry.1,
            },
            limit,
            mk,
            &cb.method,
        );
        call.caller = caller;
        call.arg = arg;
        call.reject = reject.clone();
        call.refunded = resp.refund;
        call.available = available;
        call.can_respond = can_respond;
        call.cc_instructions = cc_instr;
        call.deadline = deadline;
        call.prepay = false;
        let out = self.run_exec(cid, call);
        if out.result.is_err() {
            if let Some((f, e)) = cb.cleanup {
                let mut call = ExecCall::new(
                    Kind::Cleanup,
                    Entry::Callback { fun: f, env: e },
                    limit,
                    ExecKind::Cleanup,
                    &cb.method,
                );
                call.caller = caller;
                call.reject = (reject.0, String::new());
                call.prepay = false;
                // Runs on what is left of the callback's prepayment, which was already settled.
                call.charge = false;
                let _ = self.run_exec(cid, call);
            }
        }
        if let Some(cc) = self
            .canisters
            .get_mut(&cid)
            .and_then(|c| c.contexts.get_mut(&cb.context))
        {
            cc.outstanding = cc.outstanding.saturating_sub(1);
        }
        self.after_execution(cid, cb.context, out);
    }

    fn expire_deadlines(&mut self) {
        let now = self.round_time;
        let mut expired = vec![];
        for (cid, c) in self.canisters.iter_mut() {
            if c.callbacks.is_empty() {
                continue;
            }
            let ids: Vec<u64> = c
                .callbacks
                .iter()
                .filter(|(_, cb)| cb.deadline != 0 && cb.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let cb = c.callbacks.remove(&id).expect("listed");
                dec_inflight(&mut c.inflight, cb.callee);
                expired.push(Response {
                    receiver: *cid,
                    callback: id,
                    result: Err(Reject::ic(601, "Call deadline has expired.")),
                    refund: 0,
                    expired: Some(cb),
                });
            }
        }
        for r in expired {
            self.queue.push_back(Msg::Resp(r));
        }
    }

    /// Pending `stop_canister` calls are rejected after 5 minutes (IC0206); the canister stays Stopping.
    fn expire_stops(&mut self) {
        const STOP_TIMEOUT: u64 = 300_000_000_000;
        let now = self.round_time;
        let mut expired = vec![];
        for (cid, c) in self.canisters.iter_mut() {
            if c.stops.is_empty() {
                continue;
            }
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut c.stops)
                .into_iter()
                .partition(|(_, _, t)| now.saturating_sub(*t) >= STOP_TIMEOUT);
            c.stops = keep;
            for (o, caller, _) in old {
                expired.push((o, caller, *cid));
            }
        }
        for (o, caller, cid) in expired {
            self.respond(
                &o,
                caller,
                Err(Reject::ic(
                    206,
                    format!("Stop canister request timed out for canister {cid}."),
                )),
                0,
            );
        }
    }

    fn charge_storage(&mut self) {
        if !self.fees.charge_storage || self.fees.storage_gib_s == 0 {
            for c in self.canisters.values_mut() {
                c.last_charge = self.round_time;
            }
            return;
        }
        let now = self.round_time;
        let mut exhausted = vec![];
        for (cid, c) in self.canisters.iter_mut() {
            let elapsed = now.saturating_sub(c.last_charge);
            if elapsed < 1_000_000_000 {
                continue;
            }
            let fee = self.fees.idle_per_second(c.footprint()) * elapsed as u128 / 1_000_000_000;
            c.cycles = c.cycles.saturating_sub(fee);
            c.last_charge = now;
            if fee > 0 && c.cycles == 0 && c.inst.is_some() {
                exhausted.push(*cid);
            }
        }
        // Out of cycles: the canister is uninstalled (code and state dropped, contexts rejected, settings kept).
        for cid in exhausted {
            self.uninstall(cid, ChangeOrigin::FromUser(FromUser { user_id: MGMT }));
        }
    }

    fn system_tasks(&mut self) {
        let ids: Vec<Principal> = self.canisters.keys().copied().collect();
        let limit = self.cfg.limits.max_instructions_per_message;
        for cid in ids {
            let (heartbeat, timer_due, low_memory) = {
                let c = &self.canisters[&cid];
                let Some(i) = &c.inst else { continue };
                if c.status != Status::Running {
                    continue;
                }
                let liquid = c.cycles.saturating_sub(
                    self.fees
                        .freezing_limit(c.footprint(), c.settings.freezing_threshold),
                );
                if liquid < self.fees.prepay(limit) {
                    continue;
                }
                (
                    i.compiled.info.has_heartbeat,
                    i.compiled.info.has_global_timer && c.timer != 0 && self.round_time >= c.timer,
                    i.compiled.info.has_on_low_wasm_memory && c.low_memory == Some(false),
                )
            };
            if low_memory {
                if let Some(c) = self.canisters.get_mut(&cid) {
                    c.low_memory = Some(true);
                }
                self.run_task(cid, "canister_on_low_wasm_memory", ExecKind::LowMemory);
            }
            if heartbeat {
                self.run_task(cid, "canister_heartbeat", ExecKind::Heartbeat);
            }
            if timer_due {
                if let Some(c) = self.canisters.get_mut(&cid) {
                    c.timer = 0;
                }
                self.run_task(cid, "canister_global_timer", ExecKind::GlobalTimer);
            }
        }
    }

    fn run_task(&mut self, cid: Principal, export: &str, mk: ExecKind) {
        let ctx_id = self.fresh_id();
        let cc = CallContext {
            origin: CtxOrigin::System,
            responded: true,
            available: 0,
            outstanding: 0,
            instructions: 0,
            deadline: 0,
            method: export.to_string(),
        };
        self.canisters
            .get_mut(&cid)
            .expect("exists")
            .contexts
            .insert(ctx_id, cc);
        let call = ExecCall::new(
            Kind::SystemTask,
            Entry::Export(export.into()),
            self.cfg.limits.max_instructions_per_message,
            mk,
            export,
        );
        let out = self.run_exec(cid, call);
        self.after_execution(cid, ctx_id, out);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Faults

    fn match_fault(
        &mut self,
        sender: Principal,
        receiver: Principal,
        method: &str,
    ) -> Option<(u64, FaultAction)> {
        for (id, f) in self.faults.iter_mut() {
            let target = match &f.rule.target {
                FaultTarget::Canister(p) => *p == receiver,
                FaultTarget::Management => receiver == MGMT,
            };
            if !target
                || f.rule.caller.is_some_and(|c| c != sender)
                || f.rule.method.as_deref().is_some_and(|m| m != method)
            {
                continue;
            }
            f.matches += 1;
            let nth = f.rule.nth.unwrap_or(1);
            if f.matches >= nth && f.rule.times.is_none_or(|t| f.fired < t) {
                f.fired += 1;
                return Some((*id, f.rule.action.clone()));
            }
        }
        None
    }

    fn apply_fault(&mut self, fid: u64, action: FaultAction, mut req: Request) {
        match action {
            FaultAction::Reject { code, message } => {
                self.respond(
                    &req.origin,
                    req.sender,
                    Err(Reject::new(code, message)),
                    req.cycles,
                );
            }
            FaultAction::Trap { message } => {
                let t = HostTrap {
                    code: 503,
                    msg: message.clone(),
                };
                let time = self.round_time;
                let cap = self.cfg.log_capacity_bytes;
                if let Some(c) = self.canisters.get_mut(&req.receiver) {
                    push_log(c, format!("[TRAP]: {message}").into_bytes(), time, cap);
                }
                let r = trap_reject(req.receiver, &t, 0);
                self.respond(&req.origin, req.sender, Err(r), req.cycles);
            }
            FaultAction::Reply { bytes } => {
                self.respond(&req.origin, req.sender, Ok(bytes), req.cycles);
            }
            FaultAction::LoseReply => {
                if let ReqOrigin::Canister(cb) = req.origin {
                    self.lost_replies.insert(cb, req.deadline == 0);
                }
                req.exempt = true;
                self.deliver_request(req);
            }
            FaultAction::Hold => {
                req.exempt = true;
                self.held.entry(fid).or_default().push(Msg::Req(req));
            }
            FaultAction::DelayRounds(n) => {
                req.exempt = true;
                self.delayed.push((self.round + n as u64, Msg::Req(req)));
            }
            FaultAction::Timeout => {
                if req.deadline == 0 {
                    // Unbounded callers and ingress never see code 6 on the IC; the engine answers at once so that
                    // nothing waits forever.
                    self.respond(
                        &req.origin,
                        req.sender,
                        Err(Reject::ic(
                            601,
                            "Call deadline has expired (injected timeout).",
                        )),
                        0,
                    );
                }
                // Bounded-wait callers get SYS_UNKNOWN at their deadline (the request is lost).
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Management canister

    fn mgmt_query(
        &mut self,
        sender: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject> {
        match method {
            "fetch_canister_logs" => {
                let a: CanisterIdRecord = decode_arg(arg)?;
                let c = self.get(a.canister_id)?;
                let allowed = match &c.settings.log_visibility {
                    LogVisibility::Public => true,
                    LogVisibility::Controllers => c.settings.controllers.contains(&sender),
                    LogVisibility::AllowedViewers(v) => {
                        v.contains(&sender) || c.settings.controllers.contains(&sender)
                    }
                };
                if !allowed {
                    return Err(Reject::ic(
                        512,
                        format!("Caller {sender} is not allowed to query ic00 method fetch_canister_logs"),
                    ));
                }
                // The IC keeps log_memory_limit bytes (4 KiB by default), dropping the oldest records.
                let cap = c.settings.log_memory_limit as usize;
                let mut total = 0usize;
                let mut recs: Vec<CanisterLogRecord> = c
                    .logs
                    .iter()
                    .rev()
                    .take_while(|l| {
                        total += l.content.len();
                        total <= cap
                    })
                    .map(|l| CanisterLogRecord {
                        idx: l.idx,
                        timestamp_nanos: l.timestamp_nanos,
                        content: ByteBuf::from(l.content.clone()),
                    })
                    .collect();
                recs.reverse();
                Ok(enc(&FetchCanisterLogsResult {
                    canister_log_records: recs,
                }))
            }
            "canister_status" => {
                let a: CanisterIdRecord = decode_arg(arg)?;
                self.canister_status(sender, a.canister_id)?;
                Ok(enc(&self.status_wire(a.canister_id)))
            }
            _ => Err(Reject::ic(
                536,
                format!("Management canister has no query method '{method}'"),
            )),
        }
    }

    fn status_wire(&self, c: Principal) -> CanisterStatusResult {
        let s = self.status_of(c);
        let st = &s.settings;
        CanisterStatusResult {
            status: match s.status {
                Status::Running => StatusType::Running,
                Status::Stopping => StatusType::Stopping,
                Status::Stopped => StatusType::Stopped,
            },
            ready_for_migration: s.status == Status::Stopped,
            version: s.version,
            settings: WireDefiniteSettings {
                controllers: st.controllers.clone(),
                compute_allocation: Nat::from(st.compute_allocation),
                memory_allocation: Nat::from(st.memory_allocation),
                freezing_threshold: Nat::from(st.freezing_threshold),
                reserved_cycles_limit: Nat::from(st.reserved_cycles_limit),
                log_visibility: st.log_visibility.clone(),
                log_memory_limit: Nat::from(st.log_memory_limit),
                snapshot_visibility: LogVisibility::Controllers,
                status_visibility: LogVisibility::Controllers,
                wasm_memory_limit: Nat::from(st.wasm_memory_limit),
                wasm_memory_threshold: Nat::from(st.wasm_memory_threshold),
                minimum_incoming_canister_call_cycles: Nat::from(
                    st.minimum_incoming_canister_call_cycles,
                ),
                environment_variables: st.environment_variables.clone(),
            },
            module_hash: s.module_hash.map(|h| ByteBuf::from(h.to_vec())),
            memory_size: Nat::from(s.memory_size),
            memory_metrics: MemoryMetrics {
                wasm_memory_size: Nat::from(s.wasm_memory_size),
                stable_memory_size: Nat::from(s.stable_memory_size),
                global_memory_size: Nat::from(s.global_memory_size),
                wasm_binary_size: Nat::from(s.wasm_binary_size),
                custom_sections_size: Nat::from(s.custom_sections_size),
                canister_history_size: Nat::from(s.canister_history_size),
                wasm_chunk_store_size: Nat::from(s.wasm_chunk_store_size),
                snapshots_size: Nat::from(0u64),
                log_memory_store_size: Nat::from(0u64),
            },
            cycles: Nat::from(s.cycles),
            reserved_cycles: Nat::from(0u64),
            idle_cycles_burned_per_day: Nat::from(s.idle_cycles_burned_per_day),
            query_stats: QueryStats {
                num_calls_total: Nat::from(0u64),
                num_instructions_total: Nat::from(0u64),
                request_payload_bytes_total: Nat::from(0u64),
                response_payload_bytes_total: Nat::from(0u64),
            },
        }
    }

    fn check_controller(&self, target: Principal, sender: Principal) -> Result<(), Reject> {
        let c = self.get(target)?;
        if !c.settings.controllers.contains(&sender) {
            return Err(not_controller(target, &c.settings.controllers, sender));
        }
        Ok(())
    }

    fn mgmt_request(&mut self, req: &Request) -> MgmtResult {
        let from_canister = matches!(req.origin, ReqOrigin::Canister(_));
        let sender = req.sender;
        let cycles = req.cycles;
        let rej = |r: Reject| MgmtResult::Reject(r, cycles);
        let empty = |refund: u128| MgmtResult::Reply(candid_empty(), refund);
        if !from_canister && !INGRESS_MGMT_METHODS.contains(&req.method.as_str()) {
            return rej(Reject::ic(
                406,
                format!("Only canisters can call ic00 method {}", req.method),
            ));
        }
        let sender_version = if from_canister {
            self.canisters.get(&sender).map(|c| c.version)
        } else {
            None
        };
        let origin = if from_canister {
            ChangeOrigin::FromCanister(FromCanister {
                canister_id: sender,
                canister_version: sender_version,
            })
        } else {
            ChangeOrigin::FromUser(FromUser { user_id: sender })
        };
        macro_rules! arg {
            ($t:ty) => {
                match decode_arg::<$t>(&req.arg) {
                    Ok(a) => a,
                    Err(e) => return rej(e),
                }
            };
        }
        macro_rules! tryr {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return rej(e),
                }
            };
        }
        match req.method.as_str() {
            "create_canister" => {
                let a = arg!(CreateCanisterArgs);
                let fee = self.fees.creation;
                if cycles < fee {
                    return rej(Reject::ic(
                        403,
                        format!(
                            "Creating a canister requires a fee of {fee} that is deducted from the canister's initial balance but only {cycles} cycles were received with the create_canister request."
                        ),
                    ));
                }
                let settings =
                    tryr!(self.settings_from(a.settings.unwrap_or_default(), sender, None));
                let id = self.new_canister(settings, cycles - fee, origin);
                MgmtResult::Reply(enc(&CanisterIdResult { canister_id: id }), 0)
            }
            "provisional_create_canister_with_cycles" => {
                let a = arg!(ProvisionalCreateArgs);
                let amount = a
                    .amount
                    .as_ref()
                    .and_then(nat_u128)
                    .unwrap_or(DEFAULT_PROVISIONAL_CYCLES);
                let settings =
                    tryr!(self.settings_from(a.settings.unwrap_or_default(), sender, None));
                if let Some(id) = a.specified_id {
                    if self.canisters.contains_key(&id) {
                        return rej(Reject::ic(
                            205,
                            format!("Canister {id} is already installed."),
                        ));
                    }
                }
                let id = match a.specified_id {
                    Some(id) => {
                        self.insert_canister(id, settings, amount, origin);
                        id
                    }
                    None => self.new_canister(settings, amount, origin),
                };
                MgmtResult::Reply(enc(&CanisterIdResult { canister_id: id }), cycles)
            }
            "provisional_top_up_canister" => {
                let a = arg!(ProvisionalTopUpArgs);
                tryr!(self.get(a.canister_id));
                let n = nat_u128(&a.amount).unwrap_or(0);
                self.canisters
                    .get_mut(&a.canister_id)
                    .expect("exists")
                    .cycles += n;
                empty(cycles)
            }
            "deposit_cycles" => {
                let a = arg!(CanisterIdRecord);
                tryr!(self.get(a.canister_id));
                self.canisters
                    .get_mut(&a.canister_id)
                    .expect("exists")
                    .cycles += cycles;
                empty(0)
            }
            "raw_rand" => {
                self.rand_counter += 1;
                let mut h = Sha256::new();
                h.update(b"raw_rand");
                h.update(self.cfg.seed);
                h.update(self.rand_counter.to_be_bytes());
                let b: [u8; 32] = h.finalize().into();
                MgmtResult::Reply(enc(&ByteBuf::from(b.to_vec())), cycles)
            }
            "update_settings" => {
                let a = arg!(UpdateSettingsArgs);
                tryr!(self.check_controller(a.canister_id, sender));
                let cur = self.canisters[&a.canister_id].settings.clone();
                let heap = self.heap_bytes(a.canister_id).unwrap_or(0);
                let controllers_changed = a.settings.controllers.clone();
                let new = tryr!(self.settings_from(a.settings, sender, Some(cur)));
                if new.wasm_memory_limit != 0 && new.wasm_memory_limit < heap {
                    return rej(Reject::ic(
                        504,
                        format!(
                            "Canister {} has Wasm memory usage of {heap} bytes which is greater than the requested wasm_memory_limit {}",
                            a.canister_id, new.wasm_memory_limit
                        ),
                    ));
                }
                let time = self.round_time;
                let c = self.canisters.get_mut(&a.canister_id).expect("exists");
                c.settings = new;
                c.version += 1;
                if let Some(ctrl) = controllers_changed {
                    add_history(
                        c,
                        time,
                        origin,
                        ChangeDetails::ControllersChange(ControllersChangeRecord {
                            controllers: ctrl,
                        }),
                    );
                }
                empty(cycles)
            }
            "install_code" => {
                let a = arg!(InstallCodeArgs);
                match self.do_install(
                    sender,
                    a.canister_id,
                    a.mode,
                    &a.wasm_module,
                    a.arg.into_vec(),
                    origin,
                ) {
                    Ok(()) => empty(cycles),
                    Err(e) => rej(e),
                }
            }
            "install_chunked_code" => {
                let a = arg!(InstallChunkedCodeArgs);
                let store = a.store_canister.unwrap_or(a.target_canister);
                tryr!(self.check_controller(a.target_canister, sender));
                let sc = tryr!(self.get(store));
                if store != sender && !sc.settings.controllers.contains(&sender) {
                    return rej(not_controller(store, &sc.settings.controllers, sender));
                }
                let mut wasm = vec![];
                for h in &a.chunk_hashes_list {
                    let key: Option<[u8; 32]> = h.hash.as_slice().try_into().ok();
                    match key.and_then(|k| sc.chunks.get(&k)) {
                        Some(chunk) => wasm.extend_from_slice(chunk),
                        None => {
                            return rej(Reject::ic(
                                504,
                                format!("Error from Wasm chunk store: Chunk with hash {} not found in the chunk store.", hex(&h.hash)),
                            ))
                        }
                    }
                }
                let got: [u8; 32] = Sha256::digest(&wasm).into();
                if got.as_slice() != a.wasm_module_hash.as_slice() {
                    return rej(Reject::ic(
                        504,
                        format!(
                            "Error from Wasm chunk store: Wasm module hash {} does not match the expected hash {}.",
                            hex(&got),
                            hex(&a.wasm_module_hash)
                        ),
                    ));
                }
                match self.do_install(
                    sender,
                    a.target_canister,
                    a.mode,
                    &wasm,
                    a.arg.into_vec(),
                    origin,
                ) {
                    Ok(()) => empty(cycles),
                    Err(e) => rej(e),
                }
            }
            "upload_chunk" => {
                let a = arg!(UploadChunkArgs);
                let c = tryr!(self.get(a.canister_id));
                if sender != a.canister_id && !c.settings.controllers.contains(&sender) {
                    return rej(not_controller(
                        a.canister_id,
                        &c.settings.controllers,
                        sender,
                    ));
                }
                if a.chunk.len() > self.cfg.limits.max_chunk_bytes {
                    return rej(Reject::ic(
                        504,
                        format!(
                            "Error from Wasm chunk store: Wasm chunk size {} exceeds the maximum chunk size of {}.",
                            a.chunk.len(),
                            self.cfg.limits.max_chunk_bytes
                        ),
                    ));
                }
                let h: [u8; 32] = Sha256::digest(&a.chunk).into();
                if !c.chunks.contains_key(&h) && c.chunks.len() >= self.cfg.limits.max_chunks {
                    return rej(Reject::ic(
                        504,
                        "Error from Wasm chunk store: Wasm chunk store has already reached the maximum number of chunks.",
                    ));
                }
                self.canisters
                    .get_mut(&a.canister_id)
                    .expect("exists")
                    .chunks
                    .insert(h, a.chunk.into_vec());
                MgmtResult::Reply(
                    enc(&UploadChunkResult {
                        hash: ByteBuf::from(h.to_vec()),
                    }),
                    cycles,
                )
            }
            "clear_chunk_store" | "stored_chunks" => {
                let a = arg!(CanisterIdRecord);
                let c = tryr!(self.get(a.canister_id));
                if sender != a.canister_id && !c.settings.controllers.contains(&sender) {
                    return rej(not_controller(
                        a.canister_id,
                        &c.settings.controllers,
                        sender,
                    ));
                }
                if req.method == "stored_chunks" {
                    let v: Vec<ChunkHash> = c
                        .chunks
                        .keys()
                        .map(|h| ChunkHash {
                            hash: ByteBuf::from(h.to_vec()),
                        })
                        .collect();
                    return MgmtResult::Reply(enc(&v), cycles);
                }
                self.canisters
                    .get_mut(&a.canister_id)
                    .expect("exists")
                    .chunks
                    .clear();
                empty(cycles)
            }
            "uninstall_code" => {
                let a = arg!(UninstallCodeArgs);
                tryr!(self.check_controller(a.canister_id, sender));
                self.uninstall(a.canister_id, origin);
                empty(cycles)
            }
            "canister_status" => {
                let a = arg!(CanisterIdRecord);
                let c = tryr!(self.get(a.canister_id));
                if sender != a.canister_id && !c.settings.controllers.contains(&sender) {
                    return rej(not_controller(
                        a.canister_id,
                        &c.settings.controllers,
                        sender,
                    ));
                }
                MgmtResult::Reply(enc(&self.status_wire(a.canister_id)), cycles)
            }
            "canister_info" => {
                let a = arg!(CanisterInfoArgs);
                let c = tryr!(self.get(a.canister_id));
                let n = a.num_requested_changes.unwrap_or(0) as usize;
                let recent = c.history[c.history.len().saturating_sub(n)..].to_vec();
                let r = CanisterInfoResult {
                    total_num_changes: c.total_changes,
                    recent_changes: recent,
                    module_hash: c.module_hash.map(|h| ByteBuf::from(h.to_vec())),
                    controllers: c.settings.controllers.clone(),
                };
                MgmtResult::Reply(enc(&r), cycles)
            }
            "canister_metadata" => {
                let a = arg!(CanisterMetadataArgs);
                let c = tryr!(self.get(a.canister_id));
                let Some(i) = &c.inst else {
                    return rej(Reject::ic(
                        537,
                        format!("Canister {} has no Wasm module", a.canister_id),
                    ));
                };
                match i.compiled.info.metadata.get(&a.name) {
                    Some((public, v)) if *public || c.settings.controllers.contains(&sender) => {
                        MgmtResult::Reply(enc(&CanisterMetadataResult { value: ByteBuf::from(v.clone()) }), cycles)
                    }
                    Some(_) => rej(Reject::ic(
                        512,
                        format!("Custom section {} can only be requested by the controllers of the canister.", a.name),
                    )),
                    None => rej(Reject::ic(
                        301,
                        format!("Custom section {} not found in canister {}.", a.name, a.canister_id),
                    )),
                }
            }
            "stop_canister" => {
                let a = arg!(CanisterIdRecord);
                tryr!(self.check_controller(a.canister_id, sender));
                let c = self.canisters.get_mut(&a.canister_id).expect("exists");
                match c.status {
                    Status::Stopped => empty(cycles),
                    Status::Running | Status::Stopping => {
                        if c.status == Status::Running {
                            c.status = Status::Stopping;
                            c.version += 1;
                        }
                        c.stops.push((req.origin.clone(), sender, self.round_time));
                        self.check_stopped(a.canister_id);
                        MgmtResult::Deferred
                    }
                }
            }
            "start_canister" => {
                let a = arg!(CanisterIdRecord);
                tryr!(self.check_controller(a.canister_id, sender));
                let c = self.canisters.get_mut(&a.canister_id).expect("exists");
                let stops = std::mem::take(&mut c.stops);
                if c.status != Status::Running {
                    c.status = Status::Running;
                    c.version += 1;
                }
                let id = a.canister_id;
                for (o, caller, _) in stops {
                    self.respond(
                        &o,
                        caller,
                        Err(Reject::ic(
                            511,
                            format!("Canister {id} has been restarted."),
                        )),
                        0,
                    );
                }
                empty(cycles)
            }
            "delete_canister" => {
                let a = arg!(CanisterIdRecord);
                tryr!(self.check_controller(a.canister_id, sender));
                if a.canister_id == sender {
                    return rej(Reject::ic(
                        512,
                        format!("Canister {} cannot delete itself.", a.canister_id),
                    ));
                }
                if self.canisters[&a.canister_id].status != Status::Stopped {
                    return rej(Reject::ic(
                        510,
                        format!(
                            "Canister {} must be stopped before it is deleted.",
                            a.canister_id
                        ),
                    ));
                }
                self.canisters.remove(&a.canister_id);
                empty(cycles)
            }
            other => rej(Reject::ic(
                536,
                format!("Management canister has no method '{other}'"),
            )),
        }
    }

    fn settings_from(
        &self,
        w: WireSettings,
        sender: Principal,
        cur: Option<DefiniteSettings>,
    ) -> Result<DefiniteSettings, Reject> {
        let mut s = cur.unwrap_or_else(|| DefiniteSettings {
            controllers: vec![sender],
            ..Default::default()
        });
        let bad = |m: String| Reject::ic(504, m);
        if let Some(c) = w.controllers {
            if c.len() > self.cfg.limits.max_controllers {
                return Err(bad(format!(
                    "Invalid settings: Controllers length {} exceeds the maximum of {}.",
                    c.len(),
                    self.cfg.limits.max_controllers
                )));
            }
            s.controllers = c;
        }
        let n64 = |n: &Nat, what: &str| {
            nat_u64(n).ok_or_else(|| bad(format!("Invalid settings: {what} out of range")))
        };
        if let Some(v) = &w.compute_allocation {
            let v = n64(v, "compute_allocation")?;
            if v > 100 {
                return Err(bad(format!(
                    "Invalid settings: compute_allocation {v} must be between 0 and 100."
                )));
            }
            s.compute_allocation = v;
        }
        if let Some(v) = &w.memory_allocation {
            s.memory_allocation = n64(v, "memory_allocation")?;
        }
        if let Some(v) = &w.freezing_threshold {
            s.freezing_threshold = n64(v, "freezing_threshold")?;
        }
        if let Some(v) = &w.reserved_cycles_limit {
            s.reserved_cycles_limit =
                nat_u128(v).ok_or_else(|| bad("Invalid settings: reserved_cycles_limit".into()))?;
        }
        if let Some(v) = w.log_visibility {
            s.log_visibility = v;
        }
        if let Some(v) = &w.wasm_memory_limit {
            s.wasm_memory_limit = n64(v, "wasm_memory_limit")?;
        }
        if let Some(v) = &w.wasm_memory_threshold {
            s.wasm_memory_threshold = n64(v, "wasm_memory_threshold")?;
        }
        if let Some(v) = &w.minimum_incoming_canister_call_cycles {
            s.minimum_incoming_canister_call_cycles = nat_u128(v).ok_or_else(|| {
                bad("Invalid settings: minimum_incoming_canister_call_cycles".into())
            })?;
        }
        if let Some(v) = w.environment_variables {
            if v.len() > 20 || v.iter().any(|e| e.name.len() > 128 || e.value.len() > 128) {
                return Err(bad("Invalid settings: too many environment variables or a name/value longer than 128 bytes.".into()));
            }
            s.environment_variables = v;
        }
        Ok(s)
    }

    fn new_canister(
        &mut self,
        settings: DefiniteSettings,
        cycles: u128,
        origin: ChangeOrigin,
    ) -> Principal {
        let mut id = canister_id_at(self.next_canister);
        while self.canisters.contains_key(&id) {
            self.next_canister += 1;
            id = canister_id_at(self.next_canister);
        }
        self.next_canister += 1;
        self.insert_canister(id, settings, cycles, origin);
        id
    }

    fn insert_canister(
        &mut self,
        id: Principal,
        settings: DefiniteSettings,
        cycles: u128,
        origin: ChangeOrigin,
    ) {
        let controllers = settings.controllers.clone();
        let mut c = Canister {
            id,
            settings,
            cycles,
            status: Status::Running,
            version: 0,
            inst: None,
            module_hash: None,
            certified_data: vec![],
            timer: 0,
            logs: VecDeque::new(),
            log_bytes: 0,
            next_log: 0,
            chunks: BTreeMap::new(),
            history: vec![],
            total_changes: 0,
            contexts: BTreeMap::new(),
            callbacks: BTreeMap::new(),
            stops: vec![],
            last_charge: self.round_time,
            inflight: BTreeMap::new(),
            low_memory: None,
        };
        add_history(
            &mut c,
            self.round_time,
            origin,
            ChangeDetails::Creation(CreationRecord {
                controllers,
                environment_variables_hash: None,
            }),
        );
        self.canisters.insert(id, c);
    }

    fn uninstall(&mut self, cid: Principal, origin: ChangeOrigin) {
        let time = self.round_time;
        let c = self.canisters.get_mut(&cid).expect("exists");
        c.inst = None;
        c.module_hash = None;
        c.certified_data.clear();
        c.timer = 0;
        c.logs.clear();
        c.log_bytes = 0;
        c.chunks.clear();
        c.version += 1;
        add_history(c, time, origin, ChangeDetails::CodeUninstall);
        let contexts = std::mem::take(&mut c.contexts);
        let mut responses = vec![];
        for (_, cc) in contexts {
            if let CtxOrigin::Request { origin, caller } = cc.origin {
                if !cc.responded {
                    responses.push((origin, caller, cc.available));
                }
            }
        }
        for (o, caller, refund) in responses {
            self.respond(
                &o,
                caller,
                Err(Reject::ic(406, "Canister has been uninstalled.")),
                refund,
            );
        }
        self.check_stopped(cid);
    }

    fn new_ctx(&self, cid: Principal) -> Ctx {
        Ctx::new(
            cid,
            self.fees.clone(),
            self.root_key.clone(),
            self.subnet_id.as_slice().to_vec(),
        )
    }

    fn do_install(
        &mut self,
        sender: Principal,
        cid: Principal,
        mode: WireInstallMode,
        wasm_bytes: &[u8],
        arg: Vec<u8>,
        origin: ChangeOrigin,
    ) -> Result<(), Reject> {
        self.check_controller(cid, sender)?;
        let compiled = self.compile(wasm_bytes)?;
        let limit = self.cfg.limits.max_instructions_per_install;
        let hash: [u8; 32] = Sha256::digest(wasm_bytes).into();
        let time = self.round_time;
        {
            let c = &self.canisters[&cid];
            let freezing = self
                .fees
                .freezing_limit(c.footprint(), c.settings.freezing_threshold);
            let need = self.fees.prepay(limit);
            let liquid = c.cycles.saturating_sub(freezing);
            if liquid < need {
                return Err(Reject::ic(
                    207,
                    format!(
                        "Canister installation failed with `Canister {cid} is out of cycles: please top up the canister with at least {} additional cycles`.",
                        need - liquid
                    ),
                ));
            }
            match &mode {
                WireInstallMode::Install if c.inst.is_some() => {
                    return Err(Reject::ic(
                        514,
                        format!("Canister {cid} cannot be installed because the canister is not empty. Try installing with mode='reinstall' instead."),
                    ));
                }
                WireInstallMode::Upgrade(_) if c.inst.is_none() => {
                    return Err(Reject::ic(
                        537,
                        format!("Error from Canister {cid}: Attempted to execute a message, but the canister contains no Wasm module."),
                    ));
                }
                _ => {}
            }
            if let WireInstallMode::Upgrade(flags) = &mode {
                let keep = flags
                    .as_ref()
                    .and_then(|f| f.wasm_memory_persistence.clone())
                    == Some(WasmMemoryPersistence::Keep);
                let old_eop = c
                    .inst
                    .as_ref()
                    .is_some_and(|i| i.compiled.info.enhanced_orthogonal_persistence);
                if keep && !compiled.info.enhanced_orthogonal_persistence {
                    return Err(Reject::ic(504, "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option requires that the new canister module supports enhanced orthogonal persistence."));
                }
                if old_eop
                    && flags
                        .as_ref()
                        .and_then(|f| f.wasm_memory_persistence.clone())
                        .is_none()
                {
                    return Err(Reject::ic(504, "Missing upgrade option: Enhanced orthogonal persistence requires the `wasm_memory_persistence` upgrade option."));
                }
            }
        }
        let (deploy_mode, res) = match mode {
            WireInstallMode::Install | WireInstallMode::Reinstall => {
                let reinstall = matches!(mode, WireInstallMode::Reinstall);
                (
                    if reinstall {
                        CodeDeploymentMode::Reinstall
                    } else {
                        CodeDeploymentMode::Install
                    },
                    self.install_fresh(cid, sender, compiled, arg, reinstall),
                )
            }
            WireInstallMode::Upgrade(flags) => {
                let skip = flags.and_then(|f| f.skip_pre_upgrade).unwrap_or(false);
                (
                    CodeDeploymentMode::Upgrade,
                    self.upgrade(cid, sender, compiled, arg, skip),
                )
            }
        };
        res?;
        let c = self.canisters.get_mut(&cid).expect("exists");
        c.module_hash = Some(hash);
        add_history(
            c,
            time,
            origin,
            ChangeDetails::CodeDeployment(CodeDeploymentRecord {
                mode: deploy_mode,
                module_hash: ByteBuf::from(hash.to_vec()),
            }),
        );
        Ok(())
    }

    fn install_fresh(
        &mut self,
        cid: Principal,
        sender: Principal,
        compiled: Arc<Compiled>,
        arg: Vec<u8>,
        reinstall: bool,
    ) -> Result<(), Reject> {
        let limit = self.cfg.limits.max_instructions_per_install;
        let ctx = self.new_ctx(cid);
        let (inst, _) = match CanisterInstance::new(&self.wt, compiled.clone(), ctx, limit) {
            Ok(x) => x,
            Err((t, _, _)) => return Err(trap_reject(cid, &t, limit)),
        };
        let c = self.canisters.get_mut(&cid).expect("exists");
        let saved = (
            c.inst.replace(inst),
            c.timer,
            c.version,
            c.certified_data.clone(),
            c.next_log,
        );
        c.timer = 0;
        c.version += 1;
        if reinstall {
            c.certified_data.clear();
        }
        if compiled.info.has_init {
            let mut call = ExecCall::new(
                Kind::Init,
                Entry::Export("canister_init".into()),
                limit,
                ExecKind::Init,
                "canister_init",
            );
            call.caller = sender;
            call.arg = arg;
            let out = self.run_exec(cid, call);
            if let Err(t) = out.result {
                let c = self.canisters.get_mut(&cid).expect("exists");
                c.inst = saved.0;
                c.timer = saved.1;
                c.version = saved.2;
                c.certified_data = saved.3;
                return Err(trap_reject(cid, &t, limit));
            }
        }
        if reinstall {
            let c = self.canisters.get_mut(&cid).expect("exists");
            let first_new = saved.4;
            c.logs.retain(|l| l.idx >= first_new);
            c.log_bytes = c.logs.iter().map(|l| l.content.len()).sum();
        }
        Ok(())
    }

    fn upgrade(
        &mut self,
        cid: Principal,
        sender: Principal,
        compiled: Arc<Compiled>,
        arg: Vec<u8>,
        skip_pre: bool,
    ) -> Result<(), Reject> {
        let limit = self.cfg.limits.max_instructions_per_install;
        // What a failed upgrade restores besides the old instance: timer and certified data as they were before
        // pre_upgrade.
        let (orig_timer, orig_certified) = {
            let c = &self.canisters[&cid];
            (c.timer, c.certified_data.clone())
        };
        let has_pre = {
            let c = self.canisters.get_mut(&cid).expect("exists");
            let old = c.inst.as_mut().expect("checked non-empty");
            old.checkpoint();
            old.compiled.info.has_pre_upgrade && !skip_pre
        };
        if has_pre {
            let mut call = ExecCall::new(
                Kind::PreUpgrade,
                Entry::Export("canister_pre_upgrade".into()),
                limit,
                ExecKind::PreUpgrade,
                "canister_pre_upgrade",
            );
            call.caller = sender;
            call.keep = Keep::Leave;
            let out = self.run_exec(cid, call);
            if let Err(t) = out.result {
                return Err(trap_reject(cid, &t, limit));
            }
        }
        let mut ctx = self.new_ctx(cid);
        let wt = self.wt.clone();
        let c = self.canisters.get_mut(&cid).expect("exists");
        ctx.stable = std::mem::take(&mut c.inst.as_mut().expect("old").ctx_mut().stable);
        let (new, _) = match CanisterInstance::new(&wt, compiled.clone(), ctx, limit) {
            Ok(x) => x,
            Err((t, ctx, _)) => {
                let old = c.inst.as_mut().expect("old");
                old.ctx_mut().stable = ctx.stable;
                old.rollback(&wt);
                c.timer = orig_timer;
                c.certified_data = orig_certified;
                return Err(trap_reject(cid, &t, limit));
            }
        };
        let saved = (c.inst.replace(new), orig_timer, c.version);
        c.timer = 0;
        c.version += 1;
        if compiled.info.has_post_upgrade {
            let mut call = ExecCall::new(
                Kind::PostUpgrade,
                Entry::Export("canister_post_upgrade".into()),
                limit,
                ExecKind::PostUpgrade,
                "canister_post_upgrade",
            );
            call.caller = sender;
            call.arg = arg;
            let out = self.run_exec(cid, call);
            if let Err(t) = out.result {
                let c = self.canisters.get_mut(&cid).expect("exists");
                let mut failed = std::mem::replace(&mut c.inst, saved.0).expect("new");
                let old = c.inst.as_mut().expect("old");
                old.ctx_mut().stable = std::mem::take(&mut failed.ctx_mut().stable);
                old.rollback(&wt);
                c.timer = saved.1;
                c.version = saved.2;
                c.certified_data = orig_certified;
                return Err(trap_reject(cid, &t, limit));
            }
        } else {
            c.inst.as_mut().expect("new").commit();
        }
        Ok(())
    }
}

impl Outcome {
    fn trap(t: HostTrap) -> Outcome {
        Outcome {
            result: Err(t),
            instructions: 0,
            response: None,
            calls: vec![],
            available_left: 0,
            accepted: false,
        }
    }
}

/// One wasmtime engine and linker per process: compiled modules are shared by every `Engine` (the cache is
/// keyed by the module's SHA-256, so this cannot change behaviour, only save compile time).
fn shared_wasmtime() -> (wasmtime::Engine, wasmtime::Linker<Ctx>) {
    static SHARED: std::sync::OnceLock<(wasmtime::Engine, wasmtime::Linker<Ctx>)> =
        std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut wc = wasmtime::Config::new();
            wc.consume_fuel(true);
            wc.wasm_simd(true);
            wc.wasm_relaxed_simd(false);
            wc.wasm_multi_memory(false);
            wc.wasm_memory64(false);
            wc.wasm_tail_call(false);
            wc.wasm_gc(false);
            wc.wasm_bulk_memory(true);
            wc.cranelift_nan_canonicalization(true);
            let wt = wasmtime::Engine::new(&wc).expect("wasmtime configuration is valid");
            let mut linker = wasmtime::Linker::new(&wt);
            runtime::link(&mut linker).expect("ic0 imports link");
            (wt, linker)
        })
        .clone()
}

type ModuleCache = std::sync::Mutex<HashMap<[u8; 32], Arc<Compiled>>>;

/// Opt-in on-disk cache of compiled modules: set `IC_ENGINE_CACHE_DIR` to a directory the engine owns. Entries are
/// keyed by the module's SHA-256, the engine's rewrite version and wasmtime's compatibility hash, and carry a
/// SHA-256 of their own bytes; anything that does not match is recompiled.
fn disk_cache_path(wt: &wasmtime::Engine, key: &[u8; 32]) -> Option<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = std::env::var_os("IC_ENGINE_CACHE_DIR")?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wt.precompile_compatibility_hash().hash(&mut h);
    "engine-rewrite-v1".hash(&mut h);
    Some(std::path::PathBuf::from(dir).join(format!("{}-{:016x}.cwasm", hex(key), h.finish())))
}

fn disk_cache_load(wt: &wasmtime::Engine, key: &[u8; 32]) -> Option<wasmtime::Module> {
    let path = disk_cache_path(wt, key)?;
    let bytes = std::fs::read(&path).ok()?;
    if bytes.len() < 32 {
        return None;
    }
    let (sum, body) = bytes.split_at(32);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    // SAFETY: the bytes were produced by `Module::serialize` of this wasmtime version and configuration (the file
    // name carries the compatibility hash, wasmtime checks it again) and are intact (checksum above); the cache
    // directory is trusted by whoever set IC_ENGINE_CACHE_DIR.
    unsafe { wasmtime::Module::deserialize(wt, body) }.ok()
}

fn disk_cache_store(wt: &wasmtime::Engine, key: &[u8; 32], m: &wasmtime::Module) {
    let Some(path) = disk_cache_path(wt, key) else {
        return;
    };
    let Ok(body) = m.serialize() else { return };
    let mut bytes = Sha256::digest(&body).to_vec();
    bytes.extend_from_slice(&body);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

fn global_cache() -> &'static ModuleCache {
    static CACHE: std::sync::OnceLock<ModuleCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

const INGRESS_MGMT_METHODS: &[&str] = &[
    "provisional_create_canister_with_cycles",
    "provisional_top_up_canister",
    "install_code",
    "install_chunked_code",
    "upload_chunk",
    "clear_chunk_store",
    "stored_chunks",
    "uninstall_code",
    "update_settings",
    "canister_status",
    "stop_canister",
    "start_canister",
    "delete_canister",
];

const KNOWN_MGMT_METHODS: &[&str] = &[
    "create_canister",
    "raw_rand",
    "deposit_cycles",
    "canister_info",
    "canister_metadata",
];

fn decode_arg<T: candid::CandidType + for<'de> serde::Deserialize<'de>>(
    arg: &[u8],
) -> Result<T, Reject> {
    candid::decode_one(arg).map_err(|e| Reject::ic(408, format!("Error decoding candid: {e}")))
}

fn not_controller(c: Principal, controllers: &[Principal], sender: Principal) -> Reject {
    let list: Vec<String> = controllers.iter().map(|p| p.to_text()).collect();
    Reject::ic(
        512,
        format!(
            "Only the controllers of the canister {c} can control it.\nCanister's controllers: {}\nSender's ID: {sender}",
            list.join(" ")
        ),
    )
}

/// The reject a caller sees when the callee trapped.
pub(crate) fn trap_reject(cid: Principal, t: &HostTrap, limit: u64) -> Reject {
    match t.code {
        503 => {
            let msg = if t.msg.is_empty() { "(no message)".to_string() } else { t.msg.clone() };
            Reject::ic(503, format!("Error from Canister {cid}: Canister called `ic0.trap` with message: '{msg}'.\n{HELP_TRAPPED}"))
        }
        504 => Reject::ic(504, format!("Error from Canister {cid}: Canister violated contract: {}.", t.msg)),
        522 => Reject::ic(
            522,
            format!("Error from Canister {cid}: Canister exceeded the limit of {limit} instructions for single message execution."),
        ),
        539 => Reject::ic(539, format!("Error from Canister {cid}: Canister exceeded its current Wasm memory limit: {}.", t.msg)),
        537 | 301 => Reject::ic(t.code, format!("Error from Canister {cid}: {}", t.msg)),
        _ => Reject::ic(502, format!("Error from Canister {cid}: Canister trapped: {}.\n{HELP_TRAPPED}", t.msg)),
    }
}

fn dec_inflight(m: &mut BTreeMap<Principal, u32>, callee: Principal) {
    if let Some(n) = m.get_mut(&callee) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&callee);
        }
    }
}

fn push_log(c: &mut Canister, content: Vec<u8>, time: u64, cap: usize) {
    c.log_bytes += content.len();
    c.logs.push_back(LogRecord {
        idx: c.next_log,
        timestamp_nanos: time,
        content,
    });
    c.next_log += 1;
    if cap > 0 {
        while c.log_bytes > cap && c.logs.len() > 1 {
            if let Some(l) = c.logs.pop_front() {
                c.log_bytes -= l.content.len();
            }
        }
    }
}

fn add_history(c: &mut Canister, time: u64, origin: ChangeOrigin, details: ChangeDetails) {
    c.total_changes += 1;
    c.history.push(Change {
        timestamp_nanos: time,
        canister_version: c.version,
        origin,
        details,
    });
    if c.history.len() > 20 {
        c.history.remove(0);
    }
}

fn to_wire(s: &CanisterSettings) -> WireSettings {
    WireSettings {
        controllers: s.controllers.clone(),
        compute_allocation: s.compute_allocation.map(Nat::from),
        memory_allocation: s.memory_allocation.map(Nat::from),
        freezing_threshold: s.freezing_threshold.map(Nat::from),
        reserved_cycles_limit: s.reserved_cycles_limit.map(Nat::from),
        log_visibility: s.log_visibility.clone(),
        wasm_memory_limit: s.wasm_memory_limit.map(Nat::from),
        wasm_memory_threshold: s.wasm_memory_threshold.map(Nat::from),
        minimum_incoming_canister_call_cycles: s
            .minimum_incoming_canister_call_cycles
            .map(Nat::from),
        environment_variables: s.environment_variables.clone(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}
