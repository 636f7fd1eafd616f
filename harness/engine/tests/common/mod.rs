#![allow(dead_code)]
//! Shared helpers for the engine's tests: building the test canister for wasm32 and small wrappers.

use candid::{CandidType, Decode, Encode, Principal};
use engine::{Engine, EngineConfig, InstallMode, Reject};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
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
            .args(["build", "--release", "--target", "wasm32-unknown-unknown", "-p", "engine-test-canister", "--quiet"])
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "building the test canister failed:\n{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(target.join("wasm32-unknown-unknown/release/engine_test_canister.wasm")).expect("wasm file")
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
    e.install_code(user(), c, InstallMode::Install, test_wasm(), &Encode!(&Some(0u64)).unwrap()).expect("install");
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
    e.update_call(user(), c, method, &arg).map(|b| Decode!(&b, R).expect("decode reply"))
}

pub fn query<R: CandidType + for<'de> serde::Deserialize<'de>>(e: &mut Engine, c: Principal, method: &str, arg: Vec<u8>) -> Result<R, Reject> {
    e.query_call(user(), c, method, &arg).map(|b| Decode!(&b, R).expect("decode reply"))
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
pub fn call_arg(callee: Principal, method: &str, arg: Vec<u8>, cycles: u128, bounded: bool) -> Vec<u8> {
    Encode!(&callee, &method.to_string(), &arg, &cycles, &bounded).unwrap()
}
