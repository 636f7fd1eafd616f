//! Conformance tests: the test canister (real ic-cdk 0.20 wasm) on the engine, asserting IC behaviour.
mod common;
use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use common::*;
use engine::*;
use std::time::Duration;

#[derive(CandidType, Deserialize, Clone, Debug)]
struct Probe {
    canister_version: u64,
    status: u32,
    replicated: bool,
    perf0: u64,
    subnet: Principal,
    nodes: u32,
    cost_call_0: u128,
    cost_call_timer: u128,
    cost_create: u128,
    caller_is_controller: bool,
    deadline: Option<u64>,
    root_key_len: u64,
    env_count: u64,
    time: u64,
    caller: Principal,
    self_id: Principal,
    certificate: bool,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
struct ChildStatus {
    status: String,
    cycles: u128,
    module_hash: Option<Vec<u8>>,
    controllers: Vec<Principal>,
    version: u64,
    memory_size: u128,
}

fn call_via(
    e: &mut Engine,
    a: Principal,
    callee: Principal,
    method: &str,
    arg: Vec<u8>,
    cycles: u128,
    bounded: bool,
) -> CallRes {
    update::<CallRes>(e, a, "call", call_arg(callee, method, arg, cycles, bounded))
        .expect("call method replies")
}

fn logs_text(e: &Engine, c: Principal) -> Vec<String> {
    e.canister_logs(c).iter().map(|l| l.text()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The ten things that bite (spec §0)

#[test]
fn bite01_cost_call_and_liquid_balance_are_consistent() {
    let (mut e, c) = setup();
    let p: Probe = update(&mut e, c, "probe", none()).unwrap();
    assert_eq!(p.cost_call_0, 42_102_412_000);
    assert_eq!(p.cost_call_timer, 42_102_452_000);
    assert_eq!(p.cost_create, 500_000_000_000);
    // A canister that can pay for its own execution but not for a call: ic-cdk refuses before call_new.
    let poor = setup_with(&mut e, 100 * T);
    e.set_cycles(poor, 60_000_000_000).unwrap();
    let r = call_via(&mut e, poor, c, "inc", none(), 0, true);
    let err = r.unwrap_err();
    assert_eq!(err.kind, "insufficient_liquid", "{err:?}");
    assert_eq!(
        query::<u64>(&mut e, c, "get", none()).unwrap(),
        0,
        "no call was made"
    );
    let (bal, liquid): (u128, u128) = e
        .update_call(user(), c, "balances_in_update", &none())
        .map(|b| Decode!(&b, u128, u128).unwrap())
        .unwrap();
    assert!(liquid <= bal);
}

#[test]
fn bite02_bounded_wait_gets_sys_unknown_at_deadline() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    // msg_deadline seen by the callee of a bounded-wait call = caller time + 300 s.
    let r = call_via(&mut e, a, b, "probe", none(), 0, true).unwrap();
    let p = Decode!(&r, Probe).unwrap();
    let d = p.deadline.expect("bounded-wait call has a deadline");
    assert!(
        d > p.time && d - p.time <= 300_000_000_000 && d - p.time >= 299_000_000_000,
        "{d} vs {}",
        p.time
    );
    // Unbounded: no deadline.
    let r = call_via(&mut e, a, b, "probe", none(), 0, false).unwrap();
    assert_eq!(Decode!(&r, Probe).unwrap().deadline, None);
    // A held request: the bounded-wait caller gets code 6 once time passes the deadline.
    let f = e.add_fault(FaultRule {
        target: FaultTarget::Canister(b),
        caller: Some(a),
        method: Some("inc".into()),
        nth: None,
        times: None,
        action: FaultAction::Hold,
    });
    let id = e
        .submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, true))
        .unwrap();
    for _ in 0..3 {
        e.tick();
    }
    assert!(e.call_result(id).is_none());
    e.advance_time(Duration::from_secs(301));
    let r = e.await_call(id).unwrap();
    let err = Decode!(&r, CallRes).unwrap().unwrap_err();
    assert_eq!(err.code, 6, "{err:?}");
    // The late request still executes on release; its response is dropped.
    assert_eq!(e.release_held(f), 1);
    e.run_until_idle(10).unwrap();
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 1);
}

#[test]
fn bite03_ic_cdk_timers_fire_via_global_timer_and_self_call() {
    let (mut e, c) = setup();
    update::<()>(&mut e, c, "set_timer", Encode!(&5u64).unwrap()).unwrap();
    assert!(e.global_timer(c).unwrap() > 0);
    e.tick();
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 0);
    e.advance_time(Duration::from_secs(6));
    e.tick();
    e.tick();
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 100);
    assert!(query::<Vec<String>>(&mut e, c, "events", none())
        .unwrap()
        .contains(&"timer fired".to_string()));
    assert!(logs_text(&e, c).iter().any(|l| l == "timer fired"));
    // The timer executor ran as a self-call (caller = the canister itself).
    assert!(e
        .metrics()
        .records
        .iter()
        .any(|r| r.method == "<ic-cdk internal> timer_executor" && r.canister == c));
    // Interval timers keep firing.
    update::<()>(&mut e, c, "set_interval", Encode!(&10u64).unwrap()).unwrap();
    for _ in 0..3 {
        e.advance_time(Duration::from_secs(10));
        e.tick();
        e.tick();
    }
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 130);
}

#[test]
fn bite04_callbacks_through_unexported_table_and_self_calls() {
    let (mut e, c) = setup();
    // Self-call through the table-indexed reply callback.
    let r = call_via(&mut e, c, c, "inc", none(), 0, true).unwrap();
    assert_eq!(Decode!(&r, u64).unwrap(), 1);
    let r = call_via(&mut e, c, c, "inc", none(), 0, false).unwrap();
    assert_eq!(Decode!(&r, u64).unwrap(), 2);
}

