#![allow(dead_code)]
//! Shared helpers for the engine's tests: building the test canister for wasm32 and small wrappers.

use candid::{CandidType, Decode, Encode, Principal};
use engine::{Engine, EngineConfig, InstallMode, Reject};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Build `harness/engine/test-canister` for wasm32 (once per test process) and return the module bytes.
pub fn test_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target/wasm");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                "engine-test-canister",
                "--quiet",
            ])
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the test canister failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(target.join("wasm32-unknown-unknown/release/engine_test_canister.wasm"))
            .expect("wasm file")
    })
}

pub fn user() -> Principal {
    Principal::from_slice(&[0xAB, 1, 2, 3, 4, 5, 6, 7, 1])
}
pub fn other_user() -> Principal {
    Principal::from_slice(&[0xAB, 9, 9, 9, 9, 9, 9, 9, 1])
}

pub const T: u128 = 1_000_000_000_000;

pub fn engine() -> Engine {
    Engine::new(EngineConfig::default())
}

/// Create and install the test canister with `cycles`.
pub fn setup_with(e: &mut Engine, cycles: u128) -> Principal {
    let c = e.create_canister(user(), None, cycles).expect("create");
    e.install_code(
        user(),
        c,
        InstallMode::Install,
        test_wasm(),
        &Encode!(&Some(0u64)).unwrap(),
    )
    .expect("install");
    c
}

pub fn setup() -> (Engine, Principal) {
    let mut e = engine();
    let c = setup_with(&mut e, 100 * T);
    (e, c)
}

pub fn update<R: CandidType + for<'de> serde::Deserialize<'de>>(
    e: &mut Engine,
    c: Principal,
    method: &str,
    arg: Vec<u8>,
) -> Result<R, Reject> {
    e.update_call(user(), c, method, &arg)
        .map(|b| Decode!(&b, R).expect("decode reply"))
}

pub fn query<R: CandidType + for<'de> serde::Deserialize<'de>>(
    e: &mut Engine,
    c: Principal,
    method: &str,
    arg: Vec<u8>,
) -> Result<R, Reject> {
    e.query_call(user(), c, method, &arg)
        .map(|b| Decode!(&b, R).expect("decode reply"))
}

pub fn none() -> Vec<u8> {
    Encode!().unwrap()
}

#[derive(CandidType, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub kind: String,
    pub code: u32,
    pub message: String,
}

pub type CallRes = Result<Vec<u8>, CallError>;

/// Arguments of the test canister's `call` method.
pub fn call_arg(
    callee: Principal,
    method: &str,
    arg: Vec<u8>,
    cycles: u128,
    bounded: bool,
) -> Vec<u8> {
    Encode!(&callee, &method.to_string(), &arg, &cycles, &bounded).unwrap()
}

// Minimal wasm encoding helpers for hand-written test modules.

pub fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

pub fn section(m: &mut Vec<u8>, id: u8, body: Vec<u8>) {
    m.push(id);
    leb(m, body.len() as u64);
    m.extend(body);
}

pub fn name(v: &mut Vec<u8>, s: &str) {
    leb(v, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
}

/// A module whose `canister_heartbeat` grows stable memory by one page per execution, up to 50 pages.
pub fn heartbeat_module() -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // types: 0 (i64) -> i64, 1 () -> i64, 2 () -> ()
    section(
        &mut m,
        1,
        vec![3, 0x60, 1, 0x7e, 1, 0x7e, 0x60, 0, 1, 0x7e, 0x60, 0, 0],
    );
    let mut imp = vec![2];
    for (n, t) in [("stable64_grow", 0u8), ("stable64_size", 1)] {
        name(&mut imp, "ic0");
        name(&mut imp, n);
        imp.push(0);
        imp.push(t);
    }
    section(&mut m, 2, imp);
    section(&mut m, 3, vec![1, 2]);
    let mut exp = vec![1];
    name(&mut exp, "canister_heartbeat");
    exp.extend([0, 2]);
    section(&mut m, 7, exp);
    // if stable64_size() < 50 { drop(stable64_grow(1)) }
    let body = vec![
        0, 0x10, 1, 0x42, 50, 0x54, 0x04, 0x40, 0x42, 1, 0x10, 0, 0x1a, 0x0b, 0x0b,
    ];
    let mut code = vec![1];
    leb(&mut code, body.len() as u64);
    code.extend(body);
    section(&mut m, 10, code);
    m
}

