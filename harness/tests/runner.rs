//! The runner end to end on the toy IC: steps, captures, matchers, variants, failure reports,
//! determinism of transcripts.

mod common;

use harness::runner::{self, Status};
use std::rc::Rc;

const TOY: &str = r#"
schema: 1
name: toy notes
tags: [smoke, toy]
identities: [alice, bob, admin]
vars:
  title: holiday
canisters:
  notes:
    crate: toy
    features: [failpoints]
    init: {admins: [admin], max_size: 16}
invariants:
  - id: count-bounded
    check: notes.count
    expect: {le: 10}
variants:
  backends: [embedded, pocketic]
  fault_at_each_stage:
    - name: put-rejects
      fault: {target: notes, method: put, action: {reject: {code: SysTransient, message: injected}}}
  upgrade_at_each_stage:
    - canister: notes
steps:
  - id: put
    stage: true
    call: notes.put
    as: alice
    args: ["${title} photos", 0x010203]
    expect: {Ok: {size: 3}}
    capture: {note: $.Ok.id}
  - id: read
    stage: true
    query: notes.get
    as: alice
    args: ${note}
    expect: {Ok: 0x010203}
  - id: big
    call: notes.put
    as: alice
    args: [big, {repeat: "00", len: 17}]
    expect: {Err: {TooLarge: {max: 16}}}
  - id: anon
    call: notes.put
    as: anonymous
    args: [x, 0x00]
    expect: {Err: Unauthorized}
  - id: not-owner
    query: notes.get
    as: bob
    args: ${note}
    expect: {Err: Unauthorized}
  - id: later
    advance_time: 1h30m
  - id: listed
    check: notes.list
    as: bob
    expect:
      len: 1
      each: {owner: alice, title: {regex: "^holiday"}, created: {ge: 0}}
  - id: sub
    submit: notes.put
    as: bob
    args: [second, {utf8: "hi"}]
  - id: got
    await: sub
    expect: {Ok: {id: {gt: 0}}}
  - id: up
    upgrade: notes
    features: [failpoints, extra]
  - id: kept
    check: notes.count
    expect: 2
  - id: arm
    failpoint: notes
    as: admin
    args: {name: put}
  - id: fires
    call: notes.put
    as: alice
    args: [y, 0x00]
    reject: {code: CanisterError, message: {regex: "failpoint put"}}
on_fault:
  - id: still-readable
    check: notes.count
    expect: {ge: 0}
"#;

fn load(text: &str) -> (harness::plan::Project, Rc<harness::plan::Loaded>) {
    let (project, dir) = common::project();
    let file = common::write(&dir, "toy.yaml", text);
    let loaded = harness::plan::load(&project, &file)
        .unwrap_or_else(|ds| panic!("{}", ds.iter().map(|d| d.to_string()).collect::<String>()));
    (project, Rc::new(loaded))
}

#[test]
fn variants_expand_into_named_trials() {
    let (_, l) = load(TOY);
    let names: Vec<String> = runner::expand(&l).into_iter().map(|t| t.name).collect();
    let id = &l.id;
    assert!(
        names.contains(&format!("{id}::embedded::base")),
        "{names:?}"
    );
    assert!(names.contains(&format!("{id}::pocketic::base")));
    assert!(names.contains(&format!("{id}::embedded::fault=put-rejects@put")));
    assert!(names.contains(&format!("{id}::embedded::fault=put-rejects@read")));
    assert!(names.contains(&format!("{id}::embedded::upgrade=notes@read")));
    assert_eq!(names.len(), 2 * (1 + 2 + 2));
}

#[test]
fn base_trial_passes_with_captures_matchers_upgrade_and_failpoint() {
    let (project, l) = load(TOY);
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base" && t.backend.name() == "embedded")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options("v1"));
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let text = serde_json::to_string(&r.transcript).unwrap();
    assert!(text.contains("\"captured\":{\"note\":0}"), "{text}");
    assert!(
        text.contains("\"as\":\"alice\""),
        "principals by name: {text}"
    );
    assert!(text.contains("T+1h30m"), "relative time: {text}");
    assert!(
        text.contains("\"build\":\"toy+extra+failpoints\""),
        "{text}"
    );
    assert!(
        r.coverage
            .cases
            .get("toy.put")
            .map(|c| c.contains("Err.TooLarge"))
            .unwrap_or(false),
        "{:?}",
        r.coverage.cases
    );
    let summary = r.coverage.summary();
    assert!(
        summary.contains("toy: 5/6 Candid methods called; never called: version"),
        "{summary}"
    );
}