#[test]
fn bite05_one_way_calls_use_invalid_callback_index() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    assert!(update::<bool>(
        &mut e,
        a,
        "oneway",
        Encode!(&b, &"inc".to_string(), &none()).unwrap()
    )
    .unwrap());
    e.run_until_idle(10).unwrap();
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 1);
    // The response's callback (index u32::MAX) traps and is rolled back; the caller is unaffected.
    assert_eq!(query::<u64>(&mut e, a, "get", none()).unwrap(), 0);
    assert_eq!(update::<u64>(&mut e, a, "inc", none()).unwrap(), 1);
}

#[test]
fn bite06_trap_rolls_back_heap_stable_globals_certified_data_and_timer_but_keeps_logs() {
    let (mut e, c) = setup();
    update::<()>(
        &mut e,
        c,
        "stable_write",
        Encode!(&65_536u64, &b"clean".to_vec()).unwrap(),
    )
    .unwrap();
    update::<()>(
        &mut e,
        c,
        "set_certified",
        Encode!(&b"good".to_vec()).unwrap(),
    )
    .unwrap();
    let timer_before = e.global_timer(c).unwrap();
    let r = e
        .update_call(
            user(),
            c,
            "trap_after_effects",
            &Encode!(&"boom".to_string()).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    assert_eq!(r.error_code.as_deref(), Some("IC0503"));
    assert!(
        r.message
            .contains("Canister called `ic0.trap` with message: 'boom'"),
        "{}",
        r.message
    );
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 0);
    assert_eq!(
        query::<Vec<u8>>(
            &mut e,
            c,
            "stable_read",
            Encode!(&65_536u64, &5u64).unwrap()
        )
        .unwrap(),
        b"clean"
    );
    assert_eq!(e.certified_data(c).unwrap(), b"good");
    assert_eq!(e.global_timer(c).unwrap(), timer_before);
    let logs = logs_text(&e, c);
    assert!(logs.contains(&"before trap".to_string()));
    assert!(logs.contains(&"[TRAP]: boom".to_string()));
    // __stack_pointer (a non-exported mutable global) is restored: many panics deep in the stack leave the
    // canister working.
    for _ in 0..300 {
        let r = e.update_call(user(), c, "panic_now", &none()).unwrap_err();
        assert_eq!(r.error_code.as_deref(), Some("IC0503"));
        assert!(r.message.contains("panicked on purpose"));
    }
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 1);
    // A wasm trap (unreachable) is IC0502.
    let r = e
        .update_call(user(), c, "unreachable_now", &none())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0502"), "{}", r.message);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 1);
    // Heap growth followed by a trap: size and content restored.
    let heap = e.heap_bytes(c).unwrap();
    assert!(e
        .update_call(user(), c, "alloc_then_trap", &Encode!(&32u32).unwrap())
        .is_err());
    assert_eq!(e.heap_bytes(c).unwrap(), heap);
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 2);
}

#[test]
fn bite07_management_replies_decode_with_ic_management_canister_types_0_11() {
    let (mut e, a) = setup();
    let child: Principal = update::<Result<Principal, CallError>>(
        &mut e,
        a,
        "create_child",
        Encode!(&(2 * T), &None::<Vec<Principal>>).unwrap(),
    )
    .unwrap()
    .unwrap();
    let s = update::<Result<ChildStatus, CallError>>(
        &mut e,
        a,
        "child_status",
        Encode!(&child).unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.status, "running");
    assert_eq!(s.controllers, vec![a]);
    assert_eq!(s.module_hash, None);
    assert_eq!(s.cycles, 2 * T);
}

#[test]
fn bite08_cycles_inside_an_update_have_prepayment_deducted() {
    let (mut e, c) = setup();
    let outside = e.cycle_balance(c).unwrap();
    let (inside, liquid): (u128, u128) = e
        .update_call(user(), c, "balances_in_update", &none())
        .map(|b| Decode!(&b, u128, u128).unwrap())
        .unwrap();
    let prepay = 40_005_000_000u128;
    assert!(
        inside <= outside - prepay,
        "inside {inside} outside {outside}"
    );
    assert!(
        inside > outside - prepay - 10_000_000,
        "only the prepayment and ingress fee: {}",
        outside - inside
    );
    assert!(liquid < inside);
    // After the call only the instructions actually used (and the fees) are gone.
    let after = e.cycle_balance(c).unwrap();
    assert!(outside - after < 100_000_000, "charged {}", outside - after);
}

