//! Fault injection, metrics, cleanup callbacks, ordering and large stable memory.
mod common;
use candid::{Decode, Encode, Principal};
use common::*;
use engine::*;
use std::time::Duration;

fn call_via(
    e: &mut Engine,
    a: Principal,
    callee: Principal,
    method: &str,
    arg: Vec<u8>,
    bounded: bool,
) -> CallRes {
    update::<CallRes>(e, a, "call", call_arg(callee, method, arg, 0, bounded))
        .expect("call method replies")
}

fn rule(target: FaultTarget, method: Option<&str>, action: FaultAction) -> FaultRule {
    FaultRule {
        target,
        caller: None,
        method: method.map(|m| m.to_string()),
        nth: None,
        times: None,
        action,
    }
}

#[test]
fn fault_management_install_code_rejected_for_factory() {
    let (mut e, a) = setup();
    let child = update::<Result<Principal, CallError>>(
        &mut e,
        a,
        "create_child",
        Encode!(&T, &None::<Vec<Principal>>).unwrap(),
    )
    .unwrap()
    .unwrap();
    let f = e.add_fault(FaultRule {
        target: FaultTarget::Management,
        caller: Some(a),
        method: Some("install_code".into()),
        nth: None,
        times: Some(1),
        action: FaultAction::Reject {
            code: RejectCode::SysTransient,
            message: "injected".into(),
        },
    });
    let install = Encode!(
        &child,
        &test_wasm().to_vec(),
        &Encode!(&None::<u64>).unwrap(),
        &"install".to_string()
    )
    .unwrap();
    let r = update::<Result<(), CallError>>(&mut e, a, "install_child", install.clone())
        .unwrap()
        .unwrap_err();
    assert_eq!((r.code, r.message.as_str()), (2, "injected"));
    assert_eq!(e.module_hash(child).unwrap(), None);
    // times = 1: the next attempt goes through.
    update::<Result<(), CallError>>(&mut e, a, "install_child", install)
        .unwrap()
        .unwrap();
    assert!(e.module_hash(child).unwrap().is_some());
    e.remove_fault(f);
}

#[test]
fn fault_trap_nth_and_times() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    e.add_fault(FaultRule {
        target: FaultTarget::Canister(b),
        caller: Some(a),
        method: Some("inc".into()),
        nth: Some(2),
        times: Some(2),
        action: FaultAction::Trap {
            message: "import_put_chunk exploded".into(),
        },
    });
    let mut codes = vec![];
    for _ in 0..5 {
        codes.push(match call_via(&mut e, a, b, "inc", none(), false) {
            Ok(_) => 0,
            Err(err) => {
                assert!(err.message.contains("import_put_chunk exploded"), "{err:?}");
                err.code
            }
        });
    }
    assert_eq!(codes, vec![0, 5, 5, 0, 0]);
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 3);
    assert!(e
        .canister_logs(b)
        .iter()
        .any(|l| l.text() == "[TRAP]: import_put_chunk exploded"));
    // Ingress from users is matched too.
    e.add_fault(rule(
        FaultTarget::Canister(b),
        Some("get"),
        FaultAction::Reject {
            code: RejectCode::CanisterReject,
            message: "no".into(),
        },
    ));
    let r = e.query_call(user(), b, "get", &none()).unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
}

#[test]
fn fault_hold_release_and_delay() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let f = e.add_fault(rule(
        FaultTarget::Canister(b),
        Some("inc"),
        FaultAction::Hold,
    ));
    let id = e
        .submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
        .unwrap();
    e.run_until_idle(10).unwrap();
    assert!(e.call_result(id).is_none());
    assert_eq!(e.held_count(f), 1);
    assert_eq!(e.release_held(f), 1);
    let r = Decode!(&e.await_call(id).unwrap(), CallRes).unwrap();
    assert_eq!(Decode!(&r.unwrap(), u64).unwrap(), 1);
    e.remove_fault(f);
    // Delay by 5 rounds.
    e.add_fault(FaultRule {
        times: Some(1),
        ..rule(
            FaultTarget::Canister(b),
            Some("inc"),
            FaultAction::DelayRounds(5),
        )
    });
    let id = e
        .submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
        .unwrap();
    let start = e.round();
    e.await_call(id).unwrap();
    assert!(e.round() - start >= 5);
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 2);
}

