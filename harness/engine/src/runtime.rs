//! The System API (`ic0` imports), the per-execution context, and one canister's wasmtime instance with
//! checkpoint / rollback of heap, globals and stable memory.

use crate::stable::{StableMemory, WASM_PAGE};
use crate::wasm::{self, ModuleInfo};
use candid::Principal;
use std::sync::Arc;
use wasmtime::{Caller, Global, Instance, InstancePre, Linker, Memory, Module, Store, Table, Val};

pub type WResult<T> = wasmtime::Result<T>;

/// Execution contexts of the System API (spec §1.1 availability codes).
pub mod k {
    pub const I: u32 = 1;
    pub const G: u32 = 2;
    pub const U: u32 = 4;
    pub const RQ: u32 = 8;
    pub const NRQ: u32 = 16;
    pub const RY: u32 = 32;
    pub const RT: u32 = 64;
    pub const C: u32 = 128;
    pub const T: u32 = 256;
    pub const F: u32 = 512;
    pub const S: u32 = 1024;
    pub const CQ: u32 = 2048;
    pub const CRY: u32 = 4096;
    pub const CRT: u32 = 8192;
    pub const ALL: u32 = I | G | U | RQ | NRQ | RY | RT | C | T | F | CQ | CRY | CRT;
    pub const ALL_S: u32 = ALL | S;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    ReplicatedQuery,
    NonReplicatedQuery,
    ReplyCallback,
    RejectCallback,
    Cleanup,
    SystemTask,
    InspectMessage,
    Start,
    CompositeQuery,
    CompositeReplyCallback,
    CompositeRejectCallback,
}

impl Kind {
    /// Non-replicated kinds (state discarded, nothing logged, `in_replicated_execution` = 0).
    pub fn non_replicated(self) -> bool {
        matches!(
            self,
            Kind::NonReplicatedQuery
                | Kind::InspectMessage
                | Kind::CompositeQuery
                | Kind::CompositeReplyCallback
                | Kind::CompositeRejectCallback
        )
    }
    pub fn bit(self) -> u32 {
        match self {
            Kind::Init | Kind::PostUpgrade => k::I,
            Kind::PreUpgrade => k::G,
            Kind::Update => k::U,
            Kind::ReplicatedQuery => k::RQ,
            Kind::NonReplicatedQuery => k::NRQ,
            Kind::ReplyCallback => k::RY,
            Kind::RejectCallback => k::RT,
            Kind::Cleanup => k::C,
            Kind::SystemTask => k::T,
            Kind::InspectMessage => k::F,
            Kind::Start => k::S,
            Kind::CompositeQuery => k::CQ,
            Kind::CompositeReplyCallback => k::CRY,
            Kind::CompositeRejectCallback => k::CRT,
        }
    }
    pub fn mode_name(self) -> &'static str {
        match self {
            Kind::Init => "init",
            Kind::PostUpgrade => "post_upgrade",
            Kind::PreUpgrade => "pre_upgrade",
            Kind::Update => "update",
            Kind::ReplicatedQuery => "replicated query",
            Kind::NonReplicatedQuery => "non-replicated query",
            Kind::ReplyCallback => "reply callback",
            Kind::RejectCallback => "reject callback",
            Kind::Cleanup => "cleanup",
            Kind::SystemTask => "system task",
            Kind::InspectMessage => "inspect message",
            Kind::Start => "start",
            Kind::CompositeQuery => "composite query",
            Kind::CompositeReplyCallback => "composite reply callback",
            Kind::CompositeRejectCallback => "composite reject callback",
        }
    }
}

/// A trap raised by the engine (not by wasm itself); `code` is the IC error code number (502, 503, 504, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTrap {
    pub code: u32,
    pub msg: String,
}
impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IC{:04}: {}", self.code, self.msg)
    }
}
impl std::error::Error for HostTrap {}

fn trap<T>(code: u32, msg: impl Into<String>) -> WResult<T> {
    Err(wasmtime::Error::new(HostTrap {
        code,
        msg: msg.into(),
    }))
}

fn violation<T>(msg: impl Into<String>) -> WResult<T> {
    trap(504, msg)
}

/// Fees scaled to the subnet size (spec §6.4).
#[derive(Clone, Debug, Default)]
pub struct Fees {
    pub creation: u128,
    pub exec_base: u128,
    pub ten_instructions: u128,
    pub call: u128,
    pub byte: u128,
    pub ingress_base: u128,
    pub ingress_byte: u128,
    pub storage_gib_s: u128,
    pub charge_storage: bool,
    pub max_instructions: u64,
    pub max_response_bytes: u64,
    pub subnet_size: u64,
}

impl Fees {
    pub fn from_config(f: &crate::FeeConfig, limits: &crate::Limits, subnet_size: u64) -> Fees {
        let s = |v: u128| v * subnet_size as u128 / 13;
        Fees {
            creation: s(f.canister_creation_fee),
            exec_base: s(f.update_message_execution_fee),
            ten_instructions: s(f.ten_update_instructions_execution_fee),
            call: s(f.xnet_call_fee),
            byte: s(f.xnet_byte_transmission_fee),
            ingress_base: s(f.ingress_message_reception_fee),
            ingress_byte: s(f.ingress_byte_reception_fee),
            storage_gib_s: s(f.gib_storage_per_second_fee),
            charge_storage: f.charge_storage,
            max_instructions: limits.max_instructions_per_message,
            max_response_bytes: limits.max_response_payload as u64,
            subnet_size,
        }
    }
    pub fn instructions(&self, n: u64) -> u128 {
        n as u128 * self.ten_instructions / 10
    }
    /// Prepayment for executing a message with `limit` instructions.
    pub fn prepay(&self, limit: u64) -> u128 {
        self.exec_base + self.instructions(limit)
    }
    pub fn response_transmission_prepay(&self) -> u128 {
        self.byte * self.max_response_bytes as u128
    }
    /// `ic0.cost_call`: everything `call_perform` withdraws besides attached cycles.
    pub fn cost_call(&self, method_len: u64, payload_len: u64) -> u128 {
        self.call
            + self.byte * (method_len as u128 + payload_len as u128)
            + self.response_transmission_prepay()
            + self.prepay(self.max_instructions)
    }
    pub fn idle_per_second(&self, memory_bytes: u64) -> u128 {
        self.storage_gib_s * memory_bytes as u128 / (1u128 << 30)
    }
    pub fn freezing_limit(&self, memory_bytes: u64, threshold_s: u64) -> u128 {
        self.idle_per_second(memory_bytes) * threshold_s as u128
    }
    pub fn http_request(&self, req: u64, max_res: u64) -> u128 {
        if self.exec_base == 0 {
            return 0;
        }
        let n = self.subnet_size as u128;
        (3_000_000 + 60_000 * n) * n + (400 * req as u128 + 800 * max_res as u128) * n
    }
}

