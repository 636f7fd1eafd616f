//! What one migration costs, per capsule size, on the embedded engine: messages, bytes, instructions,
//! cycles, the backend's peak heap and wall time. Run `scripts/bench.sh` (it builds the canisters), or
//! `cargo run --profile bench -p bench --bin migration [-- <profile name filter>]`.
//!
//! Every execution is bounded by the engine's instruction and message-size limits, so a completed
//! migration also shows that no message exceeded them; the largest of each is printed.
use backend::factory::api::*;
use candid::{decode_args, encode_args, encode_one, CandidType, Nat, Principal};
use capsule::*;
use engine::*;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

struct Profile {
    name: &'static str,
    inline: u64,
    inline_len: usize,
    blobs: u64,
    blob_len: u64,
}

fn call<R: CandidType + DeserializeOwned>(
    ic: &mut Engine,
    who: Principal,
    c: Principal,
    m: &str,
    arg: Vec<u8>,
) -> R {
    let b = ic
        .update_call(who, c, m, &arg)
        .unwrap_or_else(|e| panic!("{m}: {e:?}"));
    let (r,): (R,) = decode_args(&b).unwrap_or_else(|e| panic!("{m}: {e}"));
    r
}

fn read_wasm(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../target/canisters/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run scripts/build-canisters.sh first"))
}