#[test]
fn same_scenario_twice_gives_the_same_transcript_byte_for_byte() {
    let (project, l) = load(TOY);
    for t in runner::expand(&l)
        .into_iter()
        .filter(|t| t.backend.name() == "embedded")
    {
        let a = runner::run_trial(&project, &t, &common::options("v1"));
        let b = runner::run_trial(&project, &t, &common::options("v1"));
        let ya = serde_json::to_string_pretty(&a.transcript).unwrap();
        let yb = serde_json::to_string_pretty(&b.transcript).unwrap();
        assert_eq!(ya, yb, "{}", t.name);
    }
}

#[test]
fn fault_and_upgrade_variants_run_and_fill_coverage_cells() {
    let (project, l) = load(TOY);
    let mut cov = runner::Coverage::default();
    for t in runner::expand(&l)
        .into_iter()
        .filter(|t| t.backend.name() == "embedded" && t.variant_name != "base")
    {
        let r = runner::run_trial(&project, &t, &common::options("v1"));
        assert_eq!(r.status, Status::Pass, "{}: {}", t.name, r.message);
        cov.merge(&r.coverage);
    }
    let s = cov.summary();
    assert!(s.contains("fault=put-rejects: ✓put ✓read"), "{s}");
    assert!(s.contains("upgrade=notes: ✓put ✓read"), "{s}");
}

#[test]
fn failure_report_has_table_mismatch_logs_and_repro() {
    let bad = TOY.replace("expect: {Ok: {size: 3}}", "expect: {Ok: {size: 4}}");
    let (project, l) = load(&bad);
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base" && t.backend.name() == "embedded")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options("v1"));
    assert_eq!(r.status, Status::Fail);
    let m = &r.message;
    assert!(m.contains("✗ put"), "{m}");
    assert!(m.contains("$.Ok.size: expected 4, got 3"), "{m}");
    assert!(m.contains("· read"), "{m}");
    assert!(
        m.contains("notes [T+0s] put holiday photos by alice"),
        "{m}"
    );
    assert!(m.contains("reproduce: scripts/scenario.sh"), "{m}");
    assert!(m.contains("--variant 'base'"), "{m}");
    assert!(m.contains("30 |     expect: {Ok: {size: 4}}"), "{m}");
}

#[test]
fn invariant_failures_name_the_step() {
    let bad = TOY.replace("expect: {le: 10}", "expect: {lt: 1}");
    let (project, l) = load(&bad);
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base" && t.backend.name() == "embedded")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options("v1"));
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.message
            .contains("invariant `invariant.count-bounded` does not hold after step `put`"),
        "{}",
        r.message
    );
}

#[test]
fn unmet_requirements_skip_with_a_reason() {
    let (project, l) = load(&TOY.replace(
        "tags: [smoke, toy]",
        "tags: [smoke, toy]\nrequires: {backends: [pocketic]}",
    ));
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.backend.name() == "embedded")
        .unwrap();
    let why = runner::skip_reason(&project, &t).unwrap();
    assert!(why.contains("requires backend pocketic"), "{why}");
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.backend.name() == "pocketic")
        .unwrap();
    assert!(runner::skip_reason(&project, &t).is_some());
    let (project, l) = load(&TOY.replace(
        "tags: [smoke, toy]",
        "tags: [smoke, toy]\nrequires: {features: [extra]}",
    ));
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.backend.name() == "embedded")
        .unwrap();
    let why = runner::skip_reason(&project, &t);
    // the embedded backend may not be compiled in; either way there is a reason and it is not silent
    if cfg!(feature = "embedded") {
        assert!(why.unwrap().contains("requires feature `extra`"));
    } else {
        assert!(why.is_some());
    }
}

#[test]
fn tags_filter() {
    let (_, l) = load(TOY);
    assert!(runner::tags_selected(&l, "smoke"));
    assert!(runner::tags_selected(&l, ""));
    assert!(!runner::tags_selected(&l, "!toy"));
    assert!(!runner::tags_selected(&l, "slow"));
    assert!(runner::tags_selected(&l, "slow,smoke"));
}