/// A call being assembled between `call_new` and `call_perform`, or performed in this execution.
#[derive(Clone, Debug)]
pub struct OutCall {
    pub callee: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    pub cycles: u128,
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub timeout: Option<u32>,
    pub deadline: u64,
    pub prepaid: u128,
}

/// Per-canister store data: the context of the current execution plus stable memory.
pub struct Ctx {
    pub kind: Kind,
    pub mem: Option<Memory>,
    pub stable: StableMemory,
    pub self_id: Vec<u8>,
    pub caller: Vec<u8>,
    pub arg: Vec<u8>,
    pub reject_code: u32,
    pub reject_msg: String,
    pub method_name: String,
    pub accepted: bool,
    /// The call context still needs a response (and this kind may respond).
    pub can_respond: bool,
    pub reply_buf: Vec<u8>,
    pub response: Option<Result<Vec<u8>, String>>,
    pub cycles_available: u128,
    pub cycles_accepted: u128,
    pub refunded: u128,
    pub balance: u128,
    pub freezing_limit: u128,
    pub pending: Option<OutCall>,
    pub calls: Vec<OutCall>,
    pub timer: u64,
    pub certified: Option<Vec<u8>>,
    pub time: u64,
    pub deadline: u64,
    pub logs: Vec<Vec<u8>>,
    pub fuel_limit: u64,
    pub cc_instructions: u64,
    pub controllers: Vec<Principal>,
    pub version: u64,
    pub status: u32,
    pub subnet_id: Vec<u8>,
    pub env_vars: Vec<(String, String)>,
    pub fees: Arc<Fees>,
    pub heap_limit_bytes: u64,
    pub enforce_heap_limit: bool,
    pub heap_limit_hit: bool,
    pub max_stable_bytes: u64,
    pub max_payload: usize,
    pub root_key: Arc<Vec<u8>>,
    pub certificate: Option<Vec<u8>>,
    /// Outstanding calls per callee before this execution, and the per-pair capacity.
    pub inflight: std::collections::BTreeMap<Principal, u32>,
    pub max_inflight: u32,
}

impl Ctx {
    pub fn new(
        self_id: Principal,
        fees: Arc<Fees>,
        root_key: Arc<Vec<u8>>,
        subnet_id: Vec<u8>,
    ) -> Ctx {
        Ctx {
            kind: Kind::Start,
            mem: None,
            stable: StableMemory::new(),
            self_id: self_id.as_slice().to_vec(),
            caller: vec![],
            arg: vec![],
            reject_code: 0,
            reject_msg: String::new(),
            method_name: String::new(),
            accepted: false,
            can_respond: false,
            reply_buf: vec![],
            response: None,
            cycles_available: 0,
            cycles_accepted: 0,
            refunded: 0,
            balance: 0,
            freezing_limit: 0,
            pending: None,
            calls: vec![],
            timer: 0,
            certified: None,
            time: 0,
            deadline: 0,
            logs: vec![],
            fuel_limit: 0,
            cc_instructions: 0,
            controllers: vec![],
            version: 0,
            status: 1,
            subnet_id,
            env_vars: vec![],
            fees,
            heap_limit_bytes: u64::MAX,
            enforce_heap_limit: false,
            heap_limit_hit: false,
            max_stable_bytes: 500 << 30,
            max_payload: 10 << 20,
            root_key,
            certificate: None,
            inflight: Default::default(),
            max_inflight: 500,
        }
    }

    /// Reset the per-execution fields.
    pub fn reset(&mut self, kind: Kind) {
        self.kind = kind;
        self.caller.clear();
        self.arg.clear();
        self.reject_code = 0;
        self.reject_msg.clear();
        self.method_name.clear();
        self.accepted = false;
        self.can_respond = false;
        self.reply_buf.clear();
        self.response = None;
        self.cycles_available = 0;
        self.cycles_accepted = 0;
        self.refunded = 0;
        self.pending = None;
        self.calls.clear();
        self.certified = None;
        self.deadline = 0;
        self.logs.clear();
        self.cc_instructions = 0;
        self.heap_limit_hit = false;
        self.certificate = None;
    }

    fn check(&self, name: &str, allowed: u32) -> WResult<()> {
        if self.kind.bit() & allowed == 0 {
            return violation(format!(
                "\"ic0_{name}\" cannot be executed in {} mode",
                self.kind.mode_name()
            ));
        }
        Ok(())
    }

    fn liquid(&self) -> u128 {
        self.balance.saturating_sub(self.freezing_limit)
    }
}

