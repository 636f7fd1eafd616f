//! Export from one store, import into another (`capsule::transfer`): the import reproduces the capsule and
//! its manifest exactly, refuses everyone but the importer, closes for good at finalize, and is
//! idempotent: a chunk or batch sent twice is accepted once.
//!
//! The export runs in one thread (the backend's store), the import in another (a fresh personal canister's
//! store); only plain data crosses between them.

mod common;

use candid::Principal;
use capsule::error::{ErrorKind, Result};
use capsule::limits::*;
use capsule::service;
use capsule::store::{self, Region};
use capsule::transfer::{
    self, export, BlobChunk, CapsuleSnapshot, ConnectionBatch, ExportAsset, ImportAck, ImportBegin,
    ImportPhase, ImportStatus, MemoryBatch, MemoryExport,
};
use capsule::types::*;
use common::*;
use ic_stable_structures::Memory as _;
use rstest::rstest;
use std::sync::OnceLock;

fn factory() -> Principal {
    user("factory")
}

/// Everything the factory reads from the backend to move `owner()`'s capsule.
#[derive(Clone, Debug)]
struct Exported {
    owner: Principal,
    snapshot: CapsuleSnapshot,
    manifest: Manifest,
    memories: Vec<MemoryExport>,
    chunks: Vec<BlobChunk>,
    connections: Vec<Connection>,
    /// The source capsule as its owner sees it, for comparison after the import.
    source: Fingerprint,
    source_blobs: Vec<(u64, Vec<u8>)>,
}

/// Reads the whole capsule through the export API, in small pages to exercise `after`.
fn export_from_current_store(owner: Principal) -> Exported {
    let snapshot = export::snapshot(owner).expect("a capsule to export");
    let manifest = capsule::manifest::of(owner).unwrap();
    let mut memories = vec![];
    let mut after = None;
    loop {
        let page = export::memories_after(owner, after, 2, 1 << 20);
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        after = Some(last.id);
        memories.extend(page);
    }
    let mut chunks = vec![];
    for m in &memories {
        if let ExportAsset::Blob { len, sha256 } = &m.asset {
            let count = len.div_ceil(CHUNK_SIZE as u64) as u32;
            for i in 0..count {
                let c = export::blob_chunk(owner, m.id, i).expect("chunk");
                assert_eq!((c.memory_id, c.index, c.total_len), (m.id, i, *len));
                assert_eq!(c.sha256.as_slice(), sha(&c.bytes).as_slice());
                chunks.push(c);
            }
            assert!(export::blob_chunk(owner, m.id, count).is_none());
            let whole: Vec<u8> = chunks
                .iter()
                .filter(|c| c.memory_id == m.id)
                .flat_map(|c| c.bytes.iter().copied())
                .collect();
            assert_eq!(sha(&whole).as_slice(), sha256.as_slice());
        }
    }
    let mut connections = vec![];
    let mut after = None;
    loop {
        let page = export::connections_after(owner, after, 2);
        let Some(last) = page.last() else { break };
        after = Some(last.peer);
        connections.extend(page);
    }
    let source = fingerprint(owner);
    let source_blobs = source
        .memories
        .iter()
        .filter(|m| matches!(m.memory.asset, AssetInfo::Blob { .. }))
        .map(|m| (m.memory.id, read_blob(owner, m.memory.id)))
        .collect();
    Exported {
        owner,
        snapshot,
        manifest,
        memories,
        chunks,
        connections,
        source,
        source_blobs,
    }
}

/// The sample capsule, built by its owner through the service in a backend's store, and exported. Built
/// once per test binary: it is read-only data.
fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        in_fresh_store(|| {
            build_sample(Order::Straight, Mutation::None);
            export_from_current_store(owner())
        })
    })
}

fn begin_req(e: &Exported) -> ImportBegin {
    ImportBegin {
        capsule: e.snapshot.clone(),
        expected: e.manifest.clone(),
    }
}

fn memory_batches(memories: &[MemoryExport], size: usize) -> Vec<MemoryBatch> {
    memories
        .chunks(size)
        .enumerate()
        .map(|(seq, m)| MemoryBatch {
            seq: seq as u64,
            memories: m.to_vec(),
        })
        .collect()
}

fn connection_batches(connections: &[Connection], size: usize) -> Vec<ConnectionBatch> {
    connections
        .chunks(size)
        .enumerate()
        .map(|(seq, c)| ConnectionBatch {
            seq: seq as u64,
            connections: c.to_vec(),
        })
        .collect()
}

/// Sends everything after `begin`, in the straight order.
fn send_all(e: &Exported) {
    let f = factory();
    for c in &e.chunks {
        let ack = transfer::put_chunk(f, c.clone()).unwrap();
        assert_eq!(
            ack,
            ImportAck {
                duplicate: false,
                next: c.index as u64 + 1
            }
        );
    }
    for b in memory_batches(&e.memories, 2) {
        let ack = transfer::put_memories(f, b.clone()).unwrap();
        assert_eq!(
            ack,
            ImportAck {
                duplicate: false,
                next: b.seq + 1
            }
        );
    }
    for b in connection_batches(&e.connections, 2) {
        let ack = transfer::put_connections(f, b.clone()).unwrap();
        assert_eq!(
            ack,
            ImportAck {
                duplicate: false,
                next: b.seq + 1
            }
        );
    }
}

fn import_everything(e: &Exported) -> Result<Manifest> {
    transfer::init(e.owner, Some(factory()));
    transfer::begin(factory(), begin_req(e))?;
    send_all(e);
    transfer::finalize(factory())
}

/// Everything observable about the import, to assert that a refused call changed nothing.
fn import_fingerprint(e: &Exported) -> (ImportStatus, Fingerprint, u64) {
    (
        transfer::status(),
        fingerprint(e.owner),
        store::memory(Region::BlobSlots).size(),
    )
}