/// A hand-written canister: `canister_update loop` runs `n` iterations of a 5-instruction loop body
/// (local.get, i32.const, i32.sub, local.tee, br_if) and replies with the instructions counted around it.
pub fn loop_module(n: i32) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // types: 0 () -> (), 1 (i32) -> i64, 2 (i32, i32) -> ()
    section(
        &mut m,
        1,
        vec![
            3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7e, 0x60, 2, 0x7f, 0x7f, 0,
        ],
    );
    let mut imp = vec![3];
    for (n, t) in [
        ("performance_counter", 1u8),
        ("msg_reply_data_append", 2),
        ("msg_reply", 0),
    ] {
        name(&mut imp, "ic0");
        name(&mut imp, n);
        imp.push(0);
        imp.push(t);
    }
    section(&mut m, 2, imp);
    section(&mut m, 3, vec![1, 0]);
    section(&mut m, 5, vec![1, 0, 1]);
    let mut exp = vec![2];
    name(&mut exp, "canister_update loop");
    exp.extend([0, 3]);
    name(&mut exp, "memory");
    exp.extend([2, 0]);
    section(&mut m, 7, exp);
    let mut body = vec![2, 1, 0x7f, 1, 0x7e]; // locals: 1 i32, 1 i64
    body.extend([0x41, 0, 0x10, 0, 0x21, 1]); // start = performance_counter(0)
    body.push(0x41);
    sleb(&mut body, n as i64);
    body.extend([0x21, 0]); // counter = n
    body.extend([0x03, 0x40, 0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b]); // loop
    body.extend([0x41, 0, 0x41, 0, 0x10, 0, 0x20, 1, 0x7d, 0x37, 3, 0]); // mem[0] = perf(0) - start
    body.extend([0x41, 0, 0x41, 8, 0x10, 1, 0x10, 2, 0x0b]); // reply 8 bytes
    let mut code = vec![1];
    leb(&mut code, body.len() as u64);
    code.extend(body);
    section(&mut m, 10, code);
    m
}

/// A non-rustc module (no `__stack_pointer` heuristics apply): `canister_update poke` stores 42 at address 100
/// and traps; `canister_update set` stores 7 and replies; `canister_query peek` replies with the 4 bytes at 100.
pub fn poke_module() -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // types: 0 () -> (), 1 (i32, i32) -> ()
    section(&mut m, 1, vec![2, 0x60, 0, 0, 0x60, 2, 0x7f, 0x7f, 0]);
    let mut imp = vec![2];
    for (n, t) in [("msg_reply_data_append", 1u8), ("msg_reply", 0)] {
        name(&mut imp, "ic0");
        name(&mut imp, n);
        imp.push(0);
        imp.push(t);
    }
    section(&mut m, 2, imp);
    section(&mut m, 3, vec![3, 0, 0, 0]);
    section(&mut m, 5, vec![1, 0, 1]);
    let mut exp = vec![3];
    for (n, f) in [
        ("canister_update poke", 2u8),
        ("canister_update set", 3),
        ("canister_query peek", 4),
    ] {
        name(&mut exp, n);
        exp.extend([0, f]);
    }
    section(&mut m, 7, exp);
    let bodies: [Vec<u8>; 3] = [
        vec![0, 0x41, 0xe4, 0x00, 0x41, 42, 0x36, 2, 0, 0x00, 0x0b],
        vec![
            0, 0x41, 0xe4, 0x00, 0x41, 7, 0x36, 2, 0, 0x41, 0, 0x41, 0, 0x10, 0, 0x10, 1, 0x0b,
        ],
        vec![0, 0x41, 0xe4, 0x00, 0x41, 4, 0x10, 0, 0x10, 1, 0x0b],
    ];
    let mut code = vec![3];
    for b in bodies {
        leb(&mut code, b.len() as u64);
        code.extend(b);
    }
    section(&mut m, 10, code);
    m
}
