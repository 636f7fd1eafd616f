//! The project's real canisters on the engine (skipped when `scripts/build-canisters.sh` has not produced them
//! in `target/canisters/`): install, serve the capsule API, upgrade with stable data intact, run ic-cdk-timers.
mod common;
use candid::{CandidType, Decode, Deserialize, Encode, Principal, Reserved};
use common::*;
use engine::*;
use std::time::Duration;

#[derive(CandidType, Deserialize, Debug)]
enum Res {
    Ok(Reserved),
    Err(Reserved),
}

#[derive(CandidType, Deserialize, Debug)]
struct CapsuleInput {
    bio: String,
    name: String,
}

#[derive(CandidType)]
struct BackendInit {
    admins: Vec<Principal>,
}

#[derive(CandidType)]
struct PersonalInit {
    importer: Option<Principal>,
    owner: Principal,
}

fn load(name: &str) -> Option<Vec<u8>> {
    let p = workspace_root()
        .join("target/canisters")
        .join(format!("{name}.wasm"));
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "skipping: {} not built (run scripts/build-canisters.sh)",
                p.display()
            );
            None
        }
    }
}

fn ok(r: Result<Vec<u8>, Reject>) -> bool {
    matches!(
        Decode!(&r.expect("call succeeds"), Res).expect("Result variant"),
        Res::Ok(_)
    )
}

fn capsule_roundtrip(
    e: &mut Engine,
    c: Principal,
    owner: Principal,
    wasm: &[u8],
    upgrade_arg: Vec<u8>,
) {
    let input = CapsuleInput {
        bio: "bio".into(),
        name: "Ada".into(),
    };
    assert!(ok(e.update_call(
        owner,
        c,
        "capsule_create",
        &Encode!(&input).unwrap()
    )));
    assert!(ok(e.query_call(
        owner,
        c,
        "capsule_get",
        &Encode!().unwrap()
    )));
    // Timers (if any) run as time passes.
    for _ in 0..5 {
        e.advance_time(Duration::from_secs(30));
        e.tick();
    }
    e.install_code(
        user(),
        c,
        InstallMode::Upgrade {
            skip_pre_upgrade: false,
        },
        wasm,
        &upgrade_arg,
    )
    .expect("upgrade");
    assert!(
        ok(e.query_call(owner, c, "capsule_get", &Encode!().unwrap())),
        "capsule survives the upgrade"
    );
    for _ in 0..3 {
        e.advance_time(Duration::from_secs(30));
        e.tick();
    }
    let traps = e
        .canister_logs(c)
        .iter()
        .filter(|l| l.text().starts_with("[TRAP]"))
        .count();
    assert_eq!(
        traps,
        0,
        "logs: {:?}",
        e.canister_logs(c)
            .iter()
            .map(|l| l.text())
            .collect::<Vec<_>>()
    );
}

#[test]
fn backend_installs_serves_capsules_upgrades_and_runs_timers() {
    let Some(wasm) = load("backend") else { return };
    let mut e = engine();
    let c = e.create_canister(user(), None, 100 * T).unwrap();
    let init = Encode!(&BackendInit { admins: vec![] }).unwrap();
    e.install_code(user(), c, InstallMode::Install, &wasm, &init)
        .expect("install backend");
    let owner = other_user();
    capsule_roundtrip(&mut e, c, owner, &wasm, init);
    let timer_runs = e
        .metrics()
        .records
        .iter()
        .filter(|r| r.canister == c && r.kind == ExecKind::GlobalTimer)
        .count();
    assert!(timer_runs > 0, "the backend's ic-cdk-timers fired");
}

#[test]
fn personal_installs_serves_capsules_and_upgrades() {
    let Some(wasm) = load("personal") else { return };
    let mut e = engine();
    let owner = other_user();
    let c = e.create_canister(user(), None, 100 * T).unwrap();
    let init = Encode!(&PersonalInit {
        importer: None,
        owner
    })
    .unwrap();
    e.install_code(user(), c, InstallMode::Install, &wasm, &init)
        .expect("install personal");
    capsule_roundtrip(&mut e, c, owner, &wasm, init);
}