#[test]
fn junit_and_timing() {
    use harness::suite::{exit_code, junit, timing, Finished};
    use std::time::Duration;
    let rs = vec![
        Finished {
            name: "a/b::embedded::base".into(),
            status: Status::Pass,
            message: String::new(),
            elapsed: Duration::from_millis(10),
        },
        Finished {
            name: "a/b::pocketic::base".into(),
            status: Status::Skip,
            message: "no server".into(),
            elapsed: Duration::ZERO,
        },
        Finished {
            name: "a/c::embedded::base".into(),
            status: Status::Fail,
            message: "x <y>".into(),
            elapsed: Duration::from_millis(30),
        },
    ];
    let x = junit(&rs);
    assert!(x.contains("<skipped message=\"no server\"/>"));
    assert!(x.contains("x &lt;y&gt;"));
    assert!(timing(&rs, Duration::from_millis(50)).contains("median"));
    assert_eq!(exit_code(&rs), 4);
    assert_eq!(exit_code(&rs[1..2]), 5);
}

const FEATURES: &str = r#"
schema: 1
identities: [alice, admin]
canisters:
  notes:
    crate: toy
    init_candid: '(record { admins = vec {}; max_size = opt (100 : nat64) })'
    cycles: "5_000_000_000_000"
steps:
  - id: put
    call: notes.put
    as: alice
    args_candid: '("candid text", blob "\01\02")'
    expect: {candid: "variant { Ok = record { id = 0 : nat64; size = 2 : nat64 } }"}
  - id: strict-ok
    call: notes.put
    as: alice
    args: [second, 0x00]
    strict: true
    expect: {Ok: {id: 1, size: 1}}
  - id: approx
    query: notes.count
    expect: {approx: 2, within: "50%"}
  - id: at
    set_time: +1h
  - id: created-before
    check: notes.list
    as: alice
    expect: {each: {created: {lt: "1767229200000000000"}}, some: {title: {contains: "candid"}}}
  - id: stop
    stop: notes
  - id: refused-while-stopped
    query: notes.count
    reject: {code: CanisterError, message: {regex: "stopped$"}}
  - id: start
    start: notes
  - id: until
    tick_until: notes.count
    expect: 2
    max_rounds: 3
"#;

#[test]
fn candid_text_strict_approx_time_stop_start_tick_until() {
    let (project, l) = load(FEATURES);
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.backend.name() == "embedded")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options("v1"));
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let text = serde_json::to_string(&r.transcript).unwrap();
    assert!(
        text.contains("\"set_time\":\"+1h\",\"step\":\"at\",\"time\":\"T+1h0.001s\""),
        "{text}"
    );
    assert!(
        text.contains("\"notes\":\"~5.0T\""),
        "cycles bucketed: {text}"
    );
    // strict: a field left out of the pattern fails
    let (project, l) =
        load(&FEATURES.replace("expect: {Ok: {id: 1, size: 1}}", "expect: {Ok: {id: 1}}"));
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.backend.name() == "embedded")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options("v1"));
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.message
            .contains("$.Ok.size: expected no value (strict match"),
        "{}",
        r.message
    );
}

const ADDITIONS: &str = r#"
schema: 1
identities: [alice, admin]
canisters:
  notes:
    crate: toy
    init: {admins: [admin], max_size: 16}
  other:
    crate: toy
    init: {admins: [admin], max_size: 16}
variants:
  backends: [embedded]
steps:
  - id: fill
    repeat: 3
    var: k
    steps:
      - id: put
        call: notes.put
        as: alice
        args: ["note ${k}", 0x00]
        expect: {Ok: {id: "${k}"}}
        capture: {"id${k}": $.Ok.id}
      - id: count
        check: notes.count
        expect: {ge: "${k}"}
  - id: captured-in-loop
    query: notes.get
    as: alice
    args: "${id2}"
    expect: {Ok: 0x00}
  - id: quiet
    repeat: 2
    snapshot: false
    steps:
      - {id: put, call: notes.put, as: alice, args: ["quiet ${i}", 0x01], expect: {Ok: {}}}
  - id: all
    canisters: {expect: {count: 3, created: {len: 1}}, capture: {stray: "$.created[0]"}}
  - id: all-beside
    canisters: {}
    expect: {canisters: {len: 3, some: {eq: notes}}}
  - id: as-canister
    call: notes.put
    as: other
    args: [from a canister, 0x02]
    expect: {Ok: {id: 5}}
  - id: owner-is-the-canister
    check: notes.list
    expect: {some: {owner: other, title: from a canister}}
  - id: at-stray
    call: notes.put
    at: "${stray}"
    as: "${stray}"
    args: [self, 0x03]
    expect: {Ok: {id: 0}}
  - id: stray-count
    check: notes.count
    at: "${stray}"
    expect: 1
  - id: drain
    cycles: {canister: other, set: 0}
  - id: top-up-stray
    cycles: {canister: "${stray}", add: 1T}
  - id: fault-on-stray
    fault: {target: "${stray}", method: count, action: {reject: {code: SysTransient, message: injected}}}
  - id: stray-refuses
    check: notes.count
    at: "${stray}"
    reject: {code: SysTransient, message: injected}
  - id: declared-unaffected
    check: notes.count
    expect: 6
  - id: upgrade-refused
    upgrade: notes
    as: alice
    in_flight: allow
    reject: {code: CanisterError, message: only controllers}
  - id: upgrade-stray
    upgrade: notes
    at: "${stray}"
    as: admin
    in_flight: allow
    features: [failpoints, extra]
  - id: stray-runs-new-build
    query: notes.version
    at: "${stray}"
    expect: {contains: "toy+extra+failpoints"}
  - id: declared-keeps-its-build
    query: notes.version
    expect: {ne: "v1:toy+extra+failpoints"}
