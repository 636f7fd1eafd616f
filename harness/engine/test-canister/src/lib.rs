//! Test canister for the engine's conformance tests: each method exercises one piece of IC behaviour.

use candid::{CandidType, Deserialize, Principal};
use ic_cdk::api;
use ic_cdk::call::{Call, CallFailed};
use ic_cdk::{init, inspect_message, on_low_wasm_memory, post_upgrade, pre_upgrade, query, update};
use ic_cdk_management_canister as mgmt;
use std::cell::RefCell;
use std::time::Duration;

thread_local! {
    static COUNTER: RefCell<u64> = const { RefCell::new(0) };
    static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Stable memory layout: bytes 0..8 hold the counter across upgrades; tests use offsets >= 65536.
const COUNTER_SLOT: u64 = 0;

fn bump(n: u64) -> u64 {
    COUNTER.with(|c| {
        *c.borrow_mut() += n;
        *c.borrow()
    })
}
fn counter() -> u64 {
    COUNTER.with(|c| *c.borrow())
}
fn event(e: impl Into<String>) {
    EVENTS.with(|v| v.borrow_mut().push(e.into()));
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub kind: String,
    pub code: u32,
    pub message: String,
}

fn call_error(e: CallFailed) -> CallError {
    match e {
        CallFailed::CallRejected(r) => CallError {
            kind: "rejected".into(),
            code: r.raw_reject_code(),
            message: r.reject_message().to_string(),
        },
        CallFailed::InsufficientLiquidCycleBalance(e) => CallError {
            kind: "insufficient_liquid".into(),
            code: 0,
            message: e.to_string(),
        },
        CallFailed::CallPerformFailed(e) => CallError {
            kind: "perform_failed".into(),
            code: 0,
            message: e.to_string(),
        },
    }
}

fn mgmt_error(e: ic_cdk::call::Error) -> CallError {
    match e {
        ic_cdk::call::Error::CallRejected(r) => CallError {
            kind: "rejected".into(),
            code: r.raw_reject_code(),
            message: r.reject_message().to_string(),
        },
        other => CallError {
            kind: "other".into(),
            code: 0,
            message: other.to_string(),
        },
    }
}

#[init]
fn init(start: Option<u64>) {
    COUNTER.with(|c| *c.borrow_mut() = start.unwrap_or(0));
    event("init");
}

#[pre_upgrade]
fn pre_upgrade() {
    if api::stable_size() == 0 {
        api::stable_grow(1);
    }
    api::stable_write(COUNTER_SLOT, &counter().to_le_bytes());
}

#[post_upgrade]
fn post_upgrade(mode: Option<String>) {
    let mut b = [0u8; 8];
    if api::stable_size() > 0 {
        api::stable_read(COUNTER_SLOT, &mut b);
    }
    COUNTER.with(|c| *c.borrow_mut() = u64::from_le_bytes(b));
    event("post_upgrade");
    if mode.as_deref() == Some("trap") {
        api::trap("post_upgrade asked to trap");
    }
}

#[inspect_message]
fn inspect() {
    if api::msg_method_name() != "blocked_by_inspect" {
        api::accept_message();
    }
}

#[update]
fn blocked_by_inspect() -> u64 {
    1
}

#[update]
fn inc() -> u64 {
    bump(1)
}

#[query]
fn get() -> u64 {
    counter()
}

#[query]
fn query_inc() -> u64 {
    bump(1)
}

#[query]
fn events() -> Vec<String> {
    EVENTS.with(|v| v.borrow().clone())
}

#[query]
fn echo(b: Vec<u8>) -> Vec<u8> {
    b
}

#[update]
fn debug(msg: String) {
    api::debug_print(msg);
}

/// Changes heap, stable memory, certified data and the timer, then traps: everything must be rolled back.
#[update]
fn trap_after_effects(msg: String) {
    bump(1);
    if api::stable_size() < 2 {
        api::stable_grow(2 - api::stable_size());
    }
    api::stable_write(65_536, b"dirty");
    api::certified_data_set(b"dirty");
    api::global_timer_set(123);
    api::debug_print("before trap");
    api::trap(msg);
}

#[update]
fn panic_now() {
    bump(1);
    panic!("panicked on purpose");
}

#[update]
fn unreachable_now() {
    bump(1);
    wasm_unreachable()
}

#[cfg(target_arch = "wasm32")]
fn wasm_unreachable() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn wasm_unreachable() -> ! {
    unreachable!("the wasm `unreachable` instruction")
}

#[cfg(target_arch = "wasm32")]
fn memory_pages() -> u64 {
    core::arch::wasm32::memory_size(0) as u64
}

#[cfg(not(target_arch = "wasm32"))]
fn memory_pages() -> u64 {
    0
}

/// Grows the heap by `mb` MiB and then traps: the memory size and contents must be restored.
#[update]
fn alloc_then_trap(mb: u32) {
    bump(1);
    let v = vec![7u8; (mb as usize) << 20];
    std::hint::black_box(&v);
    api::trap("after alloc");
}

#[update]
fn alloc(mb: u32) -> u64 {
    let v = vec![7u8; (mb as usize) << 20];
    std::hint::black_box(&v);
    std::mem::forget(v);
    memory_pages()
}

#[update]
fn set_certified(d: Vec<u8>) {
    api::certified_data_set(d);
}

#[query]
fn certificate_present() -> bool {
    api::data_certificate().is_some()
}

#[update]
fn stable_write(offset: u64, data: Vec<u8>) {
    let need = (offset + data.len() as u64).div_ceil(65_536);
    if api::stable_size() < need && api::stable_grow(need - api::stable_size()) == u64::MAX {
        api::trap("stable grow failed");
    }
    api::stable_write(offset, &data);
}

#[query]
fn stable_read(offset: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    api::stable_read(offset, &mut b);
    b
}

#[update]
fn stable_write_then_trap(offset: u64, data: Vec<u8>) {
    stable_write(offset, data);
    api::trap("after stable write");
}

#[query]
fn stable_size() -> u64 {
    api::stable_size()
}

/// Fills `mb` MiB of stable memory with a byte pattern, 1 MiB per call chunk.
#[update]
fn stable_fill(start_mb: u64, mb: u64, byte: u8) {
    let chunk = vec![byte; 1 << 20];
    for i in start_mb..start_mb + mb {
        stable_write(i << 20, chunk.clone());
    }
}

#[update]
fn stable_touch_then_trap(offset: u64) {
    api::stable_write(offset, b"x");
    api::trap("touch then trap");
}

/// Increments, awaits a self-call to `inc`, then traps: the part before the await stays committed.
#[update]
async fn inc_call_self_then_trap() {
    bump(1);
    let _ = Call::bounded_wait(api::canister_self(), "inc").await;
    api::trap("after await");
}

#[update]
async fn call(
    callee: Principal,
    method: String,
    arg: Vec<u8>,
    cycles: u128,
    bounded: bool,
) -> Result<Vec<u8>, CallError> {
    let c = if bounded {
        Call::bounded_wait(callee, &method)
    } else {
        Call::unbounded_wait(callee, &method)
    };
    let r = c.with_raw_args(&arg).with_cycles(cycles).await;
    match r {
        Ok(resp) => Ok(resp.into_bytes()),
        Err(e) => Err(call_error(e)),
    }
}

#[update]
async fn call_with_timeout(
    callee: Principal,
    method: String,
    arg: Vec<u8>,
    timeout_s: u32,
) -> Result<Vec<u8>, CallError> {
    let r = Call::bounded_wait(callee, &method)
        .change_timeout(timeout_s)
        .with_raw_args(&arg)
        .await;
    r.map(|r| r.into_bytes()).map_err(call_error)
}

/// Makes a call and, when it returns, increments the counter by 1000 (used with upgrades in flight).
#[update]
async fn call_then_bump(callee: Principal, method: String) -> u64 {
    let _ = Call::unbounded_wait(callee, &method).await;
    bump(1000)
}

#[update]
fn oneway(callee: Principal, method: String, arg: Vec<u8>) -> bool {
    Call::unbounded_wait(callee, &method)
        .with_raw_args(&arg)
        .oneway()
        .is_ok()
}

#[update]
fn accept(max: u128) -> (u128, u128) {
    let avail = api::msg_cycles_available();
    (avail, api::msg_cycles_accept(max))
}

#[update]
fn accept_then_trap(max: u128) {
    api::msg_cycles_accept(max);
    api::trap("after accept");
}

#[update]
async fn call_with_cycles_report(
    callee: Principal,
    method: String,
    cycles: u128,
) -> (u128, u128, bool) {
    let before = api::canister_cycle_balance();
    let r = Call::unbounded_wait(callee, &method)
        .with_arg(u128::MAX)
        .with_cycles(cycles)
        .await;
    let refunded = api::msg_cycles_refunded();
    (before, refunded, r.is_ok())
}

#[query]
fn balance() -> u128 {
    api::canister_cycle_balance()
}

#[update]
fn balances_in_update() -> (u128, u128) {
    (
        api::canister_cycle_balance(),
        api::canister_liquid_cycle_balance(),
    )
}

#[update]
fn burn(n: u128) -> u128 {
    api::cycles_burn(n)
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct Probe {
    pub canister_version: u64,
    pub status: u32,
    pub replicated: bool,
    pub perf0: u64,
    pub subnet: Principal,
    pub nodes: u32,
    pub cost_call_0: u128,
    pub cost_call_timer: u128,
    pub cost_create: u128,
    pub caller_is_controller: bool,
    pub deadline: Option<u64>,
    pub root_key_len: u64,
    pub env_count: u64,
    pub time: u64,
    pub caller: Principal,
    pub self_id: Principal,
    pub certificate: bool,
}

fn probe_inner(replicated_ok: bool) -> Probe {
    Probe {
        canister_version: api::canister_version(),
        status: u32::from(api::canister_status()),
        replicated: api::in_replicated_execution(),
        perf0: api::performance_counter(0),
        subnet: api::subnet_self(),
        nodes: api::subnet_self_node_count(),
        cost_call_0: api::cost_call(0, 0),
        cost_call_timer: api::cost_call(32, 8),
        cost_create: api::cost_create_canister(),
        caller_is_controller: api::is_controller(&api::msg_caller()),
        deadline: api::msg_deadline().map(|d| d.get()),
        root_key_len: if replicated_ok {
            api::root_key().len() as u64
        } else {
            0
        },
        env_count: api::env_var_count() as u64,
        time: api::time(),
        caller: api::msg_caller(),
        self_id: api::canister_self(),
        certificate: if replicated_ok {
            false
        } else {
            api::data_certificate().is_some()
        },
    }
}

#[update]
fn probe() -> Probe {
    probe_inner(true)
}

#[query]
fn query_probe() -> Probe {
    probe_inner(false)
}

#[query]
fn env_var(name: String) -> Option<String> {
    if api::env_var_name_exists(&name) {
        Some(api::env_var_value(&name))
    } else {
        None
    }
}

/// A known loop: `n` iterations of a few wasm instructions; returns the instruction counter.
#[update]
fn count_loop(n: u64) -> u64 {
    let start = api::performance_counter(0);
    let mut acc = 0u64;
    for i in 0..n {
        acc = std::hint::black_box(acc.wrapping_add(i));
    }
    std::hint::black_box(acc);
    api::performance_counter(0) - start
}

#[update]
fn spin(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
    }
    acc
}

#[update(manual_reply = true)]
fn reply_twice() {
    api::msg_reply(candid::encode_one(1u64).unwrap());
    api::msg_reply(candid::encode_one(2u64).unwrap());
}

#[update(manual_reply = true)]
fn no_reply() {
    bump(1);
}

#[update(manual_reply = true)]
fn reject_me(msg: String) {
    api::msg_reject(msg);
}

#[query]
fn query_calls_out() {
    let _ = Call::unbounded_wait(api::canister_self(), "inc").oneway();
}

#[update]
fn set_global_timer_raw(t: u64) -> u64 {
    api::global_timer_set(t)
}

#[update]
fn set_timer(delay_s: u64) {
    ic_cdk_timers::set_timer(Duration::from_secs(delay_s), async {
        bump(100);
        event("timer fired");
        api::debug_print("timer fired");
    });
}

#[update]
fn set_interval(secs: u64) {
    ic_cdk_timers::set_timer_interval(Duration::from_secs(secs), || async {
        bump(10);
        event("interval");
    });
}

#[update]
async fn raw_rand() -> Vec<u8> {
    mgmt::raw_rand().await.unwrap_or_default()
}

#[update]
async fn create_child(
    extra: u128,
    controllers: Option<Vec<Principal>>,
) -> Result<Principal, CallError> {
    let arg = mgmt::CreateCanisterArgs {
        settings: controllers.map(|c| mgmt::CanisterSettings {
            controllers: Some(c),
            ..Default::default()
        }),
    };
    mgmt::create_canister_with_extra_cycles(&arg, extra)
        .await
        .map(|r| r.canister_id)
        .map_err(mgmt_error)
}

#[update]
async fn create_child_plain() -> Result<Principal, CallError> {
    let arg = mgmt::CreateCanisterArgs { settings: None };
    mgmt::create_canister(&arg)
        .await
        .map(|r| r.canister_id)
        .map_err(mgmt_error)
}

#[update]
async fn install_child(
    child: Principal,
    wasm: Vec<u8>,
    arg: Vec<u8>,
    mode: String,
) -> Result<(), CallError> {
    let mode = match mode.as_str() {
        "install" => mgmt::CanisterInstallMode::Install,
        "reinstall" => mgmt::CanisterInstallMode::Reinstall,
        _ => mgmt::CanisterInstallMode::Upgrade(None),
    };
    let a = mgmt::InstallCodeArgs {
        mode,
        canister_id: child,
        wasm_module: wasm,
        arg,
    };
    mgmt::install_code(&a).await.map_err(mgmt_error)
}

#[update]
async fn install_child_chunked(
    child: Principal,
    wasm: Vec<u8>,
    arg: Vec<u8>,
) -> Result<usize, CallError> {
    mgmt::clear_chunk_store(&mgmt::ClearChunkStoreArgs { canister_id: child })
        .await
        .map_err(mgmt_error)?;
    let mut hashes = vec![];
    for chunk in wasm.chunks(1 << 20) {
        let r = mgmt::upload_chunk(&mgmt::UploadChunkArgs {
            canister_id: child,
            chunk: chunk.to_vec(),
        })
        .await
        .map_err(mgmt_error)?;
        hashes.push(r);
    }
    let stored = mgmt::stored_chunks(&mgmt::StoredChunksArgs { canister_id: child })
        .await
        .map_err(mgmt_error)?;
    let a = mgmt::InstallChunkedCodeArgs {
        mode: mgmt::CanisterInstallMode::Install,
        target_canister: child,
        store_canister: None,
        chunk_hashes_list: hashes,
        wasm_module_hash: sha256_of(&wasm),
        arg,
    };
    mgmt::install_chunked_code(&a).await.map_err(mgmt_error)?;
    Ok(stored.len())
}

fn sha256_of(b: &[u8]) -> Vec<u8> {
    // Minimal SHA-256 (test-only; avoids another dependency).
    let k: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = b.to_vec();
    let bitlen = (b.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bitlen.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(k[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    h.iter().flat_map(|x| x.to_be_bytes()).collect()
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ChildStatus {
    pub status: String,
    pub cycles: u128,
    pub module_hash: Option<Vec<u8>>,
    pub controllers: Vec<Principal>,
    pub version: u64,
    pub memory_size: u128,
}

#[update]
async fn child_status(child: Principal) -> Result<ChildStatus, CallError> {
    let s = mgmt::canister_status(&mgmt::CanisterStatusArgs { canister_id: child })
        .await
        .map_err(mgmt_error)?;
    Ok(ChildStatus {
        status: format!("{:?}", s.status).to_lowercase(),
        cycles: u128::try_from(s.cycles.0).unwrap_or(0),
        module_hash: s.module_hash,
        controllers: s.settings.controllers,
        version: s.version,
        memory_size: u128::try_from(s.memory_size.0).unwrap_or(0),
    })
}

#[update]
async fn child_info(
    child: Principal,
) -> Result<(u64, Option<Vec<u8>>, Vec<Principal>, u64), CallError> {
    let r = mgmt::canister_info(&mgmt::CanisterInfoArgs {
        canister_id: child,
        num_requested_changes: Some(10),
    })
    .await
    .map_err(mgmt_error)?;
    Ok((
        r.total_num_changes,
        r.module_hash,
        r.controllers,
        r.recent_changes.len() as u64,
    ))
}

#[update]
async fn stop_child(child: Principal) -> Result<(), CallError> {
    mgmt::stop_canister(&mgmt::StopCanisterArgs { canister_id: child })
        .await
        .map_err(mgmt_error)
}

#[update]
async fn start_child(child: Principal) -> Result<(), CallError> {
    mgmt::start_canister(&mgmt::StartCanisterArgs { canister_id: child })
        .await
        .map_err(mgmt_error)
}

#[update]
async fn delete_child(child: Principal) -> Result<(), CallError> {
    mgmt::delete_canister(&mgmt::DeleteCanisterArgs { canister_id: child })
        .await
        .map_err(mgmt_error)
}

#[update]
async fn uninstall_child(child: Principal) -> Result<(), CallError> {
    mgmt::uninstall_code(&mgmt::UninstallCodeArgs { canister_id: child })
        .await
        .map_err(mgmt_error)
}

#[update]
async fn deposit(child: Principal, cycles: u128) -> Result<(), CallError> {
    mgmt::deposit_cycles(&mgmt::DepositCyclesArgs { canister_id: child }, cycles)
        .await
        .map_err(mgmt_error)
}

#[update]
async fn set_child_controllers(
    child: Principal,
    controllers: Vec<Principal>,
) -> Result<(), CallError> {
    let a = mgmt::UpdateSettingsArgs {
        canister_id: child,
        settings: mgmt::CanisterSettings {
            controllers: Some(controllers),
            ..Default::default()
        },
    };
    mgmt::update_settings(&a).await.map_err(mgmt_error)
}

/// A composite query: reads `get` of two other canisters and adds its own counter (after bumping it, which is
/// discarded with the rest of the composite query's state).
#[query(composite = true)]
async fn composite_sum(a: Principal, b: Principal) -> u64 {
    bump(1);
    let x: u64 = Call::unbounded_wait(a, "get")
        .await
        .expect("a replies")
        .candid()
        .expect("u64");
    let y: u64 = Call::bounded_wait(b, "get")
        .await
        .expect("b replies")
        .candid()
        .expect("u64");
    x + y + counter()
}

#[query(composite = true)]
async fn composite_call_update(a: Principal) -> String {
    match Call::unbounded_wait(a, "inc").await {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e}"),
    }
}

#[on_low_wasm_memory]
fn low_memory() {
    event("low memory");
}