impl wasmtime::ResourceLimiter for Ctx {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> WResult<bool> {
        if maximum.is_some_and(|m| desired > m) || desired as u64 > 4 << 30 {
            return Ok(false);
        }
        if self.enforce_heap_limit && desired as u64 > self.heap_limit_bytes {
            self.heap_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> WResult<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Memory helpers

fn memory(c: &Caller<'_, Ctx>) -> WResult<Memory> {
    match c.data().mem {
        Some(m) => Ok(m),
        None => trap(502, "the canister has no memory"),
    }
}

fn read_mem(c: &mut Caller<'_, Ctx>, src: u32, size: u32) -> WResult<Vec<u8>> {
    let m = memory(c)?;
    let data = m.data(&*c);
    let (s, n) = (src as usize, size as usize);
    match s.checked_add(n) {
        Some(end) if end <= data.len() => Ok(data[s..end].to_vec()),
        _ => trap(502, format!("heap out of bounds: reading {n} bytes at {s}")),
    }
}

fn write_mem(c: &mut Caller<'_, Ctx>, dst: u32, bytes: &[u8]) -> WResult<()> {
    let m = memory(c)?;
    let data = m.data_mut(&mut *c);
    let d = dst as usize;
    match d.checked_add(bytes.len()) {
        Some(end) if end <= data.len() => {
            data[d..end].copy_from_slice(bytes);
            Ok(())
        }
        _ => trap(
            502,
            format!("heap out of bounds: writing {} bytes at {d}", bytes.len()),
        ),
    }
}

/// `*_copy(dst, off, size)` of a blob held in the context.
fn copy_out(
    c: &mut Caller<'_, Ctx>,
    name: &str,
    dst: u32,
    off: u32,
    size: u32,
    f: impl for<'a> Fn(&'a Ctx) -> &'a [u8],
) -> WResult<()> {
    let m = memory(c)?;
    let (data, ctx) = m.data_and_store_mut(&mut *c);
    let src = f(ctx);
    let (d, o, n) = (dst as usize, off as usize, size as usize);
    if o.checked_add(n).is_none_or(|e| e > src.len()) {
        return violation(format!(
            "ic0.{name} src={o} size={n} out of bounds: the blob has {} bytes",
            src.len()
        ));
    }
    if d.checked_add(n).is_none_or(|e| e > data.len()) {
        return violation(format!(
            "ic0.{name} dst={d} size={n} out of bounds of the heap ({} bytes)",
            data.len()
        ));
    }
    data[d..d + n].copy_from_slice(&src[o..o + n]);
    Ok(())
}

fn u128_of(hi: i64, lo: i64) -> u128 {
    ((hi as u64 as u128) << 64) | lo as u64 as u128
}

fn write_u128(c: &mut Caller<'_, Ctx>, dst: u32, v: u128) -> WResult<()> {
    write_mem(c, dst, &v.to_le_bytes())
}

fn principal_of(bytes: &[u8]) -> Option<Principal> {
    Principal::try_from_slice(bytes).ok()
}

fn cost_key(
    c: &mut Caller<'_, Ctx>,
    src: u32,
    size: u32,
    curve: u32,
    max_curve: u32,
    dst: u32,
) -> WResult<i32> {
    let name = read_mem(c, src, size)?;
    if curve > max_curve {
        return Ok(1);
    }
    let fee: u128 = match name.as_slice() {
        b"key_1" => 26_153_846_153,
        b"test_key_1" | b"dfx_test_key" => 10_000_000_000,
        _ => return Ok(2),
    };
    let fee = if c.data().fees.exec_base == 0 { 0 } else { fee };
    write_u128(c, dst, fee)?;
    Ok(0)
}

// ---------------------------------------------------------------------------------------------------------------
// Linking

/// Define every `ic0` import of `wasm::IC0_IMPORTS`.
pub fn link(linker: &mut Linker<Ctx>) -> WResult<()> {
    use k::*;
    const ARG: u32 = I | U | RQ | NRQ | CQ | RY | CRY | F;
    const RESP: u32 = U | RQ | NRQ | CQ | RY | RT | CRY | CRT;
    const CALLS: u32 = U | CQ | RY | RT | CRY | CRT | T;
    const CALLER_INFO: u32 = U | RQ | NRQ | CQ | RY | RT | CRY | CRT | C | F;
    let l = linker;

    l.func_wrap(
        "ic0",
        "msg_arg_data_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("msg_arg_data_size", ARG)?;
            Ok(c.data().arg.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_arg_data_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("msg_arg_data_copy", ARG)?;
            copy_out(
                &mut c,
                "msg_arg_data_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| &x.arg,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_caller_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("msg_caller_size", ALL)?;
            Ok(c.data().caller.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_caller_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("msg_caller_copy", ALL)?;
            copy_out(
                &mut c,
                "msg_caller_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| &x.caller,
            )
        },
    )?;
    for (size_name, copy_name) in [
        ("msg_caller_info_data_size", "msg_caller_info_data_copy"),
        ("msg_caller_info_signer_size", "msg_caller_info_signer_copy"),
    ] {
        l.func_wrap(
            "ic0",
            size_name,
            move |c: Caller<'_, Ctx>| -> WResult<i32> {
                c.data().check(size_name, CALLER_INFO)?;
                Ok(0)
            },
        )?;
        l.func_wrap(
            "ic0",
            copy_name,
            move |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
                c.data().check(copy_name, CALLER_INFO)?;
                copy_out(
                    &mut c,
                    copy_name,
                    dst as u32,
                    off as u32,
                    size as u32,
                    |_| &[],
                )
            },
        )?;
    }
    l.func_wrap(
        "ic0",
        "msg_reject_code",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("msg_reject_code", RY | RT | CRY | CRT | C)?;
            Ok(c.data().reject_code as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("msg_reject_msg_size", RT | CRT)?;
            Ok(c.data().reject_msg.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("msg_reject_msg_copy", RT | CRT)?;
            copy_out(
                &mut c,
                "msg_reject_msg_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| x.reject_msg.as_bytes(),
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_deadline",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data()
                .check("msg_deadline", U | RQ | NRQ | CQ | RY | RT | CRY | CRT)?;
            Ok(c.data().deadline as i64)
        },
    )?;
    l.func_wrap("ic0", "msg_reply_data_append", |mut c: Caller<'_, Ctx>, src: i32, size: i32| {
        c.data().check("msg_reply_data_append", RESP)?;
        if !c.data().can_respond {
            return violation("ic0.msg_reply_data_append: the call is already replied");
        }
        let limit = if c.data().kind.non_replicated() { 3 << 20 } else { 2 << 20 };
        if c.data().reply_buf.len() + size as u32 as usize > limit {
            return violation(format!(
                "ic0.msg_reply_data_append: application payload size ({}) cannot be larger than {limit}.",
                c.data().reply_buf.len() + size as u32 as usize
            ));
        }
        let b = read_mem(&mut c, src as u32, size as u32)?;
        c.data_mut().reply_buf.extend_from_slice(&b);
        Ok(())
    })?;
    l.func_wrap("ic0", "msg_reply", |mut c: Caller<'_, Ctx>| {
        c.data().check("msg_reply", RESP)?;
        let d = c.data_mut();
        if !d.can_respond {
            return violation("ic0.msg_reply: the call is already replied");
        }
        d.can_respond = false;
        d.response = Some(Ok(std::mem::take(&mut d.reply_buf)));
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| {
            c.data().check("msg_reject", RESP)?;
            if !c.data().can_respond {
                return violation("ic0.msg_reject: the call is already replied");
            }
            let b = read_mem(&mut c, src as u32, size as u32)?;
            let Ok(s) = String::from_utf8(b) else {
                return violation("ic0.msg_reject: invalid UTF-8 string provided");
            };
            let d = c.data_mut();
            d.can_respond = false;
            d.reply_buf.clear();
            d.response = Some(Err(s));
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_available128",
        |mut c: Caller<'_, Ctx>, dst: i32| {
            c.data()
                .check("msg_cycles_available128", U | RQ | RY | RT)?;
            let v = c.data().cycles_available;
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded128",
        |mut c: Caller<'_, Ctx>, dst: i32| {
            c.data().check("msg_cycles_refunded128", RY | RT)?;
            let v = c.data().refunded;
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept128",
        |mut c: Caller<'_, Ctx>, hi: i64, lo: i64, dst: i32| {
            c.data().check("msg_cycles_accept128", U | RQ | RY | RT)?;
            let d = c.data_mut();
            let amount = u128_of(hi, lo).min(d.cycles_available);
            d.cycles_available -= amount;
            d.cycles_accepted += amount;
            d.balance += amount;
            write_u128(&mut c, dst as u32, amount)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cycles_burn128",
        |mut c: Caller<'_, Ctx>, hi: i64, lo: i64, dst: i32| {
            c.data()
                .check("cycles_burn128", I | G | U | RQ | RY | RT | C | T)?;
            let d = c.data_mut();
            let amount = u128_of(hi, lo).min(d.liquid());
            d.balance -= amount;
            write_u128(&mut c, dst as u32, amount)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_self_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("canister_self_size", ALL)?;
            Ok(c.data().self_id.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_self_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("canister_self_copy", ALL)?;
            copy_out(
                &mut c,
                "canister_self_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| &x.self_id,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_cycle_balance128",
        |mut c: Caller<'_, Ctx>, dst: i32| {
            c.data().check("canister_cycle_balance128", ALL)?;
            let v = c.data().balance;
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_liquid_cycle_balance128",
        |mut c: Caller<'_, Ctx>, dst: i32| {
            c.data().check("canister_liquid_cycle_balance128", ALL)?;
            let v = c.data().liquid();
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_status",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("canister_status", ALL)?;
            Ok(c.data().status as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_version",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data().check("canister_version", ALL)?;
            Ok(c.data().version as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "subnet_self_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("subnet_self_size", ALL)?;
            Ok(c.data().subnet_id.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "subnet_self_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("subnet_self_copy", ALL)?;
            copy_out(
                &mut c,
                "subnet_self_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| &x.subnet_id,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "subnet_self_node_count",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("subnet_self_node_count", ALL)?;
            Ok(c.data().fees.subnet_size as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_method_name_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("msg_method_name_size", F)?;
            Ok(c.data().method_name.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_method_name_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("msg_method_name_copy", F)?;
            copy_out(
                &mut c,
                "msg_method_name_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| x.method_name.as_bytes(),
            )
        },
    )?;
    l.func_wrap("ic0", "accept_message", |mut c: Caller<'_, Ctx>| {
        c.data().check("accept_message", F)?;
        if c.data().accepted {
            return violation("ic0.accept_message: the function was already called.");
        }
        c.data_mut().accepted = true;
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "call_new",
        |mut c: Caller<'_, Ctx>,
         csrc: i32,
         csize: i32,
         nsrc: i32,
         nsize: i32,
         rf: i32,
         re: i32,
         jf: i32,
         je: i32| {
            c.data().check("call_new", CALLS)?;
            if nsize as u32 > 20_000 {
                return violation(format!(
                    "ic0.call_new: method name length {} exceeds the maximum of 20000",
                    nsize as u32
                ));
            }
            let callee = read_mem(&mut c, csrc as u32, csize as u32)?;
            let name = read_mem(&mut c, nsrc as u32, nsize as u32)?;
            let Some(callee) = principal_of(&callee) else {
                return violation("ic0.call_new: invalid callee principal");
            };
            let Ok(method) = String::from_utf8(name) else {
                return violation("ic0.call_new: method name is not valid UTF-8");
            };
            let d = c.data_mut();
            if let Some(old) = d.pending.take() {
                d.balance += old.cycles;
            }
            d.pending = Some(OutCall {
                callee,
                method,
                arg: vec![],
                cycles: 0,
                reply: (rf as u32, re as u32),
                reject: (jf as u32, je as u32),
                cleanup: None,
                timeout: None,
                deadline: 0,
                prepaid: 0,
            });
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_on_cleanup",
        |mut c: Caller<'_, Ctx>, f: i32, e: i32| {
            c.data().check("call_on_cleanup", CALLS)?;
            let Some(p) = c.data_mut().pending.as_mut() else {
                return violation("ic0.call_on_cleanup: no call is in progress");
            };
            if p.cleanup.is_some() {
                return violation("ic0.call_on_cleanup: the cleanup closure has already been set");
            }
            p.cleanup = Some((f as u32, e as u32));
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_data_append",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| {
            c.data().check("call_data_append", CALLS)?;
            if c.data().pending.is_none() {
                return violation("ic0.call_data_append: no call is in progress");
            }
            let b = read_mem(&mut c, src as u32, size as u32)?;
            if let Some(p) = c.data_mut().pending.as_mut() {
                p.arg.extend_from_slice(&b);
            }
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_with_best_effort_response",
        |mut c: Caller<'_, Ctx>, t: i32| {
            c.data().check("call_with_best_effort_response", CALLS)?;
            let Some(p) = c.data_mut().pending.as_mut() else {
                return violation("ic0.call_with_best_effort_response: no call is in progress");
            };
            if p.timeout.is_some() {
                return violation("ic0.call_with_best_effort_response: timeout already set");
            }
            p.timeout = Some((t as u32).min(300));
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_cycles_add128",
        |mut c: Caller<'_, Ctx>, hi: i64, lo: i64| {
            c.data().check("call_cycles_add128", U | RY | RT | T)?;
            add_call_cycles(&mut c, u128_of(hi, lo), "call_cycles_add128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_cycles_add",
        |mut c: Caller<'_, Ctx>, amount: i64| {
            c.data().check("call_cycles_add", U | RY | RT | T)?;
            add_call_cycles(&mut c, amount as u64 as u128, "call_cycles_add")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_perform",
        |mut c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("call_perform", CALLS)?;
            let d = c.data_mut();
            let Some(mut p) = d.pending.take() else {
                return violation("ic0.call_perform: no call is in progress");
            };
            let queued = d.inflight.get(&p.callee).copied().unwrap_or(0) as usize
                + d.calls.iter().filter(|c| c.callee == p.callee).count();
            if p.arg.len() > d.max_payload || queued >= d.max_inflight as usize {
                d.balance += p.cycles;
                return Ok(2);
            }
            let fee = d.fees.cost_call(p.method.len() as u64, p.arg.len() as u64);
            if d.balance < fee || d.balance - fee < d.freezing_limit {
                d.balance += p.cycles;
                return Ok(2);
            }
            d.balance -= fee;
            p.prepaid = fee;
            if let Some(t) = p.timeout {
                p.deadline = d.time + t as u64 * 1_000_000_000;
            }
            d.calls.push(p);
            Ok(0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_size",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data().check("stable64_size", ALL_S)?;
            Ok(c.data().stable.size_pages() as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_grow",
        |mut c: Caller<'_, Ctx>, n: i64| -> WResult<i64> {
            c.data().check("stable64_grow", ALL_S)?;
            let d = c.data_mut();
            let max = d.max_stable_bytes;
            Ok(d.stable.grow(n as u64, max).map(|o| o as i64).unwrap_or(-1))
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_write",
        |mut c: Caller<'_, Ctx>, off: i64, src: i64, size: i64| {
            c.data().check("stable64_write", ALL_S)?;
            stable_write(&mut c, off as u64, src as u64, size as u64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_read",
        |mut c: Caller<'_, Ctx>, dst: i64, off: i64, size: i64| {
            c.data().check("stable64_read", ALL_S)?;
            stable_read(&mut c, dst as u64, off as u64, size as u64)
        },
    )?;
    l.func_wrap("ic0", "stable_size", |c: Caller<'_, Ctx>| -> WResult<i32> {
        c.data().check("stable_size", ALL_S)?;
        let p = c.data().stable.size_pages();
        if p > 65_536 {
            return trap(
                502,
                "32 bit stable memory api used on a memory larger than 4GB",
            );
        }
        Ok(p as i32)
    })?;
    l.func_wrap(
        "ic0",
        "stable_grow",
        |mut c: Caller<'_, Ctx>, n: i32| -> WResult<i32> {
            c.data().check("stable_grow", ALL_S)?;
            let d = c.data_mut();
            let max = d.max_stable_bytes.min(4 << 30);
            if d.stable.size_pages() > 65_536 {
                return trap(
                    502,
                    "32 bit stable memory api used on a memory larger than 4GB",
                );
            }
            Ok(d.stable
                .grow(n as u32 as u64, max)
                .map(|o| o as i32)
                .unwrap_or(-1))
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_write",
        |mut c: Caller<'_, Ctx>, off: i32, src: i32, size: i32| {
            c.data().check("stable_write", ALL_S)?;
            stable_write(
                &mut c,
                off as u32 as u64,
                src as u32 as u64,
                size as u32 as u64,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_read",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("stable_read", ALL_S)?;
            stable_read(
                &mut c,
                dst as u32 as u64,
                off as u32 as u64,
                size as u32 as u64,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "root_key_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data()
                .check("root_key_size", I | G | U | RQ | RY | RT | C | T)?;
            Ok(c.data().root_key.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "root_key_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data()
                .check("root_key_copy", I | G | U | RQ | RY | RT | C | T)?;
            copy_out(
                &mut c,
                "root_key_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| x.root_key.as_slice(),
            )
        },
    )?;
    l.func_wrap("ic0", "certified_data_set", |mut c: Caller<'_, Ctx>, src: i32, size: i32| {
        c.data().check("certified_data_set", I | G | U | RY | RT | T)?;
        if size as u32 > 32 {
            return violation(format!("ic0_certified_data_set failed because the passed data must be no larger than 32 bytes. Found {} bytes.", size as u32));
        }
        let b = read_mem(&mut c, src as u32, size as u32)?;
        c.data_mut().certified = Some(b);
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "data_certificate_present",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("data_certificate_present", ALL)?;
            Ok(c.data().certificate.is_some() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_size",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("data_certificate_size", NRQ | CQ)?;
            match &c.data().certificate {
                Some(cert) => Ok(cert.len() as i32),
                None => violation("ic0.data_certificate_size: no certificate available"),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_copy",
        |mut c: Caller<'_, Ctx>, dst: i32, off: i32, size: i32| {
            c.data().check("data_certificate_copy", NRQ | CQ)?;
            if c.data().certificate.is_none() {
                return violation("ic0.data_certificate_copy: no certificate available");
            }
            copy_out(
                &mut c,
                "data_certificate_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| x.certificate.as_deref().unwrap_or(&[]),
            )
        },
    )?;
    l.func_wrap("ic0", "time", |c: Caller<'_, Ctx>| -> WResult<i64> {
        c.data().check("time", ALL)?;
        Ok(c.data().time as i64)
    })?;
    l.func_wrap(
        "ic0",
        "global_timer_set",
        |mut c: Caller<'_, Ctx>, t: i64| -> WResult<i64> {
            c.data()
                .check("global_timer_set", I | G | U | RY | RT | C | T)?;
            let d = c.data_mut();
            let prev = d.timer;
            d.timer = t as u64;
            Ok(prev as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "performance_counter",
        |c: Caller<'_, Ctx>, ty: i32| -> WResult<i64> {
            c.data().check("performance_counter", ALL_S)?;
            let used = c
                .data()
                .fuel_limit
                .saturating_sub(c.get_fuel().unwrap_or(0));
            match ty {
                0 => Ok(used as i64),
                1 => Ok((c.data().cc_instructions + used) as i64),
                _ => violation(format!("Error getting performance counter type {ty}")),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "is_controller",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| -> WResult<i32> {
            c.data().check("is_controller", ALL_S)?;
            if size as u32 > 29 {
                return violation(format!(
                    "ic0.is_controller: invalid principal of {} bytes",
                    size as u32
                ));
            }
            let b = read_mem(&mut c, src as u32, size as u32)?;
            let Some(p) = principal_of(&b) else {
                return violation("ic0.is_controller: invalid principal");
            };
            Ok(c.data().controllers.contains(&p) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "in_replicated_execution",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("in_replicated_execution", ALL_S)?;
            Ok(!c.data().kind.non_replicated() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_call",
        |mut c: Caller<'_, Ctx>, m: i64, p: i64, dst: i32| {
            c.data().check("cost_call", ALL_S)?;
            let v = c.data().fees.cost_call(m as u64, p as u64);
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_create_canister",
        |mut c: Caller<'_, Ctx>, dst: i32| {
            c.data().check("cost_create_canister", ALL_S)?;
            let v = c.data().fees.creation;
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request",
        |mut c: Caller<'_, Ctx>, req: i64, res: i64, dst: i32| {
            c.data().check("cost_http_request", ALL_S)?;
            let v = c.data().fees.http_request(req as u64, res as u64);
            write_u128(&mut c, dst as u32, v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request_v2",
        |_c: Caller<'_, Ctx>, _s: i32, _n: i32, _d: i32| -> WResult<()> {
            trap(
                504,
                "ic0.cost_http_request_v2 is not implemented by the embedded engine",
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_sign_with_ecdsa",
        |mut c: Caller<'_, Ctx>, s: i32, n: i32, curve: i32, d: i32| {
            c.data().check("cost_sign_with_ecdsa", ALL_S)?;
            cost_key(&mut c, s as u32, n as u32, curve as u32, 0, d as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_sign_with_schnorr",
        |mut c: Caller<'_, Ctx>, s: i32, n: i32, alg: i32, d: i32| {
            c.data().check("cost_sign_with_schnorr", ALL_S)?;
            cost_key(&mut c, s as u32, n as u32, alg as u32, 1, d as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_vetkd_derive_key",
        |mut c: Caller<'_, Ctx>, s: i32, n: i32, curve: i32, d: i32| {
            c.data().check("cost_vetkd_derive_key", ALL_S)?;
            cost_key(&mut c, s as u32, n as u32, curve as u32, 0, d as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_count",
        |c: Caller<'_, Ctx>| -> WResult<i32> {
            c.data().check("env_var_count", ALL)?;
            Ok(c.data().env_vars.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_size",
        |c: Caller<'_, Ctx>, i: i32| -> WResult<i32> {
            c.data().check("env_var_name_size", ALL)?;
            match c.data().env_vars.get(i as u32 as usize) {
                Some((n, _)) => Ok(n.len() as i32),
                None => violation(format!(
                    "ic0.env_var_name_size: index {} out of bounds",
                    i as u32
                )),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_copy",
        |mut c: Caller<'_, Ctx>, i: i32, dst: i32, off: i32, size: i32| {
            c.data().check("env_var_name_copy", ALL)?;
            let i = i as u32 as usize;
            if i >= c.data().env_vars.len() {
                return violation(format!("ic0.env_var_name_copy: index {i} out of bounds"));
            }
            copy_out(
                &mut c,
                "env_var_name_copy",
                dst as u32,
                off as u32,
                size as u32,
                |x| x.env_vars[i].0.as_bytes(),
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_exists",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| -> WResult<i32> {
            c.data().check("env_var_name_exists", ALL)?;
            let name = env_name(&mut c, src, size, "env_var_name_exists")?;
            Ok(c.data().env_vars.iter().any(|(n, _)| *n == name) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_size",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| -> WResult<i32> {
            c.data().check("env_var_value_size", ALL)?;
            let name = env_name(&mut c, src, size, "env_var_value_size")?;
            match c.data().env_vars.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => Ok(v.len() as i32),
                None => violation(format!(
                    "ic0.env_var_value_size: environment variable '{name}' not found"
                )),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_copy",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32, dst: i32, off: i32, n: i32| {
            c.data().check("env_var_value_copy", ALL)?;
            let name = env_name(&mut c, src, size, "env_var_value_copy")?;
            let Some(i) = c.data().env_vars.iter().position(|(k, _)| *k == name) else {
                return violation(format!(
                    "ic0.env_var_value_copy: environment variable '{name}' not found"
                ));
            };
            copy_out(
                &mut c,
                "env_var_value_copy",
                dst as u32,
                off as u32,
                n as u32,
                |x| x.env_vars[i].1.as_bytes(),
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "debug_print",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| -> WResult<()> {
            let n = (size as u32).min(64 * 1024);
            let m = memory(&c)?;
            let data = m.data(&c);
            let s = src as u32 as usize;
            let b = data
                .get(s..s.saturating_add(n as usize))
                .map(|b| b.to_vec())
                .unwrap_or_default();
            c.data_mut().logs.push(b);
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "trap",
        |mut c: Caller<'_, Ctx>, src: i32, size: i32| -> WResult<()> {
            let n = (size as u32).min(16 * 1024);
            let b = read_mem(&mut c, src as u32, n).unwrap_or_default();
            trap(503, String::from_utf8_lossy(&b).into_owned())
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_available",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data().check("msg_cycles_available", U | RQ | RY | RT)?;
            fit64(c.data().cycles_available, "msg_cycles_available")
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data().check("msg_cycles_refunded", RY | RT)?;
            fit64(c.data().refunded, "msg_cycles_refunded")
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept",
        |mut c: Caller<'_, Ctx>, max: i64| -> WResult<i64> {
            c.data().check("msg_cycles_accept", U | RQ | RY | RT)?;
            let d = c.data_mut();
            let amount = (max as u64 as u128).min(d.cycles_available);
            d.cycles_available -= amount;
            d.cycles_accepted += amount;
            d.balance += amount;
            Ok(amount as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_cycle_balance",
        |c: Caller<'_, Ctx>| -> WResult<i64> {
            c.data().check("canister_cycle_balance", ALL)?;
            fit64(c.data().balance, "canister_cycle_balance")
        },
    )?;
    Ok(())
}

fn fit64(v: u128, name: &str) -> WResult<i64> {
    if v > u64::MAX as u128 {
        return trap(
            502,
            format!("ic0.{name}: the value {v} does not fit in 64 bits; use the 128-bit API"),
        );
    }
    Ok(v as u64 as i64)
}

fn env_name(c: &mut Caller<'_, Ctx>, src: i32, size: i32, api: &str) -> WResult<String> {
    if size as u32 > 128 {
        return violation(format!(
            "ic0.{api}: name too long ({} > 128 bytes)",
            size as u32
        ));
    }
    let b = read_mem(c, src as u32, size as u32)?;
    String::from_utf8(b).or_else(|_| violation(format!("ic0.{api}: name is not valid UTF-8")))
}

fn add_call_cycles(c: &mut Caller<'_, Ctx>, amount: u128, api: &str) -> WResult<()> {
    let d = c.data_mut();
    if d.pending.is_none() {
        return violation(format!("ic0.{api}: no call is in progress"));
    }
    if amount > d.liquid() {
        return trap(
            504,
            format!(
                "ic0.{api}: Canister {} is out of cycles: please top up the canister with at least {} additional cycles",
                principal_of(&d.self_id).map(|p| p.to_text()).unwrap_or_default(),
                amount - d.liquid()
            ),
        );
    }
    d.balance -= amount;
    if let Some(p) = d.pending.as_mut() {
        p.cycles += amount;
    }
    Ok(())
}

fn stable_write(c: &mut Caller<'_, Ctx>, off: u64, src: u64, size: u64) -> WResult<()> {
    let m = memory(c)?;
    let (data, ctx) = m.data_and_store_mut(&mut *c);
    let end = src.checked_add(size).filter(|e| *e <= data.len() as u64);
    let Some(end) = end else {
        return trap(502, "heap out of bounds");
    };
    match ctx.stable.write(off, &data[src as usize..end as usize]) {
        Ok(()) => Ok(()),
        Err(_) => trap(502, "stable memory out of bounds"),
    }
}

fn stable_read(c: &mut Caller<'_, Ctx>, dst: u64, off: u64, size: u64) -> WResult<()> {
    let m = memory(c)?;
    let (data, ctx) = m.data_and_store_mut(&mut *c);
    let end = dst.checked_add(size).filter(|e| *e <= data.len() as u64);
    let Some(end) = end else {
        return trap(502, "heap out of bounds");
    };
    match ctx.stable.read(off, &mut data[dst as usize..end as usize]) {
        Ok(()) => Ok(()),
        Err(_) => trap(502, "stable memory out of bounds"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Compiled modules and instances

pub struct Compiled {
    pub pre: InstancePre<Ctx>,
    pub module: Module,
    pub info: ModuleInfo,
    pub wasm_size: u64,
}

/// What to run.
#[derive(Clone, Debug)]
pub enum Entry {
    Export(String),
    Callback { fun: u32, env: u32 },
}

/// Classify a wasmtime error into the IC's trap kinds.
pub fn classify(e: &wasmtime::Error) -> HostTrap {
    if let Some(t) = e.downcast_ref::<HostTrap>() {
        return t.clone();
    }
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<HostTrap>() {
            return t.clone();
        }
    }
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        use wasmtime::Trap as W;
        let msg = match t {
            W::OutOfFuel => {
                return HostTrap {
                    code: 522,
                    msg: "instruction limit exceeded".into(),
                }
            }
            W::StackOverflow => "stack overflow".to_string(),
            W::MemoryOutOfBounds => "heap out of bounds".to_string(),
            W::TableOutOfBounds => "table out of bounds".to_string(),
            W::IndirectCallToNull => "uninitialized element".to_string(),
            W::BadSignature => "indirect call signature mismatch".to_string(),
            W::IntegerOverflow => "integer overflow".to_string(),
            W::IntegerDivisionByZero => "integer division by 0".to_string(),
            W::BadConversionToInteger => "invalid conversion to integer".to_string(),
            W::UnreachableCodeReached => "unreachable".to_string(),
            other => other.to_string(),
        };
        return HostTrap { code: 502, msg };
    }
    HostTrap {
        code: 502,
        msg: e.root_cause().to_string(),
    }
}

pub struct CanisterInstance {
    pub store: Store<Ctx>,
    pub instance: Instance,
    pub memory: Option<Memory>,
    pub table: Option<Table>,
    pub globals: Vec<Global>,
    pub compiled: Arc<Compiled>,
    /// The shadow-stack pointer (`__stack_pointer`), if the module names it.
    stack_pointer: Option<Global>,
    heap_snapshot: Vec<u8>,
    /// Snapshot covers `[snapshot_offset, snapshot_len)` of linear memory.
    snapshot_offset: usize,
    snapshot_len: usize,
    global_snapshot: Vec<Val>,
    checkpointed: bool,
}

impl CanisterInstance {
    /// Instantiate (running the module's `(start)` function with `fuel`). On failure the context is returned.
    #[allow(clippy::result_large_err)]
    pub fn new(
        engine: &wasmtime::Engine,
        compiled: Arc<Compiled>,
        mut ctx: Ctx,
        fuel: u64,
    ) -> Result<(CanisterInstance, u64), (HostTrap, Ctx, u64)> {
        ctx.reset(Kind::Start);
        ctx.mem = None;
        ctx.fuel_limit = fuel;
        let mut store = Store::new(engine, ctx);
        store.limiter(|c| c);
        let _ = store.set_fuel(fuel);
        let instance = match compiled.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                let used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
                return Err((classify(&e), store.into_data(), used));
            }
        };
        let used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let memory = instance.get_memory(&mut store, wasm::MEMORY_EXPORT);
        let table = instance.get_table(&mut store, wasm::TABLE_EXPORT);
        let globals = compiled
            .info
            .mutable_globals
            .iter()
            .filter_map(|g| instance.get_global(&mut store, g))
            .collect();
        store.data_mut().mem = memory;
        let stack_pointer = compiled
            .info
            .stack_pointer
            .as_ref()
            .and_then(|g| instance.get_global(&mut store, g))
            .filter(|g| matches!(g.ty(&store).content(), wasmtime::ValType::I32));
        Ok((
            CanisterInstance {
                store,
                instance,
                memory,
                table,
                globals,
                compiled,
                stack_pointer,
                heap_snapshot: vec![],
                snapshot_offset: 0,
                snapshot_len: 0,
                global_snapshot: vec![],
                checkpointed: false,
            },
            used,
        ))
    }

    pub fn ctx(&self) -> &Ctx {
        self.store.data()
    }
    pub fn ctx_mut(&mut self) -> &mut Ctx {
        self.store.data_mut()
    }

    pub fn heap_bytes(&self) -> u64 {
        self.memory
            .map(|m| m.data_size(&self.store) as u64)
            .unwrap_or(0)
    }

    pub fn globals_bytes(&self) -> u64 {
        self.globals.len() as u64 * 8
    }

    /// Remember heap, globals and stable memory so that `rollback` can restore them.
    ///
    /// Memory below the shadow-stack pointer (rustc: the first 1 MiB, the stack grows down from there) is dead
    /// between executions, so it is not copied; everything from the stack pointer up is.
    pub fn checkpoint(&mut self) {
        self.heap_snapshot.clear();
        if let Some(m) = self.memory {
            let sp = self
                .stack_pointer
                .and_then(|g| g.get(&mut self.store).i32())
                .map(|v| v as u32 as usize)
                .unwrap_or(0);
            let data = m.data(&self.store);
            let off = sp.min(data.len());
            self.snapshot_offset = off;
            self.snapshot_len = data.len();
            self.heap_snapshot.extend_from_slice(&data[off..]);
        }
        self.global_snapshot.clear();
        for g in &self.globals {
            let v = g.get(&mut self.store);
            self.global_snapshot.push(v);
        }
        self.store.data_mut().stable.begin();
        self.checkpointed = true;
    }

    pub fn commit(&mut self) {
        self.store.data_mut().stable.commit();
        self.checkpointed = false;
    }

    /// Restore the state of the last checkpoint. Returns false if the instance had to be (and could not be)
    /// rebuilt.
    pub fn rollback(&mut self, engine: &wasmtime::Engine) {
        if !self.checkpointed {
            return;
        }
        self.checkpointed = false;
        self.store.data_mut().stable.rollback();
        let grown = self
            .memory
            .is_some_and(|m| m.data_size(&self.store) != self.snapshot_len);
        if grown {
            // Linear memory cannot shrink: build a fresh instance and load the snapshot into it.
            let placeholder = Ctx::new(
                Principal::anonymous(),
                self.store.data().fees.clone(),
                self.store.data().root_key.clone(),
                vec![],
            );
            let ctx = std::mem::replace(self.store.data_mut(), placeholder);
            let (kind, fuel) = (ctx.kind, ctx.fuel_limit);
            match CanisterInstance::new(engine, self.compiled.clone(), ctx, u64::MAX / 2) {
                Ok((mut fresh, _)) => {
                    if let Some(m) = fresh.memory {
                        let cur = m.data_size(&fresh.store) as u64;
                        let want = self.snapshot_len as u64;
                        if want > cur {
                            let _ = m.grow(&mut fresh.store, (want - cur) / WASM_PAGE);
                        }
                        m.data_mut(&mut fresh.store)[self.snapshot_offset..self.snapshot_len]
                            .copy_from_slice(&self.heap_snapshot);
                    }
                    for (g, v) in fresh.globals.iter().zip(self.global_snapshot.iter()) {
                        let _ = g.set(&mut fresh.store, *v);
                    }
                    fresh.heap_snapshot = std::mem::take(&mut self.heap_snapshot);
                    fresh.snapshot_offset = self.snapshot_offset;
                    fresh.snapshot_len = self.snapshot_len;
                    fresh.store.data_mut().kind = kind;
                    fresh.store.data_mut().fuel_limit = fuel;
                    *self = fresh;
                }
                Err((_, ctx, _)) => {
                    *self.store.data_mut() = ctx;
                }
            }
            return;
        }
        if let Some(m) = self.memory {
            m.data_mut(&mut self.store)[self.snapshot_offset..self.snapshot_len]
                .copy_from_slice(&self.heap_snapshot);
        }
        for (g, v) in self.globals.iter().zip(self.global_snapshot.iter()) {
            let _ = g.set(&mut self.store, *v);
        }
    }

    /// Run an export or a table callback with an instruction limit. Returns the instructions used.
    pub fn call(&mut self, entry: &Entry, fuel: u64) -> (Result<(), HostTrap>, u64) {
        self.store.data_mut().fuel_limit = fuel;
        let _ = self.store.set_fuel(fuel);
        let r = match entry {
            Entry::Export(name) => match self
                .instance
                .get_typed_func::<(), ()>(&mut self.store, name)
            {
                Ok(f) => f.call(&mut self.store, ()).map_err(|e| classify(&e)),
                Err(_) => Err(HostTrap {
                    code: 502,
                    msg: format!("export '{name}' not found"),
                }),
            },
            Entry::Callback { fun, env } => {
                let f = self
                    .table
                    .and_then(|t| t.get(&mut self.store, *fun as u64))
                    .and_then(|r| r.as_func().flatten().cloned());
                match f {
                    None => Err(HostTrap {
                        code: 502,
                        msg: format!("table index {fun} out of bounds or uninitialized (callback)"),
                    }),
                    Some(f) => match f.typed::<i32, ()>(&self.store) {
                        Ok(tf) => tf
                            .call(&mut self.store, *env as i32)
                            .map_err(|e| classify(&e)),
                        Err(_) => Err(HostTrap {
                            code: 502,
                            msg: "indirect call signature mismatch (callback)".into(),
                        }),
                    },
                }
            }
        };
        let used = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let r = match r {
            Err(t) if t.code == 522 => Err(t),
            Err(t) if self.store.data().heap_limit_hit && t.code == 502 => Err(HostTrap {
                code: 539,
                msg: t.msg,
            }),
            other => other,
        };
        (r, used)
    }
}