#[test]
fn bite09_child_created_with_only_the_fee_cannot_be_installed() {
    let (mut e, a) = setup();
    let child = update::<Result<Principal, CallError>>(&mut e, a, "create_child_plain", none())
        .unwrap()
        .unwrap();
    assert_eq!(e.cycle_balance(child).unwrap(), 0);
    let r = update::<Result<(), CallError>>(
        &mut e,
        a,
        "install_child",
        Encode!(
            &child,
            &test_wasm().to_vec(),
            &Encode!(&None::<u64>).unwrap(),
            &"install".to_string()
        )
        .unwrap(),
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.message.contains("out of cycles"), "{}", r.message);
    // With extra cycles it works.
    let child2 = update::<Result<Principal, CallError>>(
        &mut e,
        a,
        "create_child",
        Encode!(&T, &None::<Vec<Principal>>).unwrap(),
    )
    .unwrap()
    .unwrap();
    update::<Result<(), CallError>>(
        &mut e,
        a,
        "install_child",
        Encode!(
            &child2,
            &test_wasm().to_vec(),
            &Encode!(&Some(5u64)).unwrap(),
            &"install".to_string()
        )
        .unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(query::<u64>(&mut e, child2, "get", none()).unwrap(), 5);
}

#[test]
fn bite10_upgrade_with_call_in_flight_runs_callback_on_new_module() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let f = e.add_fault(FaultRule {
        target: FaultTarget::Canister(b),
        caller: Some(a),
        method: None,
        nth: None,
        times: None,
        action: FaultAction::Hold,
    });
    let id = e
        .submit_call(
            user(),
            a,
            "call_then_bump",
            &Encode!(&b, &"inc".to_string()).unwrap(),
        )
        .unwrap();
    e.tick();
    assert_eq!(e.open_call_contexts(a).unwrap(), 1);
    // The IC does not prevent the upgrade; the call context survives it.
    e.install_code(
        user(),
        a,
        InstallMode::Upgrade {
            skip_pre_upgrade: false,
        },
        test_wasm(),
        &Encode!(&None::<String>).unwrap(),
    )
    .unwrap();
    assert_eq!(e.open_call_contexts(a).unwrap(), 1);
    e.remove_fault(f);
    // The callback runs by table index against the new module with a wiped heap: whatever it does, the engine
    // must answer the original ingress call (reply, or a reject from the trapping callback).
    let r = e.await_call(id);
    if let Err(r) = &r {
        assert_eq!(r.code, RejectCode::CanisterError, "{r}");
    }
    assert_eq!(e.open_call_contexts(a).unwrap(), 0);
    // Stopping first avoids the problem: stop waits for the outstanding call.
    let f = e.add_fault(FaultRule {
        target: FaultTarget::Canister(b),
        caller: Some(a),
        method: None,
        nth: None,
        times: None,
        action: FaultAction::Hold,
    });
    let id = e
        .submit_call(
            user(),
            a,
            "call_then_bump",
            &Encode!(&b, &"inc".to_string()).unwrap(),
        )
        .unwrap();
    e.tick();
    let stop = e
        .submit_call(
            user(),
            Principal::management_canister(),
            "stop_canister",
            &Encode!(&engine::mgmt_types::CanisterIdRecord { canister_id: a }).unwrap(),
        )
        .unwrap();
    e.tick();
    assert_eq!(e.status(a).unwrap(), Status::Stopping);
    assert!(e.call_result(stop).is_none());
    e.release_held(f);
    let before = query_after_start(&mut e, a, id, stop);
    assert!(before >= 1000);
}

fn query_after_start(e: &mut Engine, a: Principal, id: MessageId, stop: MessageId) -> u64 {
    let v = Decode!(&e.await_call(id).unwrap(), u64).unwrap();
    e.await_call(stop).unwrap();
    assert_eq!(e.status(a).unwrap(), Status::Stopped);
    e.start_canister(user(), a).unwrap();
    v
}

// ---------------------------------------------------------------------------------------------------------------
// System API groups

#[test]
fn system_api_probe_values_in_update_and_query() {
    let (mut e, c) = setup();
    let p: Probe = update(&mut e, c, "probe", none()).unwrap();
    assert_eq!(p.status, 1);
    assert!(p.replicated);
    assert!(p.perf0 > 0);
    assert_eq!(p.subnet, e.subnet_id());
    assert_eq!(p.nodes, 13);
    assert!(p.caller_is_controller);
    assert_eq!(p.root_key_len, 133);
    assert_eq!(p.caller, user());
    assert_eq!(p.self_id, c);
    assert_eq!(p.canister_version, 1, "created (0) then installed (+1)");
    assert_eq!(p.time, e.time_nanos());
    assert_eq!(p.deadline, None, "ingress has no deadline");
    let q: Probe = query(&mut e, c, "query_probe", none()).unwrap();
    assert!(!q.replicated);
    assert!(q.certificate);
    assert!(query::<bool>(&mut e, c, "certificate_present", none()).unwrap());
    let q: Probe = e
        .query_call(other_user(), c, "query_probe", &none())
        .map(|b| Decode!(&b, Probe).unwrap())
        .unwrap();
    assert!(!q.caller_is_controller);
}

#[test]
fn system_api_reply_reject_and_no_response() {
    let (mut e, c) = setup();
    let r = e
        .update_call(
            user(),
            c,
            "reject_me",
            &Encode!(&"nope".to_string()).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
    assert_eq!(r.message, "nope");
    let r = e
        .update_call(user(), c, "reply_twice", &none())
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    assert_eq!(r.error_code.as_deref(), Some("IC0504"), "{}", r.message);
    let r = e.update_call(user(), c, "no_reply", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0506"), "{}", r.message);
    // The execution returned normally, so its state change is kept.
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 1);
    // Calls are not allowed in a query call.
    let r = e
        .query_call(user(), c, "query_calls_out", &none())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0504"), "{}", r.message);
    assert!(
        r.message
            .contains("cannot be executed in non-replicated query mode"),
        "{}",
        r.message
    );
    // A query method called as an update (replicated query): state still discarded.
    assert_eq!(update::<u64>(&mut e, c, "query_inc", none()).unwrap(), 2);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 1);
}

#[test]
fn system_api_call_then_trap_keeps_state_before_await() {
    let (mut e, c) = setup();
    let r = e
        .update_call(user(), c, "inc_call_self_then_trap", &none())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0503"), "{}", r.message);
    // bump(1) before the await and the self-call's inc are committed.
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
}