#[test]
fn fault_reply_answers_with_the_given_bytes_without_running_the_callee() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let bomb = b"DIDL\x01\x6d\x7f\x01\x00\xff\xff\xff\xff\x0f".to_vec();
    e.add_fault(FaultRule {
        times: Some(1),
        ..rule(
            FaultTarget::Canister(b),
            Some("inc"),
            FaultAction::Reply {
                bytes: bomb.clone(),
            },
        )
    });
    let r = call_via(&mut e, a, b, "inc", none(), true);
    assert_eq!(r.unwrap(), bomb);
    assert_eq!(
        query::<u64>(&mut e, b, "get", none()).unwrap(),
        0,
        "b never ran"
    );
    // The rule fired once: the next call runs b.
    let r = call_via(&mut e, a, b, "inc", none(), true);
    assert_eq!(Decode!(&r.unwrap(), u64).unwrap(), 1);
    // An ingress query is answered the same way.
    e.add_fault(rule(
        FaultTarget::Canister(b),
        Some("get"),
        FaultAction::Reply {
            bytes: Encode!(&7u64).unwrap(),
        },
    ));
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 7);
}

/// `a` calls `b.inc` with a 10-second bounded wait; the engine runs until idle. The call's id.
fn inc_with_10s_timeout(e: &mut Engine, a: Principal, b: Principal) -> MessageId {
    let arg = Encode!(&b, &"inc".to_string(), &none(), &10u32).unwrap();
    let id = e.submit_call(user(), a, "call_with_timeout", &arg).unwrap();
    e.run_until_idle(10).unwrap();
    id
}

fn lose_one_inc_reply(b: Principal) -> FaultRule {
    FaultRule {
        times: Some(1),
        ..rule(
            FaultTarget::Canister(b),
            Some("inc"),
            FaultAction::LoseReply,
        )
    }
}

#[test]
fn fault_lose_reply_runs_the_callee_and_gives_sys_unknown_at_the_deadline() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    e.add_fault(lose_one_inc_reply(b));
    let id = inc_with_10s_timeout(&mut e, a, b);
    assert!(e.call_result(id).is_none(), "no reply before the deadline");
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 1, "b ran");
    e.advance_time(Duration::from_secs(11));
    let r = Decode!(&e.await_call(id).unwrap(), CallRes)
        .unwrap()
        .unwrap_err();
    assert_eq!(r.code, 6);
    // An unbounded caller gets code 6 at once.
    e.add_fault(lose_one_inc_reply(b));
    let r = call_via(&mut e, a, b, "inc", none(), false);
    assert_eq!(r.unwrap_err().code, 6);
    assert_eq!(query::<u64>(&mut e, b, "get", none()).unwrap(), 2);
}

#[test]
fn fault_timeout_gives_bounded_callers_sys_unknown_at_deadline() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    e.add_fault(rule(
        FaultTarget::Canister(b),
        Some("inc"),
        FaultAction::Timeout,
    ));
    let id = inc_with_10s_timeout(&mut e, a, b);
    assert!(e.call_result(id).is_none());
    e.advance_time(Duration::from_secs(11));
    let r = Decode!(&e.await_call(id).unwrap(), CallRes)
        .unwrap()
        .unwrap_err();
    assert_eq!(r.code, 6);
    assert_eq!(
        query::<u64>(&mut e, b, "get", none()).unwrap(),
        0,
        "the request was lost"
    );
    // ic-cdk-timers: a timer whose self-call times out is retried (reject code 6 → retry).
    e.add_fault(FaultRule {
        times: Some(1),
        ..rule(
            FaultTarget::Canister(a),
            Some("<ic-cdk internal> timer_executor"),
            FaultAction::Timeout,
        )
    });
    update::<()>(&mut e, a, "set_timer", Encode!(&1u64).unwrap()).unwrap();
    e.advance_time(Duration::from_secs(2));
    e.tick();
    e.tick();
    e.advance_time(Duration::from_secs(301));
    for _ in 0..5 {
        e.tick();
    }
    assert_eq!(
        query::<u64>(&mut e, a, "get", none()).unwrap(),
        100,
        "timer retried after code 6"
    );
}

#[test]
fn metrics_record_instructions_messages_and_bytes() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    e.reset_metrics();
    call_via(&mut e, a, b, "inc", none(), true).unwrap();
    let recs = &e.metrics().records;
    assert!(recs
        .iter()
        .any(|r| r.canister == a && r.method == "call" && r.kind == ExecKind::InspectMessage));
    let call = recs
        .iter()
        .find(|r| r.canister == a && r.method == "call" && r.kind == ExecKind::Update)
        .unwrap();
    assert_eq!(call.messages_sent, 1);
    assert!(call.instructions > 0);
    assert!(call.bytes_sent >= 3 + 6, "method name + candid arg");
    let inc = recs
        .iter()
        .find(|r| r.canister == b && r.method == "inc")
        .unwrap();
    assert_eq!(inc.messages_sent, 0);
    assert!(inc.bytes_sent > 0, "reply bytes");
    let cb = recs
        .iter()
        .find(|r| r.canister == a && r.kind == ExecKind::ReplyCallback)
        .unwrap();
    assert_eq!(cb.method, "inc");
    assert!(cb.bytes_received > 0);
    let t = e.metrics().totals(a);
    assert_eq!(t.executions, 3, "inspect_message, call, reply callback");
    assert_eq!(t.messages_sent, 1);
    e.reset_metrics();
    assert!(e.metrics().records.is_empty());
    assert_eq!(e.metrics().totals(a).executions, 0);
}