"#;

#[test]
fn repeat_canisters_cycles_at_and_canister_senders() {
    let (project, l) = load(ADDITIONS);
    let ids: Vec<&str> = l.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        &ids[..6],
        [
            "fill.put-0",
            "fill.count-0",
            "fill.put-1",
            "fill.count-1",
            "fill.put-2",
            "fill.count-2"
        ],
        "{ids:?}"
    );
    assert!(ids.contains(&"quiet.put-1"), "{ids:?}");
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base")
        .unwrap();
    assert!(runner::needed_capabilities(&l).contains(&harness::model::Capability::Inspect));
    let r = runner::run_trial(&project, &t, &common::options_with_stray("v1"));
    assert_eq!(r.status, Status::Pass, "{}", r.message);
    let text = serde_json::to_string(&r.transcript).unwrap();
    assert!(text.contains("\"args\":[\"note 2\",\"0x00\"]"), "{text}");
    assert!(text.contains("\"captured\":{\"id2\":2}"), "{text}");
    assert!(
        !text.contains("quiet.put"),
        "snapshot: false reaches the repeated steps: {text}"
    );
    assert!(
        text.contains("\"canisters\":[\"") && text.contains("\"notes\",\"other\"]"),
        "{text}"
    );
    assert!(text.contains("\"as\":\"other\""), "{text}");
    assert!(
        text.contains("\"cycles\":{\"canister\":\"other\",\"set\":\"~0\"}"),
        "{text}"
    );
    // the drained canister's final balance is 0
    assert!(text.contains("\"other\":\"~0\""), "{text}");
    assert!(
        text.contains("\"target\":\"bzzqh-"),
        "fault targets resolved in the transcript: {text}"
    );
    assert!(text.contains("\"reject\":{\"code\":\"CanisterError\",\"message\":\"only controllers install\"},\"step\":\"upgrade-refused\""), "{text}");
    // an upgrade expected to be refused that succeeds fails the step
    let (project, l) = load(&ADDITIONS.replace(
        "    as: alice\n    in_flight: allow\n    reject",
        "    as: controller\n    in_flight: allow\n    reject",
    ));
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options_with_stray("v1"));
    assert_eq!(r.status, Status::Fail);
    assert!(r.message.contains("the upgrade succeeded"), "{}", r.message);
    // a wrong count fails with the path
    let (project, l) = load(&ADDITIONS.replace("{count: 3, created: {len: 1}}", "{count: 2}"));
    let t = runner::expand(&l)
        .into_iter()
        .find(|t| t.variant_name == "base")
        .unwrap();
    let r = runner::run_trial(&project, &t, &common::options_with_stray("v1"));
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.message.contains("$.count: expected 2, got 3"),
        "{}",
        r.message
    );
}

const CASES: &str = r#"
schema: 1
identities: [alice, admin]
normalize: [wasm]
canisters:
  notes:
    crate: toy
    features: [failpoints]
    init: {admins: [admin], max_size: 100}
variants:
  backends: [embedded]
  cases:
    - {name: small, vars: {payload: "0x01", inject: plain, count_pattern: {gt: "${second}"}}, cell: {stage: Putting, fault: tiny}}
    - {name: hash, vars: {payload: {sha256_of: {wasm: notes}}, inject: with-fault, count_pattern: {eq: 2, gt: "${second}"}}, cell: {stage: Putting, fault: hashed}}
includes:
  plain:
    steps: [{id: nothing, tick: 1}]
  with-fault:
    steps: [{id: f, fault: {target: notes, method: version, times: 1, action: {reject: {code: SysTransient, message: x}}}}]