#[test]
fn system_api_stable_memory_read_write_grow_and_rollback() {
    let (mut e, c) = setup();
    assert_eq!(query::<u64>(&mut e, c, "stable_size", none()).unwrap(), 0);
    update::<()>(
        &mut e,
        c,
        "stable_write",
        Encode!(&100_000u64, &b"hello".to_vec()).unwrap(),
    )
    .unwrap();
    assert_eq!(query::<u64>(&mut e, c, "stable_size", none()).unwrap(), 2);
    assert_eq!(
        query::<Vec<u8>>(
            &mut e,
            c,
            "stable_read",
            Encode!(&100_000u64, &5u64).unwrap()
        )
        .unwrap(),
        b"hello"
    );
    // A trap after growing and writing: size and bytes restored.
    assert!(e
        .update_call(
            user(),
            c,
            "stable_write_then_trap",
            &Encode!(&(10u64 << 20), &b"x".to_vec()).unwrap()
        )
        .is_err());
    assert_eq!(query::<u64>(&mut e, c, "stable_size", none()).unwrap(), 2);
    assert!(e
        .update_call(
            user(),
            c,
            "stable_write_then_trap",
            &Encode!(&100_000u64, &b"HELLO".to_vec()).unwrap()
        )
        .is_err());
    assert_eq!(
        query::<Vec<u8>>(
            &mut e,
            c,
            "stable_read",
            Encode!(&100_000u64, &5u64).unwrap()
        )
        .unwrap(),
        b"hello"
    );
    // Out-of-bounds read traps.
    let r = e
        .query_call(
            user(),
            c,
            "stable_read",
            &Encode!(&(1u64 << 30), &1u64).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    assert_eq!(e.stable_memory_bytes(c).unwrap(), 2 * 65_536);
}

#[test]
fn system_api_cycles_accept_refund_and_burn() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let b0 = e.cycle_balance(b).unwrap();
    let r = call_via(
        &mut e,
        a,
        b,
        "accept",
        Encode!(&(300 * 1_000_000_000u128)).unwrap(),
        T,
        false,
    )
    .unwrap();
    let (avail, accepted) = Decode!(&r, u128, u128).unwrap();
    assert_eq!(avail, T);
    assert_eq!(accepted, 300_000_000_000);
    let b1 = e.cycle_balance(b).unwrap();
    assert!(
        b1 > b0 + 299_000_000_000 && b1 < b0 + 300_000_000_000,
        "{b0} -> {b1}"
    );
    // Accept then trap: nothing accepted, the caller is refunded in full.
    let a0 = e.cycle_balance(a).unwrap();
    let err = call_via(
        &mut e,
        a,
        b,
        "accept_then_trap",
        Encode!(&T).unwrap(),
        T,
        false,
    )
    .unwrap_err();
    assert_eq!(err.code, 5);
    let a1 = e.cycle_balance(a).unwrap();
    assert!(a0 - a1 < 1_000_000_000, "caller lost {}", a0 - a1);
    assert!(e.cycle_balance(b).unwrap() <= b1);
    // Burn.
    let burned: u128 = update(&mut e, a, "burn", Encode!(&1_000_000u128).unwrap()).unwrap();
    assert_eq!(burned, 1_000_000);
}