#[test]
fn cleanup_runs_after_trapping_callback_and_ordering_is_preserved() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    // Ten calls from a to b submitted in one round are delivered in order.
    let ids: Vec<_> = (0..10)
        .map(|_| {
            e.submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
                .unwrap()
        })
        .collect();
    let vals: Vec<u64> = ids
        .into_iter()
        .map(|id| {
            let r = Decode!(&e.await_call(id).unwrap(), CallRes)
                .unwrap()
                .unwrap();
            Decode!(&r, u64).unwrap()
        })
        .collect();
    assert_eq!(vals, (1..=10).collect::<Vec<_>>());
    // inc_call_self_then_trap: the callback traps after the await; ic-cdk's cleanup runs (and the call still
    // gets the trap reject, not a hang).
    let r = e
        .update_call(user(), a, "inc_call_self_then_trap", &none())
        .unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0503"));
    assert!(
        e.metrics()
            .records
            .iter()
            .any(|r| r.kind == ExecKind::Cleanup && r.canister == a),
        "ic-cdk cleanup ran"
    );
    assert_eq!(e.open_call_contexts(a).unwrap(), 0);
}

#[test]
fn uninstall_rejects_open_call_contexts() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    let f = e.add_fault(rule(FaultTarget::Canister(b), None, FaultAction::Hold));
    let id = e
        .submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
        .unwrap();
    e.tick();
    e.uninstall_code(user(), a).unwrap();
    let r = e.await_call(id).unwrap_err();
    assert_eq!(r.code, RejectCode::CanisterReject);
    e.release_held(f);
    e.run_until_idle(10).unwrap();
    assert_eq!(e.open_call_contexts(a).unwrap(), 0);
}