// ---- the round trip ---------------------------------------------------------------------------------

#[test]
fn export_reads_everything_in_order() {
    let e = exported();
    assert_eq!(
        e.memories.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(e.chunks.len(), 2);
    assert_eq!(e.connections.len(), 3);
    assert_eq!(e.snapshot.name, "Ada");
    assert_eq!(e.snapshot.next_memory_id, 4);
    assert_eq!(e.manifest.memories, 4);
    assert_eq!(e.manifest.blobs, 1);
    assert_eq!(e.source_blobs.len(), 1);
    assert_eq!(e.source_blobs[0].1.len(), SAMPLE_BLOB_LEN);
    // Nothing for someone without a capsule.
    in_fresh_store(|| {
        assert_eq!(export::snapshot(owner()), None);
        assert!(export::memories_after(owner(), None, 10, 1 << 20).is_empty());
        assert!(export::connections_after(owner(), None, 10).is_empty());
        assert_eq!(export::blob_chunk(owner(), 0, 0), None);
    });
}

#[test]
fn export_pages_are_bounded_by_bytes_but_never_empty() {
    in_fresh_store(|| {
        let a = owner();
        service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
        for i in 0..3 {
            service::memory_create(
                a,
                T0,
                memory_input(&format!("m{i}"), inline(&vec![i; INLINE_MAX])),
            )
            .unwrap();
        }
        // A byte budget smaller than one memory still returns one memory per page.
        let one = export::memories_after(a, None, 100, 10);
        assert_eq!(one.len(), 1);
        let two = export::memories_after(a, None, 100, 2 * INLINE_MAX + 500);
        assert_eq!(two.len(), 2);
        let rest = export::memories_after(a, Some(1), 100, usize::MAX);
        assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), vec![2]);
        // Not a blob: no chunk.
        assert_eq!(export::blob_chunk(a, 0, 0), None);
    });
}

#[test]
fn import_reproduces_the_capsule_and_its_manifest() {
    let e = exported();
    let e2 = e.clone();
    in_fresh_store(move || {
        let e = &e2;
        let f = factory();
        transfer::init(e.owner, Some(f));
        let st = transfer::status();
        assert_eq!(st.phase, ImportPhase::Ready);
        assert_eq!((st.owner, st.importer), (Some(e.owner), Some(f)));
        let st = transfer::begin(f, begin_req(e)).unwrap();
        assert_eq!(st.phase, ImportPhase::Open);
        assert_eq!(st.expected.as_ref(), Some(&e.manifest));
        send_all(e);
        let st = transfer::status();
        assert_eq!((st.memories, st.connections, st.pending_blobs), (4, 3, 0));
        assert_eq!((st.memory_batches, st.connection_batches), (2, 2));
        // The importer can verify before finalizing.
        assert_eq!(transfer::manifest_for(f).unwrap(), e.manifest);
        let m = transfer::finalize(f).unwrap();
        assert_eq!(m, e.manifest);
        assert_eq!(capsule::manifest::of(e.owner).unwrap(), e.manifest);
        assert_eq!(transfer::manifest_for(e.owner).unwrap(), e.manifest);
        assert_eq!(transfer::status().phase, ImportPhase::Finalized);
        // The owner sees exactly the capsule they had in the backend: metadata, counts, stored bytes,
        // every memory and connection, every blob byte.
        assert_eq!(fingerprint(e.owner), e.source);
        for (id, bytes) in &e.source_blobs {
            assert_eq!(&read_blob(e.owner, *id), bytes);
        }
    });
}

#[rstest]
#[case::one_memory_per_batch(1, 1)]
#[case::all_in_one_batch(1000, 1000)]
#[case::pairs(2, 2)]
fn batch_sizes_do_not_matter(
    #[case] memories_per_batch: usize,
    #[case] connections_per_batch: usize,
) {
    let e = exported();
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    for c in &e.chunks {
        transfer::put_chunk(f, c.clone()).unwrap();
    }
    for b in memory_batches(&e.memories, memories_per_batch) {
        transfer::put_memories(f, b).unwrap();
    }
    for b in connection_batches(&e.connections, connections_per_batch) {
        transfer::put_connections(f, b).unwrap();
    }
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
}

/// The same content arriving in another order (memories across batches out of id order, connections
/// reversed, connections before memories) gives the same manifest: finalize accepts it.
#[test]
fn import_in_another_order_gives_the_same_manifest() {
    let e = exported();
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    let mut conns = e.connections.clone();
    conns.reverse();
    transfer::put_connections(
        f,
        ConnectionBatch {
            seq: 0,
            connections: conns[..1].to_vec(),
        },
    )
    .unwrap();
    // Memories without a blob first, then the blob's chunks, then its memory.
    let by_id = |id: u64| e.memories.iter().find(|m| m.id == id).unwrap().clone();
    transfer::put_memories(
        f,
        MemoryBatch {
            seq: 0,
            memories: vec![by_id(3), by_id(0)],
        },
    )
    .unwrap();
    transfer::put_connections(
        f,
        ConnectionBatch {
            seq: 1,
            connections: conns[1..].to_vec(),
        },
    )
    .unwrap();
    for c in &e.chunks {
        transfer::put_chunk(f, c.clone()).unwrap();
    }
    transfer::put_memories(
        f,
        MemoryBatch {
            seq: 1,
            memories: vec![by_id(2), by_id(1)],
        },
    )
    .unwrap();
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
    assert_eq!(fingerprint(e.owner), e.source);
}

// ---- the owner's capsule stays locked until finalize ------------------------------------------------

/// A write the owner attempts, by name.
type Write = Box<dyn Fn() -> Result<()>>;

