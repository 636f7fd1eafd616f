//! Engine benchmark (not a timed test): `cargo bench -p engine --bench engine`.
//! Prints compile time (first / cached), create+install time, small update-call latency (median, p99), calls per
//! second, and the instructions counted for a known loop against its expected count.

#[path = "../tests/common/mod.rs"]
mod common;

use candid::Encode;
use common::*;
use engine::*;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let wasm = test_wasm();
    println!(
        "engine benchmark (profile: {})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release/bench"
        }
    );
    println!("test canister module: {} bytes", wasm.len());

    // Compile: first time (cold process cache) and cached.
    let mut e = Engine::new(EngineConfig::default());
    let t = Instant::now();
    e.compile(wasm).unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    e.compile(wasm).unwrap();
    let cached = t.elapsed();
    let mut e2 = Engine::new(EngineConfig::default());
    let t = Instant::now();
    e2.compile(wasm).unwrap();
    let other_engine = t.elapsed();
    println!(
        "compile: first {first:?}, cached {cached:?}, cached in a new Engine {other_engine:?}"
    );

    // Create + install.
    let n = 50;
    let t = Instant::now();
    let mut ids = vec![];
    for _ in 0..n {
        ids.push(setup_with(&mut e, 100 * T));
    }
    let per = t.elapsed() / n;
    println!(
        "create+install: {per:?} per canister ({n} canisters, modules compiled: {})",
        e.modules_compiled()
    );

    // Small update call latency.
    let c = ids[0];
    let arg = Encode!().unwrap();
    for _ in 0..200 {
        e.update_call(user(), c, "inc", &arg).unwrap();
    }
    let calls = 5_000;
    let mut lat = Vec::with_capacity(calls);
    let total = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        e.update_call(user(), c, "inc", &arg).unwrap();
        lat.push(t.elapsed());
    }
    let total = total.elapsed();
    lat.sort();
    println!(
        "small update call (inc): median {:?}, p99 {:?}, {:.0} calls/s",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        calls as f64 / total.as_secs_f64()
    );
    let mut qlat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        e.query_call(user(), c, "get", &arg).unwrap();
        qlat.push(t.elapsed());
    }
    qlat.sort();
    println!(
        "query call (get): median {:?}, p99 {:?}",
        percentile(&qlat, 0.5),
        percentile(&qlat, 0.99)
    );
    let mut ilat = Vec::with_capacity(1000);
    let d = ids[1];
    for _ in 0..1000 {
        let t = Instant::now();
        e.update_call(
            user(),
            c,
            "call",
            &call_arg(d, "inc", Encode!().unwrap(), 0, true),
        )
        .unwrap();
        ilat.push(t.elapsed());
    }
    ilat.sort();
    println!(
        "inter-canister call (ingress -> a -> b -> a): median {:?}, p99 {:?}",
        percentile(&ilat, 0.5),
        percentile(&ilat, 0.99)
    );

    // Instructions for a known loop.
    let lc = e.create_canister(user(), None, 100 * T).unwrap();
    e.install_code(
        user(),
        lc,
        InstallMode::Install,
        &loop_module(1_000_000),
        &[],
    )
    .unwrap();
    let r = e.update_call(user(), lc, "loop", &[]).unwrap();
    let counted = u64::from_le_bytes(r[..8].try_into().unwrap());
    println!(
        "instructions for a 1,000,000-iteration loop of 5 instructions: counted {counted}, expected {} (+ a few for the setup around it)",
        5_000_000
    );
    let n: u64 = update(&mut e, c, "count_loop", Encode!(&1_000_000u64).unwrap()).unwrap();
    println!("instructions for the test canister's count_loop(1,000,000) (rustc output): {n}");

    // 1 GiB of stable memory: fill it, then time a normal and a trapping message.
    let big = setup_with(&mut e, 1_000 * T);
    let t = Instant::now();
    for i in 0..16u64 {
        e.update_call(
            user(),
            big,
            "stable_fill",
            &Encode!(&(i * 64), &64u64, &0x5Au8).unwrap(),
        )
        .unwrap();
    }
    println!(
        "filling 1 GiB of stable memory (16 updates of 64 MiB): {:?}",
        t.elapsed()
    );
    let mut ok = vec![];
    let mut trap = vec![];
    for _ in 0..200 {
        let t = Instant::now();
        e.update_call(user(), big, "inc", &arg).unwrap();
        ok.push(t.elapsed());
        let t = Instant::now();
        e.update_call(
            user(),
            big,
            "stable_touch_then_trap",
            &Encode!(&(700u64 << 20)).unwrap(),
        )
        .unwrap_err();
        trap.push(t.elapsed());
    }
    ok.sort();
    trap.sort();
    println!(
        "with 1 GiB stable memory: update median {:?}; write-then-trap (rolled back) median {:?}, p99 {:?}",
        percentile(&ok, 0.5),
        percentile(&trap, 0.5),
        percentile(&trap, 0.99)
    );
}