#[test]
fn large_stable_memory_rollback_is_cheap() {
    let (mut e, c) = setup();
    // 256 MiB of stable memory, written in 64 MiB updates.
    for i in 0..4u64 {
        e.update_call(
            user(),
            c,
            "stable_fill",
            &Encode!(&(i * 64), &64u64, &0xAAu8).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(e.stable_memory_bytes(c).unwrap(), 256 << 20);
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let r = e
            .update_call(
                user(),
                c,
                "stable_touch_then_trap",
                &Encode!(&(100u64 << 20)).unwrap(),
            )
            .unwrap_err();
        assert_eq!(r.error_code.as_deref(), Some("IC0503"));
    }
    let per = t.elapsed() / 20;
    assert!(
        per < Duration::from_millis(200),
        "a trapping message over 256 MiB stable memory took {per:?}"
    );
    let b: Vec<u8> = query(
        &mut e,
        c,
        "stable_read",
        Encode!(&(100u64 << 20), &4u64).unwrap(),
    )
    .unwrap();
    assert_eq!(b, vec![0xAA; 4]);
}

#[test]
fn stop_request_times_out_after_five_minutes_and_refunds_are_seen_by_callbacks() {
    let (mut e, a) = setup();
    let b = setup_with(&mut e, 100 * T);
    // Refund: b does not accept, so the whole amount comes back and msg_cycles_refunded reports it.
    let (_, refunded, ok): (u128, u128, bool) = e
        .update_call(
            user(),
            a,
            "call_with_cycles_report",
            &Encode!(&b, &"inc".to_string(), &T).unwrap(),
        )
        .map(|r| Decode!(&r, u128, u128, bool).unwrap())
        .unwrap();
    assert!(ok);
    assert_eq!(refunded, T);
    // A stop that cannot complete (a call of a is held) is rejected with IC0206 after 5 minutes.
    let f = e.add_fault(rule(FaultTarget::Canister(b), None, FaultAction::Hold));
    let _call = e
        .submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
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
    e.advance_time(Duration::from_secs(301));
    let r = e.await_call(stop).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0206"));
    assert_eq!(r.code, RejectCode::SysTransient);
    assert_eq!(e.status(a).unwrap(), Status::Stopping);
    // New calls to a stopping canister: IC0509.
    let r = e.update_call(user(), a, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0509"));
    e.release_held(f);
    e.run_until_idle(10).unwrap();
    e.start_canister(user(), a).unwrap();
    assert_eq!(e.status(a).unwrap(), Status::Running);
}

#[test]
fn engine_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Engine>();
}

#[test]
fn heartbeat_runs_every_round_while_running() {
    let mut e = engine();
    let c = e.create_canister(user(), None, 100 * T).unwrap();
    e.install_code(user(), c, InstallMode::Install, &heartbeat_module(), &[])
        .unwrap();
    let p0 = e.stable_memory_bytes(c).unwrap() / 65_536;
    for _ in 0..5 {
        e.tick();
    }
    assert_eq!(e.stable_memory_bytes(c).unwrap() / 65_536, p0 + 5);
    assert!(e
        .metrics()
        .records
        .iter()
        .any(|r| r.kind == ExecKind::Heartbeat && r.canister == c));
    e.stop_canister(user(), c).unwrap();
    let p1 = e.stable_memory_bytes(c).unwrap();
    e.tick();
    e.tick();
    assert_eq!(
        e.stable_memory_bytes(c).unwrap(),
        p1,
        "no heartbeat while stopped"
    );
}

#[test]
fn instructions_of_a_known_loop_are_counted_exactly() {
    let mut e = engine();
    let c = e.create_canister(user(), None, 100 * T).unwrap();
    e.install_code(user(), c, InstallMode::Install, &loop_module(10_000), &[])
        .unwrap();
    let r = e.update_call(user(), c, "loop", &[]).unwrap();
    let counted = u64::from_le_bytes(r[..8].try_into().unwrap());
    // 5 instructions per iteration (local.get, i32.const, i32.sub, local.tee, br_if) + 6 around the loop.
    assert_eq!(counted, 5 * 10_000 + 6);
    let rec = e
        .metrics()
        .records
        .iter()
        .rev()
        .find(|r| r.canister == c && r.method == "loop")
        .unwrap();
    assert!(rec.instructions >= counted);
}

#[test]
fn a_canister_out_of_cycles_is_frozen_then_uninstalled_as_storage_is_charged() {
    let (mut e, c) = setup();
    e.set_cycles(c, 1_000).unwrap();
    let r = e.update_call(user(), c, "inc", &none()).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0207"));
    e.advance_time(Duration::from_secs(3600));
    e.tick();
    assert_eq!(e.cycle_balance(c).unwrap(), 0);
    assert_eq!(e.module_hash(c).unwrap(), None, "uninstalled");
    assert_eq!(e.controllers(c).unwrap(), vec![user()], "settings kept");
}

#[test]
fn call_perform_fails_when_the_per_pair_queue_is_full() {
    let mut cfg = EngineConfig::default();
    cfg.limits.max_queue_per_pair = 3;
    let mut e = Engine::new(cfg);
    let a = setup_with(&mut e, 100 * T);
    let b = setup_with(&mut e, 100 * T);
    let f = e.add_fault(rule(FaultTarget::Canister(b), None, FaultAction::Hold));
    let ids: Vec<_> = (0..4)
        .map(|_| {
            e.submit_call(user(), a, "call", &call_arg(b, "inc", none(), 0, false))
                .unwrap()
        })
        .collect();
    e.run_until_idle(10).unwrap();
    // The 4th call could not be enqueued: ic-cdk reports CallPerformFailed at once.
    let r = Decode!(&e.await_call(ids[3]).unwrap(), CallRes)
        .unwrap()
        .unwrap_err();
    assert_eq!(r.kind, "perform_failed");
    e.release_held(f);
    for id in &ids[..3] {
        assert!(Decode!(&e.await_call(*id).unwrap(), CallRes)
            .unwrap()
            .is_ok());
    }
}

#[test]
fn rollback_of_a_module_without_a_shadow_stack() {
    let mut e = engine();
    let c = e.create_canister(user(), None, 100 * T).unwrap();
    e.install_code(user(), c, InstallMode::Install, &poke_module(), &[])
        .unwrap();
    assert_eq!(
        e.query_call(user(), c, "peek", &[]).unwrap(),
        vec![0, 0, 0, 0]
    );
    e.update_call(user(), c, "set", &[]).unwrap();
    assert_eq!(
        e.query_call(user(), c, "peek", &[]).unwrap(),
        vec![7, 0, 0, 0]
    );
    let r = e.update_call(user(), c, "poke", &[]).unwrap_err();
    assert_eq!(r.error_code.as_deref(), Some("IC0502"));
    assert!(r.message.contains("unreachable"), "{}", r.message);
    assert_eq!(
        e.query_call(user(), c, "peek", &[]).unwrap(),
        vec![7, 0, 0, 0],
        "the store before the trap is undone"
    );
}