#[test]
fn owner_writes_are_locked_until_finalize() {
    let e = exported();
    let a = e.owner;
    let f = factory();
    transfer::init(a, Some(f));
    assert_eq!(service::status_of(a), CapsuleStatus::Locked);
    assert_eq!(
        kind_of(service::capsule_create(a, T0, capsule_input("early", ""))),
        ErrorKind::CapsuleLocked
    );
    assert_eq!(kind_of(service::capsule_get(a)), ErrorKind::CapsuleNotFound);
    // Only the owner can hold a capsule here.
    assert_eq!(
        kind_of(service::capsule_create(
            stranger(),
            T0,
            capsule_input("x", "")
        )),
        ErrorKind::NotOwner
    );
    transfer::begin(f, begin_req(e)).unwrap();
    send_all(e);
    let writes: [(&str, Write); 6] = [
        (
            "capsule_update",
            Box::new(move || {
                service::capsule_update(
                    a,
                    T0 + 1,
                    CapsuleUpdate {
                        name: Some("x".into()),
                        bio: None,
                    },
                )
                .map(drop)
            }),
        ),
        (
            "memory_create",
            Box::new(move || {
                service::memory_create(a, T0 + 1, memory_input("x", AssetInput::None)).map(drop)
            }),
        ),
        (
            "memory_update",
            Box::new(move || {
                service::memory_update(
                    a,
                    T0 + 1,
                    0,
                    MemoryUpdate {
                        title: Some("x".into()),
                        ..Default::default()
                    },
                )
                .map(drop)
            }),
        ),
        (
            "upload_begin",
            Box::new(move || {
                service::upload_begin(a, T0 + 1, UploadBegin { total_len: 5 }).map(drop)
            }),
        ),
        (
            "connection_add",
            Box::new(move || {
                service::connection_add(a, T0 + 1, user("new"), String::new()).map(drop)
            }),
        ),
        (
            "memory_delete",
            Box::new(move || service::memory_delete(a, T0 + 1, 2)),
        ),
    ];
    let before = fingerprint(a);
    for (name, w) in &writes {
        assert_eq!(
            kind_of(w()),
            ErrorKind::CapsuleLocked,
            "{name} before finalize"
        );
    }
    assert_eq!(fingerprint(a), before);
    // Reads work meanwhile.
    assert_eq!(
        service::capsule_get(a).unwrap().status,
        CapsuleStatus::Locked
    );
    assert_eq!(all_memories(a).len(), 4);
    transfer::finalize(f).unwrap();
    assert_eq!(service::status_of(a), CapsuleStatus::Active);
    for (name, w) in &writes {
        w().unwrap_or_else(|e| panic!("{name} after finalize: {e}"));
    }
    assert_eq!(
        service::capsule_get(a).unwrap().status,
        CapsuleStatus::Active
    );
    // A new memory continues the source's ids.
    let m = service::memory_create(a, T0 + 2, memory_input("new", AssetInput::None)).unwrap();
    assert_eq!(m.id, 5);
    // Someone else still cannot use this canister.
    assert_eq!(
        kind_of(service::capsule_get(stranger())),
        ErrorKind::NotOwner
    );
}

#[test]
fn without_an_importer_the_owner_writes_at_once_and_nobody_imports() {
    let a = owner();
    transfer::init(a, None);
    assert_eq!(transfer::status().phase, ImportPhase::Closed);
    service::capsule_create(a, T0, capsule_input("Ada", "")).unwrap();
    service::memory_create(a, T0, memory_input("m", AssetInput::None)).unwrap();
    for caller in [factory(), a, stranger()] {
        assert_eq!(kind_of(transfer::finalize(caller)), ErrorKind::NotImporter);
    }
}

// ---- who may call the import API, and when ----------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Begin,
    Chunk,
    Memories,
    Connections,
    Finalize,
}