steps:
  - {include: "${inject}", id: inject}
  - {id: put, call: notes.put, as: alice, args: [t, "${payload}"], expect: {Ok: {id: 0}}}
  - {id: get, query: notes.get, as: alice, args: 0, expect: {Ok: "${payload}"}}
  - {id: second, call: notes.put, as: alice, args: [u, 0x02], expect: {Ok: {}}, capture: {second: $.Ok.id}}
  # a var whose value mentions a capture: interpolated again when used
  - {id: nested, check: notes.count, expect: "${count_pattern}"}
"#;

#[test]
fn cases_run_with_their_vars_fill_the_matrix_and_normalize_wasm_hashes() {
    let (project, l) = load(CASES);
    let names: Vec<String> = runner::expand(&l)
        .into_iter()
        .map(|t| t.variant_name)
        .collect();
    assert_eq!(
        names,
        ["case=small", "case=hash"],
        "no base trial when cases are given"
    );
    let mut cov = runner::Coverage::default();
    for t in runner::expand(&l) {
        let r = runner::run_trial(&project, &t, &common::options("v1"));
        assert_eq!(r.status, Status::Pass, "{}: {}", t.name, r.message);
        let text = serde_json::to_string(&r.transcript).unwrap();
        if t.variant_name == "case=hash" {
            assert!(
                text.contains("\"step\":\"inject.f\""),
                "the case's include ran: {text}"
            );
            assert!(
                text.contains("{\"sha256_of_wasm\":\"toy+failpoints\"}"),
                "{text}"
            );
        } else {
            assert!(text.contains("\"step\":\"inject.nothing\""), "{text}");
        }
        cov.merge(&r.coverage);
    }
    let s = cov.summary();
    assert!(s.contains("stage × fault"), "{s}");
    assert!(
        s.contains("hashed") && s.contains("Putting") && s.contains("✓1"),
        "{s}"
    );
    // an include named by an undefined var is a lint error
    let (project, dir) = common::project();
    let file = common::write(
        &dir,
        "bad.yaml",
        &CASES.replace("inject: plain,", "injekt: plain,"),
    );
    let diags = harness::plan::load(&project, &file).expect_err("lint error");
    assert!(
        diags.iter().any(|d| d
            .message
            .contains("needs `inject` to be the name of an include")),
        "{diags:?}"
    );
}

#[test]
fn known_bug_cases_pass_while_the_bug_reproduces_at_its_step() {
    let text = r#"
schema: 1
identities: [alice, admin]
canisters:
  notes:
    crate: toy
    init: {admins: [admin], max_size: 4}
variants:
  backends: [embedded]
  cases:
    - {name: big-refused, vars: {len: 5}, cell: {stage: Putting, fault: big}, known_bug: {at: put, bug: "5 bytes should fit"}}
    - {name: small, vars: {len: 3}, cell: {stage: Putting, fault: big}, known_bug: {at: put, bug: "fixed already"}}
    - {name: elsewhere, vars: {len: 5}, known_bug: {at: count, bug: "fails at put instead"}}
steps:
  - {id: put, call: notes.put, as: alice, args: [t, {repeat: "00", len: "${len}"}], expect: {Ok: {}}}
  - {id: count, check: notes.count, expect: 1}
"#;
    let (project, l) = load(text);
    let mut cov = runner::Coverage::default();
    let mut status = std::collections::BTreeMap::new();
    for t in runner::expand(&l) {
        let r = runner::run_trial(&project, &t, &common::options("v1"));
        status.insert(t.variant_name.clone(), (r.status, r.message.clone()));
        cov.merge(&r.coverage);
    }
    assert_eq!(
        status["case=big-refused"].0,
        Status::Pass,
        "{}",
        status["case=big-refused"].1
    );
    assert!(status["case=big-refused"]
        .1
        .contains("known bug, still reproduces at step `put`"));
    assert_eq!(status["case=small"].0, Status::Fail);
    assert!(
        status["case=small"].1.contains("no longer reproduces"),
        "{}",
        status["case=small"].1
    );
    assert_eq!(status["case=elsewhere"].0, Status::Fail);
    assert!(
        status["case=elsewhere"]
            .1
            .contains("expected at step `count`, this failed at `put`"),
        "{}",
        status["case=elsewhere"].1
    );
    let s = cov.summary();
    assert!(
        s.contains("✗"),
        "a fixed known bug shows as a failed cell: {s}"
    );
}