fn main() {
    let profiles = [
        Profile {
            name: "100 small",
            inline: 100,
            inline_len: 512,
            blobs: 0,
            blob_len: 0,
        },
        Profile {
            name: "100 incl. 4 MiB blobs",
            inline: 90,
            inline_len: 4096,
            blobs: 10,
            blob_len: 4 << 20,
        },
        Profile {
            name: "1k, 64 MiB",
            inline: 900,
            inline_len: 4096,
            blobs: 100,
            blob_len: 640 << 10,
        },
        Profile {
            name: "10k, 1 GiB",
            inline: 9_000,
            inline_len: 4096,
            blobs: 1_000,
            blob_len: 1 << 20,
        },
    ];
    let only = std::env::args().nth(1);
    println!("| capsule | memories | payload bytes | messages to personal | import bytes sent | wire/payload | instructions (backend + personal) | instr/byte | max instr/exec | max msg bytes | funding: initial + runway | transmission | reserve cycles | backend cycles | peak backend heap | wall |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for p in profiles
        .iter()
        .filter(|p| only.as_deref().is_none_or(|o| p.name.contains(o)))
    {
        run(p);
    }
}

fn run(p: &Profile) {
    let mut ic = Engine::new(EngineConfig::default());
    let admin = Principal::from_slice(&[1; 29]);
    let user = Principal::from_slice(&[2; 29]);
    let backend_wasm = read_wasm("backend");
    let personal_wasm = read_wasm("personal");
    let be = ic
        .create_canister(admin, None, 1_000_000_000_000_000)
        .unwrap();
    ic.install_code(
        admin,
        be,
        InstallMode::Install,
        &backend_wasm,
        &encode_one(backend::BackendInit {
            admins: vec![admin],
        })
        .unwrap(),
    )
    .unwrap();
    let _: Result<Capsule> = call(
        &mut ic,
        user,
        be,
        "capsule_create",
        encode_one(CapsuleInput {
            name: "bench".into(),
            bio: "".into(),
        })
        .unwrap(),
    );
    let mut payload = 0u64;
    for i in 0..p.inline {
        let bytes = vec![(i % 251) as u8; p.inline_len];
        payload += bytes.len() as u64;
        let r: Result<Memory> = call(
            &mut ic,
            user,
            be,
            "memory_create",
            encode_one(MemoryInput {
                title: format!("memory {i}"),
                description: "a memory".into(),
                tags: vec!["bench".into()],
                kind: MemoryKind::Note,
                mime_type: "text/plain".into(),
                asset: AssetInput::Inline {
                    bytes: ByteBuf::from(bytes),
                },
            })
            .unwrap(),
        );
        r.unwrap();
    }
    for b in 0..p.blobs {
        let blob: Vec<u8> = (0..p.blob_len).map(|i| ((i * 7 + b) % 253) as u8).collect();
        payload += blob.len() as u64;
        let s: Result<UploadSession> = call(
            &mut ic,
            user,
            be,
            "upload_begin",
            encode_one(UploadBegin {
                total_len: p.blob_len,
            })
            .unwrap(),
        );
        let s = s.unwrap();
        for (i, c) in blob.chunks(limits::CHUNK_SIZE).enumerate() {
            let r: Result<()> = call(
                &mut ic,
                user,
                be,
                "upload_put_chunk",
                encode_args((s.upload_id, i as u32, ByteBuf::from(c.to_vec()))).unwrap(),
            );
            r.unwrap();
        }
        let r: Result<UploadReceipt> = call(
            &mut ic,
            user,
            be,
            "upload_finish",
            encode_args((s.upload_id, ByteBuf::from(Sha256::digest(&blob).to_vec()))).unwrap(),
        );
        r.unwrap();
        let r: Result<Memory> = call(
            &mut ic,
            user,
            be,
            "memory_create",
            encode_one(MemoryInput {
                title: format!("blob {b}"),
                description: "".into(),
                tags: vec![],
                kind: MemoryKind::Image,
                mime_type: "image/png".into(),
                asset: AssetInput::Upload {
                    upload_id: s.upload_id,
                },
            })
            .unwrap(),
        );
        r.unwrap();
    }
    for (i, piece) in personal_wasm.chunks(1024 * 1024).enumerate() {
        let r: FactoryResult<WasmInfo> = call(
            &mut ic,
            admin,
            be,
            "personal_wasm_put_chunk",
            encode_args((i as u32, ByteBuf::from(piece.to_vec()))).unwrap(),
        );
        r.unwrap();
    }
    let r: FactoryResult<WasmInfo> = call(
        &mut ic,
        admin,
        be,
        "personal_wasm_commit",
        encode_one(ByteBuf::from(Sha256::digest(&personal_wasm).to_vec())).unwrap(),
    );
    r.unwrap();
    let r: FactoryResult<ReserveStatus> = call(
        &mut ic,
        admin,
        be,
        "reserve_allocate",
        encode_one(Nat::from(100_000_000_000_000u128)).unwrap(),
    );
    r.unwrap();
    let balance0 = ic.cycle_balance(be).unwrap();
    ic.reset_metrics();
    ic.set_keep_metric_records(true);
    let t = Instant::now();
    let r: FactoryResult<CreationStatus> = call(
        &mut ic,
        user,
        be,
        "create_personal_canister",
        encode_one(None::<CreatePersonalCanisterConfig>).unwrap(),
    );
    r.unwrap();
    let mut peak_heap = 0;
    let mut state = CreationState::NotStarted;
    let mut costs = None;
    for round in 0..1_000_000u64 {
        ic.tick();
        peak_heap = peak_heap.max(ic.heap_bytes(be).unwrap());
        if round % 20 == 0 {
            ic.advance_time(Duration::from_secs(1));
            let b = ic
                .query_call(user, be, "get_creation_status", &encode_args(()).unwrap())
                .unwrap();
            let (s,): (FactoryResult<Option<CreationStatus>>,) = decode_args(&b).unwrap();
            let s = s.unwrap().unwrap();
            state = s.state;
            costs = s.costs;
            if !state.is_active() {
                if state == CreationState::Failed {
                    panic!("{:?}", s.last_error);
                }
                break;
            }
        }
    }
    let wall = t.elapsed();
    assert_eq!(state, CreationState::Completed);
    let pid: Principal = {
        let b = ic
            .query_call(
                user,
                be,
                "get_my_personal_canister_id",
                &encode_args(()).unwrap(),
            )
            .unwrap();
        let (r,): (FactoryResult<Option<Principal>>,) = decode_args(&b).unwrap();
        r.unwrap().unwrap()
    };
    let m = ic.metrics();
    let be_t = m.totals(be);
    let pe_t = m.totals(pid);
    let to_personal = m
        .records
        .iter()
        .filter(|r| {
            r.canister == pid && matches!(r.kind, ExecKind::Update | ExecKind::ReplicatedQuery)
        })
        .count();
    let import_bytes: u64 = m
        .records
        .iter()
        .filter(|r| r.canister == pid)
        .map(|r| r.bytes_received)
        .sum();
    let max_instr = m.records.iter().map(|r| r.instructions).max().unwrap_or(0);
    let max_msg = m
        .records
        .iter()
        .map(|r| r.bytes_received.max(r.bytes_sent))
        .max()
        .unwrap_or(0);
    let instr = be_t.instructions + pe_t.instructions;
    if std::env::var_os("BENCH_BREAKDOWN").is_some() {
        let mut by_method: std::collections::BTreeMap<(String, String), (u64, u64, u64)> =
            Default::default();
        for r in &m.records {
            let who = if r.canister == be {
                "backend"
            } else if r.canister == pid {
                "personal"
            } else {
                "other"
            };
            let e = by_method
                .entry((who.to_string(), format!("{} {:?}", r.method, r.kind)))
                .or_default();
            e.0 += 1;
            e.1 += r.instructions;
            e.2 += r.bytes_received;
        }
        let mut rows: Vec<_> = by_method.into_iter().collect();
        rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.1));
        for ((who, method), (n, instr, bytes)) in rows.iter().take(8) {
            println!(
                "    {who:8} {method:40} x{n:<5} {instr:>14} instr  {:>8.1} instr/byte received",
                *instr as f64 / (*bytes).max(1) as f64
            );
        }
    }
    let reserve: FactoryResult<ReserveStatus> = call(
        &mut ic,
        admin,
        be,
        "reserve_status",
        encode_args(()).unwrap(),
    );
    let reserve = reserve.unwrap();
    let balance1 = ic.cycle_balance(be).unwrap();
    let costs = costs.expect("a completed job has its costs");
    println!(
        "| {} | {} | {} | {} | {} | {:.4} | {} + {} | {:.1} | {} | {} | {} + {} | {} | {} | {} | {} | {:.2?} |",
        p.name,
        p.inline + p.blobs,
        payload,
        to_personal,
        import_bytes,
        import_bytes as f64 / payload.max(1) as f64,
        be_t.instructions,
        pe_t.instructions,
        instr as f64 / payload.max(1) as f64,
        max_instr,
        max_msg,
        costs.initial,
        costs.runway,
        costs.transmission,
        reserve.total_consumed,
        balance0 - balance1,
        peak_heap,
        wall
    );
}