fn call_import(op: Imp, caller: Principal, e: &Exported) -> Result<()> {
    match op {
        Imp::Begin => transfer::begin(caller, begin_req(e)).map(drop),
        Imp::Chunk => transfer::put_chunk(caller, e.chunks[0].clone()).map(drop),
        Imp::Memories => transfer::put_memories(
            caller,
            MemoryBatch {
                seq: 0,
                memories: vec![e.memories[0].clone()],
            },
        )
        .map(drop),
        Imp::Connections => transfer::put_connections(
            caller,
            ConnectionBatch {
                seq: 0,
                connections: vec![e.connections[0].clone()],
            },
        )
        .map(drop),
        Imp::Finalize => transfer::finalize(caller).map(drop),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Ready,
    Open,
    Finalized,
}

fn reach(phase: Phase, e: &Exported) {
    transfer::init(e.owner, Some(factory()));
    match phase {
        Phase::Ready => {}
        Phase::Open => {
            transfer::begin(factory(), begin_req(e)).unwrap();
            transfer::put_chunk(factory(), e.chunks[0].clone()).unwrap();
        }
        Phase::Finalized => {
            transfer::begin(factory(), begin_req(e)).unwrap();
            send_all(e);
            transfer::finalize(factory()).unwrap();
        }
    }
}

#[rstest]
fn only_the_importer_may_import(
    #[values(Imp::Begin, Imp::Chunk, Imp::Memories, Imp::Connections, Imp::Finalize)] op: Imp,
    #[values(Phase::Ready, Phase::Open, Phase::Finalized)] phase: Phase,
    #[values("stranger", "owner", "anonymous")] who: &str,
) {
    let e = exported();
    reach(phase, e);
    let (caller, expected) = match who {
        "stranger" => (stranger(), ErrorKind::NotImporter),
        "owner" => (e.owner, ErrorKind::NotImporter),
        _ => (Principal::anonymous(), ErrorKind::AnonymousCaller),
    };
    let before = import_fingerprint(e);
    assert_eq!(kind_of(call_import(op, caller, e)), expected);
    assert_eq!(import_fingerprint(e), before);
}

#[rstest]
fn nothing_is_accepted_after_finalize(
    #[values(Imp::Begin, Imp::Chunk, Imp::Memories, Imp::Connections, Imp::Finalize)] op: Imp,
) {
    let e = exported();
    reach(Phase::Finalized, e);
    // The owner's later writes are not undone or reopened by an importer's late call.
    service::memory_create(e.owner, T0 + 9, memory_input("after", AssetInput::None)).unwrap();
    let before = import_fingerprint(e);
    assert_eq!(
        kind_of(call_import(op, factory(), e)),
        ErrorKind::ImportFinalized
    );
    assert_eq!(import_fingerprint(e), before);
    assert_eq!(service::status_of(e.owner), CapsuleStatus::Active);
}

#[rstest]
fn nothing_but_begin_is_accepted_before_begin(
    #[values(Imp::Chunk, Imp::Memories, Imp::Connections, Imp::Finalize)] op: Imp,
) {
    let e = exported();
    reach(Phase::Ready, e);
    let before = import_fingerprint(e);
    assert_eq!(
        kind_of(call_import(op, factory(), e)),
        ErrorKind::ImportNotStarted
    );
    assert_eq!(import_fingerprint(e), before);
}

#[test]
fn begin_is_idempotent_and_a_different_begin_conflicts() {
    let e = exported();
    reach(Phase::Open, e);
    let before = import_fingerprint(e);
    let st = transfer::begin(factory(), begin_req(e)).unwrap();
    assert_eq!(st.phase, ImportPhase::Open);
    assert_eq!(import_fingerprint(e), before);
    let mut other = begin_req(e);
    other.capsule.bio.push('!');
    assert_eq!(
        kind_of(transfer::begin(factory(), other)),
        ErrorKind::ImportConflict {
            reason: "an import with another manifest is open".into()
        }
    );
    let mut other = begin_req(e);
    other.expected.memories += 1;
    assert!(matches!(
        kind_of(transfer::begin(factory(), other)),
        ErrorKind::ImportConflict { .. }
    ));
    assert_eq!(import_fingerprint(e), before);
}

// ---- idempotence, hashes, order ---------------------------------------------------------------------

#[test]
fn a_duplicate_chunk_is_acknowledged_and_not_stored_twice() {
    let e = exported();
    let f = factory();
    reach(Phase::Open, e); // chunk 0 of the blob is in
    let before = import_fingerprint(e);
    let ack = transfer::put_chunk(f, e.chunks[0].clone()).unwrap();
    assert_eq!(
        ack,
        ImportAck {
            duplicate: true,
            next: 1
        }
    );
    assert_eq!(import_fingerprint(e), before, "the duplicate was stored");
    // The same index with other bytes (and their true hash) conflicts.
    let mut other = e.chunks[0].clone();
    other.bytes[0] ^= 1;
    other.sha256 = sha(&other.bytes).into();
    assert_eq!(
        kind_of(transfer::put_chunk(f, other)),
        ErrorKind::ChunkConflict { index: 0 }
    );
    assert_eq!(import_fingerprint(e), before);

    transfer::put_chunk(f, e.chunks[1].clone()).unwrap();
    for b in memory_batches(&e.memories, 2) {
        transfer::put_memories(f, b).unwrap();
    }
    // Once the memory is committed, its whole chunk stream is a duplicate.
    let before = import_fingerprint(e);
    for c in &e.chunks {
        let ack = transfer::put_chunk(f, c.clone()).unwrap();
        assert_eq!(
            ack,
            ImportAck {
                duplicate: true,
                next: 2
            }
        );
    }
    assert_eq!(import_fingerprint(e), before);
    for b in connection_batches(&e.connections, 2) {
        transfer::put_connections(f, b).unwrap();
    }
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
    assert_eq!(fingerprint(e.owner), e.source);
}

#[test]
fn a_duplicate_batch_is_acknowledged_and_not_stored_twice() {
    let e = exported();
    let f = factory();
    reach(Phase::Open, e);
    transfer::put_chunk(f, e.chunks[1].clone()).unwrap();
    let mb = memory_batches(&e.memories, 2);
    let cb = connection_batches(&e.connections, 2);
    transfer::put_memories(f, mb[0].clone()).unwrap();
    transfer::put_connections(f, cb[0].clone()).unwrap();
    let before = import_fingerprint(e);
    assert_eq!(
        transfer::put_memories(f, mb[0].clone()).unwrap(),
        ImportAck {
            duplicate: true,
            next: 1
        }
    );
    assert_eq!(
        transfer::put_connections(f, cb[0].clone()).unwrap(),
        ImportAck {
            duplicate: true,
            next: 1
        }
    );
    // A batch with an already-used seq is a duplicate whatever it carries: the sequence number decides.
    assert_eq!(
        transfer::put_memories(
            f,
            MemoryBatch {
                seq: 0,
                memories: mb[1].memories.clone()
            }
        )
        .unwrap(),
        ImportAck {
            duplicate: true,
            next: 1
        }
    );
    assert_eq!(import_fingerprint(e), before);
    let st = transfer::status();
    assert_eq!((st.memories, st.connections), (2, 2));
    transfer::put_memories(f, mb[1].clone()).unwrap();
    transfer::put_connections(f, cb[1].clone()).unwrap();
    for b in &mb {
        assert!(transfer::put_memories(f, b.clone()).unwrap().duplicate);
    }
    for b in &cb {
        assert!(transfer::put_connections(f, b.clone()).unwrap().duplicate);
    }
    let st = transfer::status();
    assert_eq!((st.memories, st.connections), (4, 3));
    let m = transfer::finalize(f).unwrap();
    assert_eq!(m, e.manifest);
    let c = service::capsule_get(e.owner).unwrap();
    assert_eq!(
        (c.memory_count, c.connection_count, c.stored_bytes),
        (4, 3, (SAMPLE_INLINE_LEN + 4 + SAMPLE_BLOB_LEN) as u64)
    );
}

#[test]
fn a_chunk_that_does_not_match_its_hash_is_refused() {
    let e = exported();
    let f = factory();
    reach(Phase::Ready, e);
    transfer::begin(f, begin_req(e)).unwrap();
    let mut bad = e.chunks[0].clone();
    bad.bytes[100] ^= 0x80;
    let before = import_fingerprint(e);
    assert_eq!(
        kind_of(transfer::put_chunk(f, bad.clone())),
        ErrorKind::HashMismatch {
            expected: hex::encode(&e.chunks[0].sha256),
            actual: hex::encode(sha(&bad.bytes)),
        }
    );
    assert_eq!(import_fingerprint(e), before, "a refused chunk was stored");
    // The right chunk is then accepted as the first, not as a duplicate.
    assert_eq!(
        transfer::put_chunk(f, e.chunks[0].clone()).unwrap(),
        ImportAck {
            duplicate: false,
            next: 1
        }
    );
    // A hash that is not even 32 bytes is a mismatch too.
    let mut short = e.chunks[1].clone();
    short.sha256 = short.sha256[..31].to_vec().into();
    assert!(matches!(
        kind_of(transfer::put_chunk(f, short)),
        ErrorKind::HashMismatch { .. }
    ));
}

#[test]
fn out_of_order_items_are_refused() {
    let e = exported();
    let f = factory();
    reach(Phase::Ready, e);
    transfer::begin(f, begin_req(e)).unwrap();
    let before = import_fingerprint(e);
    assert_eq!(
        kind_of(transfer::put_chunk(f, e.chunks[1].clone())),
        ErrorKind::ImportOutOfOrder {
            stream: "blob of memory 1".into(),
            expected: 0,
            got: 1
        }
    );
    let mb = memory_batches(&e.memories, 1);
    assert_eq!(
        kind_of(transfer::put_memories(f, mb[1].clone())),
        ErrorKind::ImportOutOfOrder {
            stream: "memories".into(),
            expected: 0,
            got: 1
        }
    );
    let cb = connection_batches(&e.connections, 1);
    assert_eq!(
        kind_of(transfer::put_connections(f, cb[2].clone())),
        ErrorKind::ImportOutOfOrder {
            stream: "connections".into(),
            expected: 0,
            got: 2
        }
    );
    assert_eq!(import_fingerprint(e), before);
    transfer::put_connections(f, cb[0].clone()).unwrap();
    assert_eq!(
        kind_of(transfer::put_connections(f, cb[2].clone())),
        ErrorKind::ImportOutOfOrder {
            stream: "connections".into(),
            expected: 1,
            got: 2
        }
    );
    // A memory whose blob has not fully arrived cannot be committed.
    transfer::put_chunk(f, e.chunks[0].clone()).unwrap();
    transfer::put_memories(f, mb[0].clone()).unwrap();
    assert_eq!(
        kind_of(transfer::put_memories(f, mb[1].clone())),
        ErrorKind::ImportConflict {
            reason: "the blob of memory 1 has not been fully received".into()
        }
    );
}

// ---- finalize verifies the manifest -----------------------------------------------------------------

#[test]
fn begin_refuses_a_manifest_whose_root_hex_is_not_its_root() {
    let e = exported();
    let f = factory();
    let mut forged = e.manifest.clone();
    forged.root_hex = "0".repeat(64);
    transfer::init(e.owner, Some(f));
    let r = transfer::begin(
        f,
        ImportBegin {
            capsule: e.snapshot.clone(),
            expected: forged,
        },
    );
    assert!(
        matches!(&r, Err(err) if matches!(&err.kind, ErrorKind::InvalidArgument { field, .. } if field == "expected.root_hex")),
        "{r:?}"
    );
    assert_eq!(transfer::status().phase, ImportPhase::Ready);
}

#[rstest]
#[case::root(|m: &mut Manifest| { m.root[0] ^= 1; m.root_hex = hex::encode(&m.root); })]
#[case::memory_count(|m: &mut Manifest| m.memories += 1)]
#[case::blob_bytes(|m: &mut Manifest| m.blob_bytes -= 1)]
#[case::connections(|m: &mut Manifest| m.connections = 0)]
fn finalize_with_a_forged_manifest_is_refused(#[case] forge: fn(&mut Manifest)) {
    let e = exported();
    let f = factory();
    let mut forged = e.manifest.clone();
    forge(&mut forged);
    transfer::init(e.owner, Some(f));
    transfer::begin(
        f,
        ImportBegin {
            capsule: e.snapshot.clone(),
            expected: forged.clone(),
        },
    )
    .unwrap();
    send_all(e);
    let before = import_fingerprint(e);
    assert_eq!(
        kind_of(transfer::finalize(f)),
        ErrorKind::ManifestMismatch {
            expected: Box::new(forged.clone()),
            actual: Box::new(e.manifest.clone())
        }
    );
    // Still open, still locked: nothing was finalized.
    assert_eq!(import_fingerprint(e), before);
    assert_eq!(transfer::status().phase, ImportPhase::Open);
    assert_eq!(service::status_of(e.owner), CapsuleStatus::Locked);
    assert_eq!(
        kind_of(service::memory_create(
            e.owner,
            T0,
            memory_input("x", AssetInput::None)
        )),
        ErrorKind::CapsuleLocked
    );
    // And it stays refused.
    assert!(matches!(
        kind_of(transfer::finalize(f)),
        ErrorKind::ManifestMismatch { .. }
    ));
}

#[test]
fn finalize_with_something_missing_reports_both_manifests() {
    let e = exported();
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    for c in &e.chunks {
        transfer::put_chunk(f, c.clone()).unwrap();
    }
    // The last memory batch and the last connection never arrive.
    let mb = memory_batches(&e.memories, 2);
    transfer::put_memories(f, mb[0].clone()).unwrap();
    transfer::put_connections(
        f,
        ConnectionBatch {
            seq: 0,
            connections: e.connections[..2].to_vec(),
        },
    )
    .unwrap();
    let ErrorKind::ManifestMismatch { expected, actual } = kind_of(transfer::finalize(f)) else {
        panic!("expected a manifest mismatch")
    };
    assert_eq!(*expected, e.manifest);
    assert_eq!((actual.memories, actual.connections), (2, 2));
    assert_ne!(actual.root, expected.root);
    assert_eq!(*actual, transfer::manifest_for(f).unwrap());
    // Sending the rest makes it whole.
    transfer::put_memories(f, mb[1].clone()).unwrap();
    transfer::put_connections(
        f,
        ConnectionBatch {
            seq: 1,
            connections: e.connections[2..].to_vec(),
        },
    )
    .unwrap();
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
}

/// A byte changed in transit that still carries a matching hash (e.g. a bug in the exporter) is caught at
/// finalize by the manifest.
#[test]
fn a_consistently_altered_chunk_is_caught_at_finalize() {
    let e = exported();
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    let mut altered = e.chunks[1].clone();
    altered.bytes[3] ^= 1;
    altered.sha256 = sha(&altered.bytes).into();
    transfer::put_chunk(f, e.chunks[0].clone()).unwrap();
    transfer::put_chunk(f, altered).unwrap();
    for b in memory_batches(&e.memories, 4) {
        transfer::put_memories(f, b).unwrap();
    }
    for b in connection_batches(&e.connections, 4) {
        transfer::put_connections(f, b).unwrap();
    }
    assert!(matches!(
        kind_of(transfer::finalize(f)),
        ErrorKind::ManifestMismatch { .. }
    ));
}

#[test]
fn the_import_manifest_query_is_for_the_owner_and_the_importer() {
    let e = exported();
    reach(Phase::Finalized, e);
    assert_eq!(transfer::manifest_for(factory()).unwrap(), e.manifest);
    assert_eq!(transfer::manifest_for(e.owner).unwrap(), e.manifest);
    assert_eq!(
        kind_of(transfer::manifest_for(stranger())),
        ErrorKind::NotOwner
    );
    assert_eq!(
        kind_of(transfer::manifest_for(Principal::anonymous())),
        ErrorKind::AnonymousCaller
    );
}

#[test]
fn round_trip_through_import_everything() {
    let e = exported();
    assert_eq!(import_everything(e).unwrap(), e.manifest);
}

// ---- a batch that names the same item twice ---------------------------------------------------------
//
// Found by these tests (fixed in 583d6cf): such a batch used to be accepted, writing the record once but
// counting it twice in the capsule's memory/connection count and stored bytes (finalize still passed, the
// manifest counting map entries), and a blob memory named twice trapped on an `expect`.

/// Imports the blob's chunks, then offers `batch` as memory batch 0.
fn offer_first_memory_batch(e: &Exported, memories: Vec<MemoryExport>) -> Result<ImportAck> {
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    for c in &e.chunks {
        transfer::put_chunk(f, c.clone()).unwrap();
    }
    transfer::put_memories(f, MemoryBatch { seq: 0, memories })
}

/// After a refused batch, the whole import still goes through and the counts are the source's.
fn finish_and_check_counts(e: &Exported) {
    let f = factory();
    for b in memory_batches(&e.memories, 4) {
        transfer::put_memories(f, b).unwrap();
    }
    for b in connection_batches(&e.connections, 4) {
        transfer::put_connections(f, b).unwrap();
    }
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
    assert_eq!(fingerprint(e.owner), e.source);
}

#[rstest]
#[case::inline_memory(0)]
#[case::blob_memory(1)]
#[case::memory_without_asset(2)]
fn a_memory_batch_naming_a_memory_twice_is_refused(#[case] index: usize) {
    let e = exported();
    let m = e.memories[index].clone();
    // Not a trap, a typed error, and nothing stored.
    let r = std::panic::catch_unwind(|| {
        offer_first_memory_batch(e, vec![e.memories[3].clone(), m.clone(), m.clone()])
            .map_err(|e| e.kind)
    })
    .unwrap_or_else(|_| {
        panic!(
            "put_memories trapped on a batch naming memory {} twice",
            m.id
        )
    });
    assert_eq!(
        r,
        Err(ErrorKind::InvalidArgument {
            field: "memories[].id".into(),
            reason: format!("memory {} appears twice in the batch", m.id),
        })
    );
    let st = transfer::status();
    assert_eq!((st.memories, st.memory_batches), (0, 0));
    assert!(all_memories(e.owner).is_empty());
    let c = service::capsule_get(e.owner).unwrap();
    assert_eq!((c.memory_count, c.stored_bytes), (0, 0));
    finish_and_check_counts(e);
}

#[test]
fn a_connection_batch_naming_a_peer_twice_is_refused() {
    let e = exported();
    let f = factory();
    transfer::init(e.owner, Some(f));
    transfer::begin(f, begin_req(e)).unwrap();
    for c in &e.chunks {
        transfer::put_chunk(f, c.clone()).unwrap();
    }
    let before = import_fingerprint(e);
    let c0 = e.connections[0].clone();
    let batch = ConnectionBatch {
        seq: 0,
        connections: vec![c0.clone(), e.connections[1].clone(), c0.clone()],
    };
    assert_eq!(
        kind_of(transfer::put_connections(f, batch)),
        ErrorKind::InvalidArgument {
            field: "connections[].peer".into(),
            reason: format!("{} appears twice in the batch", c0.peer),
        }
    );
    assert_eq!(import_fingerprint(e), before);
    finish_and_check_counts(e);
}

// ---- input bounds of the import API -----------------------------------------------------------------

type ImportCall = fn(&Exported) -> Result<()>;
type ImportExpect = fn(&Exported) -> ErrorKind;

fn chunk_with(e: &Exported, index: usize, f: impl FnOnce(&mut BlobChunk)) -> BlobChunk {
    let mut c = e.chunks[index].clone();
    f(&mut c);
    c
}

fn memory_with(e: &Exported, index: usize, f: impl FnOnce(&mut MemoryExport)) -> MemoryBatch {
    let mut m = e.memories[index].clone();
    f(&mut m);
    MemoryBatch {
        seq: 0,
        memories: vec![m],
    }
}

fn connection_with(e: &Exported, f: impl FnOnce(&mut Connection)) -> ConnectionBatch {
    let mut c = e.connections[0].clone();
    f(&mut c);
    ConnectionBatch {
        seq: 0,
        connections: vec![c],
    }
}

fn invalid(field: &str, reason: &str) -> ErrorKind {
    ErrorKind::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

#[rstest]
#[case::begin_name_too_long(
    |e: &Exported| transfer::begin(factory(), ImportBegin { capsule: CapsuleSnapshot { name: "n".repeat(NAME_MAX + 1), ..e.snapshot.clone() }, expected: e.manifest.clone() }).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "name".into(), max: NAME_MAX as u64, actual: NAME_MAX as u64 + 1 })]