#[test]
fn system_api_certified_data_env_vars_and_logs() {
    let (mut e, c) = setup();
    update::<()>(&mut e, c, "set_certified", Encode!(&vec![1u8; 32]).unwrap()).unwrap();
    assert_eq!(e.certified_data(c).unwrap(), vec![1u8; 32]);
    let r = e
        .update_call(
            user(),
            c,
            "set_certified",
            &Encode!(&vec![1u8; 33]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0504"));
    e.update_settings(
        user(),
        c,
        CanisterSettings {
            environment_variables: Some(vec![EnvironmentVariable {
                name: "MODE".into(),
                value: "test".into(),
            }]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        query::<Option<String>>(&mut e, c, "env_var", Encode!(&"MODE".to_string()).unwrap())
            .unwrap(),
        Some("test".into())
    );
    assert_eq!(
        query::<Option<String>>(&mut e, c, "env_var", Encode!(&"NOPE".to_string()).unwrap())
            .unwrap(),
        None
    );
    update::<()>(&mut e, c, "debug", Encode!(&"hello".to_string()).unwrap()).unwrap();
    update::<()>(&mut e, c, "debug", Encode!(&"world".to_string()).unwrap()).unwrap();
    let logs = e.canister_logs(c);
    let n = logs.len();
    assert_eq!(logs[n - 2].text(), "hello");
    assert_eq!(logs[n - 1].text(), "world");
    assert_eq!(logs[n - 1].idx, logs[n - 2].idx + 1);
    assert!(logs[n - 1].timestamp_nanos > logs[n - 2].timestamp_nanos);
    // Queries do not log.
    let _ = e.query_call(user(), c, "query_probe", &none());
    assert_eq!(e.canister_logs(c).len(), n);
    // fetch_canister_logs through the management canister (query).
    let r = e
        .query_call(
            user(),
            Principal::management_canister(),
            "fetch_canister_logs",
            &Encode!(&engine::mgmt_types::CanisterIdRecord { canister_id: c }).unwrap(),
        )
        .unwrap();
    let logs = Decode!(&r, engine::mgmt_types::FetchCanisterLogsResult).unwrap();
    assert_eq!(logs.canister_log_records.len(), n);
    // fetch_canister_logs keeps the newest 4 KiB (log_memory_limit); canister_logs() keeps everything.
    for i in 0..100 {
        update::<()>(
            &mut e,
            c,
            "debug",
            Encode!(&format!("line {i:03} {}", "x".repeat(40))).unwrap(),
        )
        .unwrap();
    }
    let r = e
        .query_call(
            user(),
            Principal::management_canister(),
            "fetch_canister_logs",
            &Encode!(&engine::mgmt_types::CanisterIdRecord { canister_id: c }).unwrap(),
        )
        .unwrap();
    let recs = Decode!(&r, engine::mgmt_types::FetchCanisterLogsResult)
        .unwrap()
        .canister_log_records;
    assert!(recs.iter().map(|r| r.content.len()).sum::<usize>() <= 4096);
    assert_eq!(
        String::from_utf8_lossy(&recs.last().unwrap().content),
        format!("line 099 {}", "x".repeat(40))
    );
    assert_eq!(e.canister_logs(c).len(), n + 100);
    let r = e
        .query_call(
            other_user(),
            Principal::management_canister(),
            "fetch_canister_logs",
            &Encode!(&engine::mgmt_types::CanisterIdRecord { canister_id: c }).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
}

#[test]
fn system_api_instruction_limit_and_performance_counter() {
    let mut cfg = EngineConfig::default();
    cfg.limits.max_instructions_per_message = 50_000_000;
    let mut e = Engine::new(cfg);
    let c = setup_with(&mut e, 100 * T);
    let n: u64 = update(&mut e, c, "count_loop", Encode!(&100_000u64).unwrap()).unwrap();
    assert!((100_000 * 3..=100_000 * 40).contains(&n), "counted {n}");
    let r = e
        .update_call(user(), c, "spin", &Encode!(&100_000_000u64).unwrap())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0522"), "{}", r.message);
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 1);
}

#[test]
fn system_api_inspect_message_rejects_ingress() {
    let (mut e, c) = setup();
    let r = e
        .submit_call(user(), c, "blocked_by_inspect", &none())
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
    assert_eq!(r.error_code.as_deref(), Some("IC0406"));
    // Inter-canister calls skip inspect_message.
    let a = setup_with(&mut e, 100 * T);
    assert!(call_via(&mut e, a, c, "blocked_by_inspect", none(), 0, false).is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// Management canister

#[test]
fn management_factory_create_install_status_info_stop_start_delete() {
    let (mut e, a) = setup();
    let child = update::<Result<Principal, CallError>>(
        &mut e,
        a,
        "create_child",
        Encode!(&T, &None::<Vec<Principal>>).unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(child, canister_id_at(1));
    assert_eq!(e.controllers(child).unwrap(), vec![a]);
    update::<Result<(), CallError>>(
        &mut e,
        a,
        "install_child",
        Encode!(
            &child,
            &test_wasm().to_vec(),
            &Encode!(&Some(7u64)).unwrap(),
            &"install".to_string()
        )
        .unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(query::<u64>(&mut e, child, "get", none()).unwrap(), 7);
    let s = update::<Result<ChildStatus, CallError>>(
        &mut e,
        a,
        "child_status",
        Encode!(&child).unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        s.module_hash.as_deref(),
        Some(&e.module_hash(child).unwrap().unwrap()[..])
    );
    assert!(s.memory_size > 0);
    let (total, hash, ctrls, n) = update::<
        Result<(u64, Option<Vec<u8>>, Vec<Principal>, u64), CallError>,
    >(&mut e, a, "child_info", Encode!(&child).unwrap())
    .unwrap()
    .unwrap();
    assert_eq!((total, n), (2, 2));
    assert!(hash.is_some());
    assert_eq!(ctrls, vec![a]);
    // Not a controller: IC0512.
    let r = e.stop_canister(user(), child).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0512"));
    // Delete a running canister: IC0510.
    let r = update::<Result<(), CallError>>(&mut e, a, "delete_child", Encode!(&child).unwrap())
        .unwrap()
        .unwrap_err();
    assert_eq!(r.code, 5);
    assert!(r.message.contains("must be stopped"), "{}", r.message);
    update::<Result<(), CallError>>(&mut e, a, "stop_child", Encode!(&child).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.status(child).unwrap(), Status::Stopped);
    let r = e.update_call(user(), child, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0508"));
    let r = e.query_call(user(), child, "get", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0508"));
    update::<Result<(), CallError>>(&mut e, a, "start_child", Encode!(&child).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(update::<u64>(&mut e, child, "inc", none()).unwrap(), 8);
    update::<Result<(), CallError>>(&mut e, a, "stop_child", Encode!(&child).unwrap())
        .unwrap()
        .unwrap();
    update::<Result<(), CallError>>(&mut e, a, "delete_child", Encode!(&child).unwrap())
        .unwrap()
        .unwrap();
    let r = e.update_call(user(), child, "inc", &none()).unwrap_err();
    assert_eq!(r.code, RejectCode::DestinationInvalid);
    assert_eq!(r.error_code.as_deref(), Some("IC0301"));
}

#[test]
fn management_chunked_install_deposit_cycles_raw_rand_update_settings() {
    let (mut e, a) = setup();
    let child = update::<Result<Principal, CallError>>(
        &mut e,
        a,
        "create_child",
        Encode!(&T, &None::<Vec<Principal>>).unwrap(),
    )
    .unwrap()
    .unwrap();
    let n = update::<Result<u64, CallError>>(
        &mut e,
        a,
        "install_child_chunked",
        Encode!(
            &child,
            &test_wasm().to_vec(),
            &Encode!(&Some(3u64)).unwrap()
        )
        .unwrap(),
    )
    .unwrap()
    .unwrap();
    assert!(n >= 1);
    assert_eq!(query::<u64>(&mut e, child, "get", none()).unwrap(), 3);
    let before = e.cycle_balance(child).unwrap();
    update::<Result<(), CallError>>(&mut e, a, "deposit", Encode!(&child, &(5 * T)).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.cycle_balance(child).unwrap(), before + 5 * T);
    let r1: Vec<u8> = update(&mut e, a, "raw_rand", none()).unwrap();
    let r2: Vec<u8> = update(&mut e, a, "raw_rand", none()).unwrap();
    assert_eq!(r1.len(), 32);
    assert_ne!(r1, r2);
    // update_settings from the parent: hand the child to the user.
    update::<Result<(), CallError>>(
        &mut e,
        a,
        "set_child_controllers",
        Encode!(&child, &vec![user(), a]).unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(e.controllers(child).unwrap(), vec![user(), a]);
    let s = e.canister_status(user(), child).unwrap();
    assert_eq!(s.settings.controllers, vec![user(), a]);
    // Host API: canister_status by a non-controller.
    assert_eq!(
        e.canister_status(other_user(), child)
            .unwrap_err()
            .error_code
            .as_deref(),
        Some("IC0512")
    );
    // create_canister and raw_rand are for canisters only.
    let r = e
        .update_call(
            user(),
            Principal::management_canister(),
            "raw_rand",
            &none(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
}

#[test]
fn management_install_modes_upgrade_reinstall_uninstall() {
    let (mut e, c) = setup();
    update::<u64>(&mut e, c, "inc", none()).unwrap();
    update::<u64>(&mut e, c, "inc", none()).unwrap();
    let r = e
        .install_code(
            user(),
            c,
            InstallMode::Install,
            test_wasm(),
            &Encode!(&None::<u64>).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0514"));
    update::<()>(
        &mut e,
        c,
        "set_certified",
        Encode!(&b"cert".to_vec()).unwrap(),
    )
    .unwrap();
    update::<()>(&mut e, c, "set_timer", Encode!(&1000u64).unwrap()).unwrap();
    assert!(e.global_timer(c).unwrap() > 0);
    // Upgrade keeps stable memory (counter survives through pre/post_upgrade) and certified data, and resets the
    // global timer (the ic-cdk-timers heap state is gone with the old heap).
    let v0 = e.canister_version(c).unwrap();
    e.install_code(
        user(),
        c,
        InstallMode::Upgrade {
            skip_pre_upgrade: false,
        },
        test_wasm(),
        &Encode!(&None::<String>).unwrap(),
    )
    .unwrap();
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    assert_eq!(e.canister_version(c).unwrap(), v0 + 1);
    assert_eq!(
        query::<Vec<String>>(&mut e, c, "events", none()).unwrap(),
        vec!["post_upgrade".to_string()]
    );
    assert_eq!(e.certified_data(c).unwrap(), b"cert");
    assert_eq!(e.global_timer(c).unwrap(), 0);
    // A trapping post_upgrade rolls the whole upgrade back (old heap is intact: events still from before).
    update::<u64>(&mut e, c, "inc", none()).unwrap();
    let r = e
        .install_code(
            user(),
            c,
            InstallMode::Upgrade {
                skip_pre_upgrade: false,
            },
            test_wasm(),
            &Encode!(&Some("trap".to_string())).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 3);
    assert_eq!(e.canister_version(c).unwrap(), v0 + 1);
    assert_eq!(
        query::<Vec<u8>>(&mut e, c, "stable_read", Encode!(&0u64, &8u64).unwrap()).unwrap(),
        2u64.to_le_bytes().to_vec()
    );
    assert_eq!(e.certified_data(c).unwrap(), b"cert");
    // skip_pre_upgrade: the counter in stable memory is the one saved by the last pre_upgrade (2).
    e.install_code(
        user(),
        c,
        InstallMode::Upgrade {
            skip_pre_upgrade: true,
        },
        test_wasm(),
        &Encode!(&None::<String>).unwrap(),
    )
    .unwrap();
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    // Reinstall wipes stable memory and runs init.
    e.install_code(
        user(),
        c,
        InstallMode::Reinstall,
        test_wasm(),
        &Encode!(&Some(40u64)).unwrap(),
    )
    .unwrap();
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 40);
    assert_eq!(query::<u64>(&mut e, c, "stable_size", none()).unwrap(), 0);
    // Uninstall.
    e.uninstall_code(user(), c).unwrap();
    assert_eq!(e.module_hash(c).unwrap(), None);
    let r = e.update_call(user(), c, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0537"));
    // Not a controller.
    let r = e
        .install_code(
            other_user(),
            c,
            InstallMode::Install,
            test_wasm(),
            &Encode!(&None::<u64>).unwrap(),
        )
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0512"));
    // Gzipped modules are accepted; module_hash is over the bytes as uploaded.
    let gz = gzip(test_wasm());
    e.install_code(
        user(),
        c,
        InstallMode::Install,
        &gz,
        &Encode!(&Some(1u64)).unwrap(),
    )
    .unwrap();
    let h: [u8; 32] = sha2_256(&gz);
    assert_eq!(e.module_hash(c).unwrap(), Some(h));
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 1);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b).unwrap();
    enc.finish().unwrap()
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

#[test]
fn management_settings_and_freezing() {
    let (mut e, c) = setup();
    let too_many: Vec<Principal> = (0..11u8).map(|i| Principal::from_slice(&[i, 1])).collect();
    let r = e
        .update_settings(
            user(),
            c,
            CanisterSettings {
                controllers: Some(too_many),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    e.update_settings(
        user(),
        c,
        CanisterSettings {
            freezing_threshold: Some(1_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        e.canister_status(user(), c)
            .unwrap()
            .settings
            .freezing_threshold,
        1_000
    );
    // A canister below the prepayment for an update is out of cycles: IC0207 (SYS_TRANSIENT).
    e.set_cycles(c, 1_000_000).unwrap();
    let r = e.update_call(user(), c, "inc", &none()).unwrap_err();
    assert_eq!(r.code, RejectCode::SysTransient);
    assert_eq!(r.error_code.as_deref(), Some("IC0207"));
    // Queries are free.
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Bad host-API input: the IC's rejects, never a panic

#[test]
fn bad_input_unknown_canister_malformed_wasm_missing_method_oversize_payload() {
    let (mut e, c) = setup();
    let ghost = canister_id_at(77);
    for r in [
        e.update_call(user(), ghost, "inc", &none()).unwrap_err(),
        e.query_call(user(), ghost, "get", &none()).unwrap_err(),
        e.install_code(user(), ghost, InstallMode::Install, test_wasm(), &[])
            .unwrap_err(),
        e.stop_canister(user(), ghost).unwrap_err(),
    ] {
        assert_eq!(r.code, RejectCode::DestinationInvalid, "{r}");
        assert_eq!(r.error_code.as_deref(), Some("IC0301"));
    }
    assert!(e.cycle_balance(ghost).is_err());
    let empty = e.create_canister(user(), None, T).unwrap();
    for bad in [
        &b"garbage"[..],
        b"\0asm\x01\0\0\0\x05",
        b"",
        &[0x1f, 0x8b, 0x08, 0, 0][..],
    ] {
        let r = e
            .install_code(user(), empty, InstallMode::Install, bad, &[])
            .unwrap_err();
        assert_eq!(r.error_code.as_deref(), Some("IC0505"), "{r}");
        assert_eq!(r.code, RejectCode::CanisterError);
    }
    // A module importing something that is not in ic0.
    let bad_import = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x0b\x01\x03env\x03foo\0\0";
    let r = e
        .install_code(user(), empty, InstallMode::Install, bad_import, &[])
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0505"), "{r}");
    assert!(r.message.contains("foo"));
    let r = e
        .update_call(user(), c, "no_such_method", &none())
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    assert_eq!(r.error_code.as_deref(), Some("IC0536"));
    let r = e.query_call(user(), c, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0536"));
    let r = e.update_call(user(), empty, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0537"));
    let big = vec![0u8; 2 * 1024 * 1024 + 1];
    let r = e.update_call(user(), c, "echo", &big).unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject, "{r}");
    let ok = Encode!(&vec![1u8; 2 * 1024 * 1024 - 100]).unwrap();
    assert_eq!(
        e.update_call(user(), c, "echo", &ok).unwrap().len(),
        ok.len()
    );
    // Bad candid to the management canister.
    let r = e
        .update_call(
            user(),
            Principal::management_canister(),
            "install_code",
            b"not candid",
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
    let r = e
        .update_call(
            user(),
            Principal::management_canister(),
            "no_such_method",
            &none(),
        )
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
    // Unknown message id.
    assert!(e.await_call(MessageId(999_999)).is_err());
    assert!(e.call_result(MessageId(999_999)).is_none());
    // Arguments that do not decode: the canister traps (IC0503 from the ic-cdk decoder).
    let r = e
        .update_call(user(), c, "stable_write", b"junk")
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError);
}

// ---------------------------------------------------------------------------------------------------------------
// Determinism, compile cache

fn script(seed: [u8; 32]) -> (Vec<Principal>, Vec<Vec<u8>>, u64) {
    let mut e = Engine::new(EngineConfig {
        seed,
        ..Default::default()
    });
    let a = setup_with(&mut e, 100 * T);
    let b = setup_with(&mut e, 100 * T);
    let mut out = vec![];
    out.push(e.update_call(user(), a, "raw_rand", &none()).unwrap());
    out.push(
        e.update_call(
            user(),
            a,
            "call",
            &call_arg(b, "probe", none(), 1_000, true),
        )
        .unwrap(),
    );
    out.push(e.update_call(user(), b, "probe", &none()).unwrap());
    out.push(
        e.update_call(
            user(),
            a,
            "create_child",
            &Encode!(&T, &None::<Vec<Principal>>).unwrap(),
        )
        .unwrap(),
    );
    out.push(e.cycle_balance(a).unwrap().to_le_bytes().to_vec());
    (vec![a, b], out, e.time_nanos())
}

#[test]
fn determinism_same_inputs_same_bytes() {
    let x = script([1; 32]);
    let y = script([1; 32]);
    assert_eq!(x, y);
    assert_eq!(x.0[0].to_text(), "lxzze-o7777-77777-aaaaa-cai");
    assert_eq!(x.0[1].to_text(), "lqy7q-dh777-77777-aaaaq-cai");
    let z = script([2; 32]);
    assert_ne!(x.1[0], z.1[0], "raw_rand depends on the seed");
    assert_eq!(
        Engine::new(EngineConfig::default()).time_nanos(),
        GENESIS_NANOS + 1
    );
}

#[test]
fn compile_cache_installing_the_same_wasm_100_times_compiles_once() {
    let mut e = engine();
    for _ in 0..100 {
        setup_with(&mut e, T);
    }
    assert!(
        e.modules_compiled() <= 1,
        "compiled {}",
        e.modules_compiled()
    );
    assert!(e.metrics().compile_cache_hits >= 99);
}

#[test]
fn composite_query_calls_other_canisters_queries_and_discards_state() {
    let (mut e, c) = setup();
    let a = setup_with(&mut e, 100 * T);
    let b = setup_with(&mut e, 100 * T);
    update::<u64>(&mut e, a, "inc", none()).unwrap();
    for _ in 0..2 {
        update::<u64>(&mut e, b, "inc", none()).unwrap();
    }
    // 1 (a) + 2 (b) + 1 (c's own counter bumped inside the composite query).
    assert_eq!(
        query::<u64>(&mut e, c, "composite_sum", Encode!(&a, &b).unwrap()).unwrap(),
        4
    );
    assert_eq!(
        query::<u64>(&mut e, c, "get", none()).unwrap(),
        0,
        "composite query state is discarded"
    );
    assert_eq!(
        query::<u64>(&mut e, c, "composite_sum", Encode!(&a, &b).unwrap()).unwrap(),
        4
    );
    // Calling an update method from a composite query is rejected.
    let r: String = query(&mut e, c, "composite_call_update", Encode!(&a).unwrap()).unwrap();
    assert!(
        r.contains("536") || r.to_lowercase().contains("query method"),
        "{r}"
    );
    // A composite query called as an update (replicated mode): IC0527.
    let r = e
        .update_call(user(), c, "composite_sum", &Encode!(&a, &b).unwrap())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0527"));
}

#[test]
fn on_low_wasm_memory_runs_once_when_the_threshold_is_crossed() {
    let (mut e, c) = setup();
    let heap = e.heap_bytes(c).unwrap();
    e.update_settings(
        user(),
        c,
        CanisterSettings {
            wasm_memory_limit: Some(heap + (8 << 20)),
            wasm_memory_threshold: Some(4 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    update::<u64>(&mut e, c, "inc", none()).unwrap();
    assert!(!query::<Vec<String>>(&mut e, c, "events", none())
        .unwrap()
        .contains(&"low memory".to_string()));
    // Grow the heap by 6 MiB: less than 4 MiB left below the limit.
    update::<u64>(&mut e, c, "alloc", Encode!(&6u32).unwrap()).unwrap();
    e.tick();
    e.tick();
    let ev = query::<Vec<String>>(&mut e, c, "events", none()).unwrap();
    assert_eq!(
        ev.iter().filter(|x| *x == "low memory").count(),
        1,
        "{ev:?}"
    );
    // Growing beyond wasm_memory_limit in an update traps (IC0539 or the allocator's trap).
    let r = e
        .update_call(user(), c, "alloc", &Encode!(&16u32).unwrap())
        .unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterError, "{r}");
}

#[test]
fn canister_metadata_and_custom_section_validation() {
    let (mut e, a) = setup();
    let mut wasm = test_wasm().to_vec();
    let mut custom = |name: &str, data: &[u8]| {
        let mut body = vec![];
        leb(&mut body, name.len() as u64);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        section(&mut wasm, 0, body);
    };
    custom("icp:public candid:service", b"service : {}");
    custom("icp:private secret", b"s3cret");
    let c = e
        .create_canister(
            user(),
            Some(CanisterSettings {
                controllers: Some(vec![user(), a]),
                ..Default::default()
            }),
            10 * T,
        )
        .unwrap();
    e.install_code(
        user(),
        c,
        InstallMode::Install,
        &wasm,
        &Encode!(&None::<u64>).unwrap(),
    )
    .unwrap();
    let meta = |name: &str| {
        Encode!(&engine::mgmt_types::CanisterMetadataArgs {
            canister_id: c,
            name: name.into()
        })
        .unwrap()
    };
    let other = setup_with(&mut e, 100 * T);
    let r = update::<CallRes>(
        &mut e,
        other,
        "call",
        call_arg(
            Principal::management_canister(),
            "canister_metadata",
            meta("candid:service"),
            0,
            true,
        ),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        Decode!(&r, engine::mgmt_types::CanisterMetadataResult)
            .unwrap()
            .value
            .into_vec(),
        b"service : {}"
    );
    // Private: only controllers (a is one, `other` is not).
    assert!(update::<CallRes>(
        &mut e,
        other,
        "call",
        call_arg(
            Principal::management_canister(),
            "canister_metadata",
            meta("secret"),
            0,
            true
        )
    )
    .unwrap()
    .is_err());
    let r = update::<CallRes>(
        &mut e,
        a,
        "call",
        call_arg(
            Principal::management_canister(),
            "canister_metadata",
            meta("secret"),
            0,
            true,
        ),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        Decode!(&r, engine::mgmt_types::CanisterMetadataResult)
            .unwrap()
            .value
            .into_vec(),
        b"s3cret"
    );
    // An `icp:` section without public/private scope is invalid (IC0505).
    let mut bad = test_wasm().to_vec();
    let mut body = vec![];
    leb(&mut body, 7);
    body.extend_from_slice(b"icp:foo");
    section(&mut bad, 0, body);
    let empty = e.create_canister(user(), None, 10 * T).unwrap();
    let r = e
        .install_code(user(), empty, InstallMode::Install, &bad, &[])
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0505"), "{r}");
}

#[test]
fn cycles_call_prepayments_are_settled_after_the_response() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let (a0, b0) = (e.cycle_balance(a).unwrap(), e.cycle_balance(b).unwrap());
    call_via(&mut e, a, b, "inc", none(), 0, true).unwrap();
    let (a1, b1) = (e.cycle_balance(a).unwrap(), e.cycle_balance(b).unwrap());
    let spent = a0 - a1;
    // Ingress fee + two executions (method, callback) + call fee 260 000 + bytes; the 2 MiB response and 40 B
    // execution prepayments come back.
    assert!(spent > 260_000 + 2 * 5_000_000, "spent {spent}");
    assert!(
        spent < 200_000_000,
        "spent {spent}: a prepayment was not refunded"
    );
    let b_spent = b0 - b1;
    assert!(
        b_spent > 5_000_000 && b_spent < 100_000_000,
        "callee spent {b_spent}"
    );
    // Free cost schedule: nothing is charged.
    let mut e = Engine::new(EngineConfig {
        fees: FeeConfig::free(),
        ..Default::default()
    });
    let a = setup_with(&mut e, 100 * T);
    let b = setup_with(&mut e, 100 * T);
    call_via(&mut e, a, b, "inc", none(), 0, true).unwrap();
    assert_eq!(e.cycle_balance(a).unwrap(), 100 * T);
    assert_eq!(e.cycle_balance(b).unwrap(), 100 * T);
}
