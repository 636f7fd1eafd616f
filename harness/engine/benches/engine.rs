//! Engine benchmark (not a timed test): `cargo bench -p engine --bench engine`.
//! Prints compile time (first / cached), create+install time, small update-call latency (median, p99), calls per
//! second, and the instructions counted for a known loop against its expected count.

#[path = "../tests/common/mod.rs"]
mod common;

use candid::Encode;
use common::*;
use engine::*;
use std::time::{Duration, Instant};

fn leb(out: &mut Vec<u8>, mut v: u64) {
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

fn sleb(out: &mut Vec<u8>, mut v: i64) {
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

fn section(m: &mut Vec<u8>, id: u8, body: Vec<u8>) {
    m.push(id);
    leb(m, body.len() as u64);
    m.extend(body);
}

fn name(v: &mut Vec<u8>, s: &str) {
    leb(v, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
}

/// A hand-written canister: `canister_update loop` runs `n` iterations of a 5-instruction loop body
/// (local.get, i32.const, i32.sub, local.tee, br_if) and replies with the instructions counted around it.
fn loop_module(n: i32) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // types: 0 () -> (), 1 (i32) -> i64, 2 (i32, i32) -> ()
    section(&mut m, 1, vec![3, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7e, 0x60, 2, 0x7f, 0x7f, 0]);
    let mut imp = vec![3];
    for (n, t) in [("performance_counter", 1u8), ("msg_reply_data_append", 2), ("msg_reply", 0)] {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let wasm = test_wasm();
    println!("engine benchmark (profile: {})", if cfg!(debug_assertions) { "debug" } else { "release/bench" });
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
    println!("compile: first {first:?}, cached {cached:?}, cached in a new Engine {other_engine:?}");

    // Create + install.
    let n = 50;
    let t = Instant::now();
    let mut ids = vec![];
    for _ in 0..n {
        ids.push(setup_with(&mut e, 100 * T));
    }
    let per = t.elapsed() / n;
    println!("create+install: {per:?} per canister ({n} canisters, modules compiled: {})", e.modules_compiled());

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
    println!("query call (get): median {:?}, p99 {:?}", percentile(&qlat, 0.5), percentile(&qlat, 0.99));
    let mut ilat = Vec::with_capacity(1000);
    let d = ids[1];
    for _ in 0..1000 {
        let t = Instant::now();
        e.update_call(user(), c, "call", &call_arg(d, "inc", Encode!().unwrap(), 0, true)).unwrap();
        ilat.push(t.elapsed());
    }
    ilat.sort();
    println!("inter-canister call (ingress -> a -> b -> a): median {:?}, p99 {:?}", percentile(&ilat, 0.5), percentile(&ilat, 0.99));

    // Instructions for a known loop.
    let lc = e.create_canister(user(), None, 100 * T).unwrap();
    e.install_code(user(), lc, InstallMode::Install, &loop_module(1_000_000), &[]).unwrap();
    let r = e.update_call(user(), lc, "loop", &[]).unwrap();
    let counted = u64::from_le_bytes(r[..8].try_into().unwrap());
    println!(
        "instructions for a 1,000,000-iteration loop of 5 instructions: counted {counted}, expected {} (+ a few for the setup around it)",
        5_000_000
    );
    let n: u64 = update(&mut e, c, "count_loop", Encode!(&1_000_000u64).unwrap()).unwrap();
    println!("instructions for the test canister's count_loop(1,000,000) (rustc output): {n}");
}