#[case::begin_bio_too_long(
    |e: &Exported| transfer::begin(factory(), ImportBegin { capsule: CapsuleSnapshot { bio: "b".repeat(BIO_MAX + 1), ..e.snapshot.clone() }, expected: e.manifest.clone() }).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "bio".into(), max: BIO_MAX as u64, actual: BIO_MAX as u64 + 1 })]
#[case::begin_root_not_a_sha256(
    |e: &Exported| transfer::begin(factory(), ImportBegin { capsule: e.snapshot.clone(), expected: Manifest { root: vec![0; 31].into(), ..e.manifest.clone() } }).map(drop),
    |_: &Exported| invalid("expected.root", "must be a 32-byte SHA-256"))]
#[case::chunk_too_big(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| { c.bytes = vec![1; CHUNK_SIZE + 1].into(); c.sha256 = sha(&c.bytes).into(); })).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "chunk".into(), max: CHUNK_SIZE as u64, actual: CHUNK_SIZE as u64 + 1 })]
#[case::chunk_total_len_zero(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| c.total_len = 0)).map(drop),
    |_: &Exported| invalid("total_len", &format!("must be between 1 and {BLOB_MAX}")))]
#[case::chunk_total_len_too_big(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| c.total_len = BLOB_MAX + 1)).map(drop),
    |_: &Exported| invalid("total_len", &format!("must be between 1 and {BLOB_MAX}")))]
#[case::chunk_out_of_range(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| c.index = 2)).map(drop),
    |_: &Exported| ErrorKind::ChunkOutOfRange { index: 2, chunk_count: 2 })]
#[case::chunk_of_the_wrong_size(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| { c.bytes.pop(); c.sha256 = sha(&c.bytes).into(); })).map(drop),
    |_: &Exported| ErrorKind::ChunkSizeInvalid { index: 1, expected: 10, actual: 9 })]
#[case::chunk_of_another_length(
    |e: &Exported| transfer::put_chunk(factory(), chunk_with(e, 1, |c| { c.total_len += 1; c.bytes.push(0); c.sha256 = sha(&c.bytes).into(); })).map(drop),
    |_: &Exported| ErrorKind::LengthMismatch { expected: SAMPLE_BLOB_LEN as u64, actual: SAMPLE_BLOB_LEN as u64 + 1 })]
#[case::too_many_memories(
    |e: &Exported| transfer::put_memories(factory(), MemoryBatch { seq: 0, memories: vec![e.memories[2].clone(); IMPORT_BATCH_MAX + 1] }).map(drop),
    |_: &Exported| ErrorKind::TooMany { field: "memories".into(), max: IMPORT_BATCH_MAX as u64, actual: IMPORT_BATCH_MAX as u64 + 1 })]
#[case::memory_beyond_next_id(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 2, |m| m.id = 4)).map(drop),
    |_: &Exported| invalid("memories[].id", "memory 4 is beyond the capsule's next id 4"))]
#[case::memory_title_too_long(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 2, |m| m.title = "t".repeat(TITLE_MAX + 1))).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "title".into(), max: TITLE_MAX as u64, actual: TITLE_MAX as u64 + 1 })]
#[case::memory_too_many_tags(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 2, |m| m.tags = (0..=TAGS_MAX).map(|i| i.to_string()).collect())).map(drop),
    |_: &Exported| ErrorKind::TooMany { field: "tags".into(), max: TAGS_MAX as u64, actual: TAGS_MAX as u64 + 1 })]
#[case::memory_empty_tag(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 2, |m| m.tags = vec![String::new()])).map(drop),
    |_: &Exported| invalid("tags[]", "a tag cannot be empty"))]
#[case::memory_mime_type_too_long(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 2, |m| m.mime_type = "m".repeat(MIME_MAX + 1))).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "mime_type".into(), max: MIME_MAX as u64, actual: MIME_MAX as u64 + 1 })]
#[case::memory_inline_too_big(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 0, |m| m.asset = ExportAsset::Inline { bytes: vec![0; INLINE_MAX + 1].into() })).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "asset.inline".into(), max: INLINE_MAX as u64, actual: INLINE_MAX as u64 + 1 })]
#[case::memory_blob_hash_not_a_sha256(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 1, |m| m.asset = ExportAsset::Blob { len: SAMPLE_BLOB_LEN as u64, sha256: vec![0; 31].into() })).map(drop),
    |_: &Exported| invalid("asset.sha256", "must be 32 bytes"))]
#[case::memory_blob_not_received(
    |e: &Exported| transfer::put_memories(factory(), memory_with(e, 1, |_| {})).map(drop),
    |_: &Exported| ErrorKind::ImportConflict { reason: "the blob of memory 1 has not been fully received".into() })]
#[case::too_many_connections(
    |e: &Exported| transfer::put_connections(factory(), ConnectionBatch { seq: 0, connections: (0..=IMPORT_BATCH_MAX).map(|i| Connection { peer: user(&format!("p{i}")), ..e.connections[0].clone() }).collect() }).map(drop),
    |_: &Exported| ErrorKind::TooMany { field: "connections".into(), max: IMPORT_BATCH_MAX as u64, actual: IMPORT_BATCH_MAX as u64 + 1 })]
#[case::connection_note_too_long(
    |e: &Exported| transfer::put_connections(factory(), connection_with(e, |c| c.note = "n".repeat(NOTE_MAX + 1))).map(drop),
    |_: &Exported| ErrorKind::TooLong { field: "note".into(), max: NOTE_MAX as u64, actual: NOTE_MAX as u64 + 1 })]
#[case::connection_to_the_owner(
    |e: &Exported| transfer::put_connections(factory(), connection_with(e, |c| c.peer = owner())).map(drop),
    |_: &Exported| invalid("connections[].peer", "cannot be the owner or anonymous"))]
#[case::connection_to_anonymous(
    |e: &Exported| transfer::put_connections(factory(), connection_with(e, |c| c.peer = Principal::anonymous())).map(drop),
    |_: &Exported| invalid("connections[].peer", "cannot be the owner or anonymous"))]
fn import_input_bound(#[case] f: ImportCall, #[case] expected: ImportExpect) {
    let e = exported();
    reach(Phase::Open, e); // begun, chunk 0 of memory 1's blob received
    let before = import_fingerprint(e);
    assert_eq!(kind_of(f(e)), expected(e));
    assert_eq!(
        import_fingerprint(e),
        before,
        "a refused import call changed something"
    );
    // The import still completes.
    transfer::put_chunk(factory(), e.chunks[1].clone()).unwrap();
    for b in memory_batches(&e.memories, 4) {
        transfer::put_memories(factory(), b).unwrap();
    }
    for b in connection_batches(&e.connections, 4) {
        transfer::put_connections(factory(), b).unwrap();
    }
    assert_eq!(transfer::finalize(factory()).unwrap(), e.manifest);
}

#[test]
fn a_memory_or_connection_sent_again_in_a_later_batch_conflicts() {
    let e = exported();
    let f = factory();
    reach(Phase::Open, e);
    transfer::put_memories(f, memory_with(e, 0, |_| {})).unwrap();
    transfer::put_connections(f, connection_with(e, |_| {})).unwrap();
    let before = import_fingerprint(e);
    let again = MemoryBatch {
        seq: 1,
        memories: vec![e.memories[2].clone(), e.memories[0].clone()],
    };
    assert_eq!(
        kind_of(transfer::put_memories(f, again)),
        ErrorKind::ImportConflict {
            reason: "memory 0 was already imported".into()
        }
    );
    let again = ConnectionBatch {
        seq: 1,
        connections: vec![e.connections[0].clone()],
    };
    assert_eq!(
        kind_of(transfer::put_connections(f, again)),
        ErrorKind::ImportConflict {
            reason: format!(
                "connection with {} was already imported",
                e.connections[0].peer
            )
        }
    );
    // Nothing of the refused batches was stored (not even memory 2), and their seq is still free.
    assert_eq!(import_fingerprint(e), before);
    transfer::put_memories(
        f,
        MemoryBatch {
            seq: 1,
            memories: vec![e.memories[2].clone()],
        },
    )
    .unwrap();
}

#[test]
fn chunks_of_a_blob_no_memory_claims_are_dropped_at_finalize() {
    let e = exported();
    let f = factory();
    reach(Phase::Open, e);
    // Chunks for memory 2, which has no blob, and for an id the capsule never had.
    for memory_id in [2, 99] {
        let bytes = pattern(CHUNK_SIZE, memory_id as u8);
        let ack = transfer::put_chunk(
            f,
            BlobChunk {
                memory_id,
                index: 0,
                total_len: CHUNK_SIZE as u64 + 1,
                sha256: sha(&bytes).into(),
                bytes: bytes.into(),
            },
        )
        .unwrap();
        assert_eq!(
            ack,
            ImportAck {
                duplicate: false,
                next: 1
            }
        );
    }
    transfer::put_chunk(f, e.chunks[1].clone()).unwrap();
    assert_eq!(transfer::status().pending_blobs, 3);
    for b in memory_batches(&e.memories, 4) {
        transfer::put_memories(f, b).unwrap();
    }
    for b in connection_batches(&e.connections, 4) {
        transfer::put_connections(f, b).unwrap();
    }
    assert_eq!(transfer::finalize(f).unwrap(), e.manifest);
    assert_eq!(transfer::status().pending_blobs, 0);
    assert_eq!(fingerprint(e.owner), e.source);
    // Their slots were freed: the owner's next two-chunk upload fits in them.
    let pages = store::memory(Region::BlobSlots).size();
    let m = blob_memory(e.owner, T0 + 1, "after", &pattern(2 * CHUNK_SIZE, 77));
    assert_eq!(store::memory(Region::BlobSlots).size(), pages);
    assert_eq!(read_blob(e.owner, m.id), pattern(2 * CHUNK_SIZE, 77));
}
