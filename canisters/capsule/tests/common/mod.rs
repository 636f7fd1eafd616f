//! Helpers shared by the capsule library's integration tests.
//!
//! Storage is thread-local (natively, `ic-stable-structures` keeps each region in an in-memory vector per
//! thread) and every `#[test]` runs in its own thread, so each test starts from an empty store. Tests that
//! need two independent stores (export here, import there) use `std::thread::spawn`.
#![allow(dead_code)]

use candid::Principal;
use capsule::error::{ErrorKind, Result};
use capsule::limits::*;
use capsule::service;
use capsule::types::*;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// A distinct, non-anonymous principal per name.
pub fn user(name: &str) -> Principal {
    Principal::self_authenticating(name.as_bytes())
}

pub fn owner() -> Principal {
    user("owner")
}

pub fn stranger() -> Principal {
    user("stranger")
}

pub const T0: u64 = 1_700_000_000_000_000_000;

pub fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

pub fn buf(bytes: &[u8]) -> ByteBuf {
    ByteBuf::from(bytes.to_vec())
}

/// Deterministic, non-repeating-looking bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed)
        .collect()
}

pub fn text(len: usize) -> String {
    "x".repeat(len)
}

pub fn kind_of<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => {
            // Every error carries a human message and the code is its variant's name.
            assert!(!e.message.is_empty(), "error without a message: {e:?}");
            e.kind
        }
    }
}

pub fn capsule_input(name: &str, bio: &str) -> CapsuleInput {
    CapsuleInput {
        name: name.into(),
        bio: bio.into(),
    }
}

pub fn memory_input(title: &str, asset: AssetInput) -> MemoryInput {
    MemoryInput {
        title: title.into(),
        description: format!("about {title}"),
        tags: vec!["family".into(), "2024".into()],
        kind: MemoryKind::Note,
        mime_type: "text/plain".into(),
        asset,
    }
}

pub fn inline(bytes: &[u8]) -> AssetInput {
    AssetInput::Inline { bytes: buf(bytes) }
}

/// Uploads `bytes` through a session as `caller`, chunk by chunk, and finishes it. Returns the upload id.
pub fn upload(caller: Principal, now: u64, bytes: &[u8]) -> u64 {
    let session = service::upload_begin(
        caller,
        now,
        UploadBegin {
            total_len: bytes.len() as u64,
        },
    )
    .expect("upload_begin");
    assert_eq!(session.chunk_size as usize, CHUNK_SIZE);
    for (i, chunk) in bytes.chunks(CHUNK_SIZE).enumerate() {
        service::upload_put_chunk(caller, now, session.upload_id, i as u32, buf(chunk))
            .expect("upload_put_chunk");
    }
    let receipt = service::upload_finish(caller, now, session.upload_id, ByteBuf::from(sha(bytes)))
        .expect("upload_finish");
    assert_eq!(receipt.len, bytes.len() as u64);
    session.upload_id
}

/// Creates a memory whose asset is a blob of `bytes`.
pub fn blob_memory(caller: Principal, now: u64, title: &str, bytes: &[u8]) -> Memory {
    let upload_id = upload(caller, now, bytes);
    service::memory_create(
        caller,
        now,
        memory_input(title, AssetInput::Upload { upload_id }),
    )
    .expect("memory_create with an upload")
}

/// Reads a blob memory back, chunk by chunk.
pub fn read_blob(caller: Principal, memory_id: u64) -> Vec<u8> {
    let detail = service::memory_get(caller, memory_id).expect("memory_get");
    let AssetInfo::Blob { chunk_count, .. } = detail.memory.asset else {
        panic!("memory {memory_id} has no blob: {:?}", detail.memory.asset)
    };
    let mut out = Vec::new();
    for i in 0..chunk_count {
        out.extend_from_slice(&service::blob_read_chunk(caller, memory_id, i).expect("chunk"));
    }
    out
}

/// Every memory of `caller`, following `next` with the largest page.
pub fn all_memories(caller: Principal) -> Vec<Memory> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = service::memories_list(
            caller,
            MemoryPageRequest {
                after,
                limit: Some(PAGE_MAX as u32),
            },
        )
        .expect("memories_list");
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

pub fn all_connections(caller: Principal) -> Vec<Connection> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = service::connections_list(
            caller,
            ConnectionPageRequest {
                after,
                limit: Some(PAGE_MAX as u32),
            },
        )
        .expect("connections_list");
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Everything observable about `owner`'s capsule, to assert that a refused call changed nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    pub capsule: Option<Capsule>,
    pub manifest: Option<Manifest>,
    pub memories: Vec<MemoryDetail>,
    pub connections: Vec<Connection>,
    pub status: CapsuleStatus,
}

pub fn fingerprint(owner: Principal) -> Fingerprint {
    let capsule = service::capsule_get(owner).ok();
    let (memories, connections) = if capsule.is_some() {
        let memories = all_memories(owner)
            .into_iter()
            .map(|m| service::memory_get(owner, m.id).expect("memory_get"))
            .collect();
        (memories, all_connections(owner))
    } else {
        (vec![], vec![])
    };
    Fingerprint {
        capsule,
        manifest: capsule::manifest::of(owner),
        memories,
        connections,
        status: service::status_of(owner),
    }
}

/// Runs `f` in a new thread, i.e. against a fresh, empty store, and returns its result.
pub fn in_fresh_store<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

// ---- a sample capsule, built in different orders or with one thing changed --------------------------

pub const SAMPLE_BLOB_LEN: usize = CHUNK_SIZE + 10;
pub const SAMPLE_INLINE_LEN: usize = 1_000;

pub fn sample_peers() -> [Principal; 3] {
    [user("peer one"), user("peer two"), user("peer three")]
}

/// How the sample is put together: the content is the same, the order of the calls is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Capsule, memories in id order, then connections in peer-list order, then responses.
    Straight,
    /// Connections before, between and after the memories, in reverse order; blob chunks uploaded last
    /// first; an aborted upload first (so the blob lands in other slots); another user's capsule and
    /// connections interleaved.
    Shuffled,
}

/// One small change to the sample's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    None,
    CapsuleName,
    CapsuleBio,
    Title,
    Description,
    Tag,
    TagOrder,
    ExtraTag,
    MimeType,
    Kind,
    InlineByte,
    InlineLength,
    BlobByteFirstChunk,
    BlobByteLastChunk,
    MemoryTime,
    ConnectionStatus,
    ConnectionNote,
    ConnectionPeer,
    ConnectionTime,
    MissingConnection,
    ExtraMemory,
    DeletedMemory,
}

fn flip(bytes: &mut [u8], at: usize) {
    bytes[at] ^= 0x01;
}

/// Builds the sample capsule of `owner()` in the current thread's store; every call happens at `T0` unless
/// the mutation says otherwise, so that timestamps do not depend on the order.
pub fn build_sample(order: Order, mutation: Mutation) {
    use Mutation as M;
    let a = owner();
    let now = T0;
    let mut name = "Ada".to_string();
    let mut bio = "Mathematician".to_string();
    match mutation {
        M::CapsuleName => name = "Adb".into(),
        M::CapsuleBio => bio = "Mathematiciam".into(),
        _ => {}
    }
    let mut inline_bytes = pattern(SAMPLE_INLINE_LEN, 11);
    match mutation {
        M::InlineByte => flip(&mut inline_bytes, 500),
        M::InlineLength => {
            inline_bytes.pop();
        }
        _ => {}
    }
    let mut blob = pattern(SAMPLE_BLOB_LEN, 13);
    match mutation {
        M::BlobByteFirstChunk => flip(&mut blob, 12_345),
        M::BlobByteLastChunk => flip(&mut blob, SAMPLE_BLOB_LEN - 1),
        _ => {}
    }
    let mut m0 = MemoryInput {
        title: "letter".into(),
        description: "to Babbage".into(),
        tags: vec!["engine".into(), "notes".into()],
        kind: MemoryKind::Document,
        mime_type: "text/plain".into(),
        asset: AssetInput::Inline {
            bytes: ByteBuf::from(inline_bytes),
        },
    };
    match mutation {
        M::Title => m0.title = "lettes".into(),
        M::Description => m0.description = "to Babbagf".into(),
        M::Tag => m0.tags[1] = "notez".into(),
        M::TagOrder => m0.tags.reverse(),
        M::ExtraTag => m0.tags.push("more".into()),
        M::MimeType => m0.mime_type = "text/plaim".into(),
        M::Kind => m0.kind = MemoryKind::Other,
        _ => {}
    }
    let m2 = memory_input("just a note", AssetInput::None);
    let m3 = memory_input("tiny", inline(b"tiny"));
    let mut peers = sample_peers().to_vec();
    let mut notes = ["colleague".to_string(), String::new(), "friend".to_string()];
    match mutation {
        M::ConnectionPeer => peers[0] = user("peer zero"),
        M::ConnectionNote => notes[2] = "friene".into(),
        _ => {}
    }
    let mut responses = vec![
        (peers[0], ConnectionResponse::Accept),
        (peers[1], ConnectionResponse::Block),
    ];
    if mutation == M::ConnectionStatus {
        responses[1].1 = ConnectionResponse::Accept;
    }
    let conn_count = if mutation == M::MissingConnection {
        2
    } else {
        3
    };
    let conn_time = |i: usize| {
        if mutation == M::ConnectionTime && i == 1 {
            now + 1
        } else {
            now
        }
    };

    let add_conn = |i: usize| {
        if i < conn_count {
            service::connection_add(a, conn_time(i), peers[i], notes[i].clone()).unwrap();
        }
    };
    let add_blob_memory = |reverse: bool| {
        let s = service::upload_begin(
            a,
            now,
            UploadBegin {
                total_len: blob.len() as u64,
            },
        )
        .unwrap();
        let mut chunks: Vec<_> = blob.chunks(CHUNK_SIZE).enumerate().collect();
        if reverse {
            chunks.reverse();
        }
        for (i, c) in chunks {
            service::upload_put_chunk(a, now, s.upload_id, i as u32, buf(c)).unwrap();
        }
        service::upload_finish(a, now, s.upload_id, ByteBuf::from(sha(&blob))).unwrap();
        let mut m1 = memory_input(
            "video",
            AssetInput::Upload {
                upload_id: s.upload_id,
            },
        );
        m1.kind = MemoryKind::Video;
        m1.mime_type = "video/mp4".into();
        service::memory_create(a, now, m1).unwrap();
    };
    let m3_time = if mutation == M::MemoryTime {
        now + 1
    } else {
        now
    };

    match order {
        Order::Straight => {
            service::capsule_create(a, now, capsule_input(&name, &bio)).unwrap();
            service::memory_create(a, now, m0).unwrap();
            add_blob_memory(false);
            service::memory_create(a, now, m2).unwrap();
            service::memory_create(a, m3_time, m3).unwrap();
            for i in 0..3 {
                add_conn(i);
            }
            for (p, r) in &responses {
                service::connection_respond(a, now, *p, *r).unwrap();
            }
        }
        Order::Shuffled => {
            let other = user("someone else");
            service::capsule_create(other, now, capsule_input("Other", "")).unwrap();
            service::capsule_create(a, now, capsule_input("Placeholder", "")).unwrap();
            // Something stored and then dropped: it must leave no trace.
            let s = service::upload_begin(
                a,
                now,
                UploadBegin {
                    total_len: 3 * CHUNK_SIZE as u64,
                },
            )
            .unwrap();
            service::upload_put_chunk(a, now, s.upload_id, 1, buf(&vec![5; CHUNK_SIZE])).unwrap();
            service::upload_abort(a, s.upload_id).unwrap();
            service::connection_add(a, now, user("temporary"), "gone soon".into()).unwrap();
            add_conn(2);
            service::connection_add(other, now, peers[0], "not the owner's".into()).unwrap();
            service::memory_create(a, now, m0).unwrap();
            service::memory_create(other, now, memory_input("theirs", inline(b"xyz"))).unwrap();
            add_conn(1);
            service::connection_remove(a, now, user("temporary")).unwrap();
            add_blob_memory(true);
            for (p, r) in responses.iter().rev() {
                if *p == peers[1] {
                    service::connection_respond(a, now, *p, *r).unwrap();
                }
            }
            service::memory_create(a, now, m2).unwrap();
            add_conn(0);
            service::connection_respond(a, now, peers[0], ConnectionResponse::Block).unwrap();
            service::connection_respond(a, now, peers[0], responses[0].1).unwrap();
            service::memory_create(a, m3_time, m3).unwrap();
            service::capsule_update(
                a,
                now,
                CapsuleUpdate {
                    name: Some(name),
                    bio: Some(bio),
                },
            )
            .unwrap();
        }
    }
    match mutation {
        M::ExtraMemory => {
            service::memory_create(a, now, memory_input("extra", AssetInput::None)).unwrap();
        }
        M::DeletedMemory => {
            let m =
                service::memory_create(a, now, memory_input("extra", AssetInput::None)).unwrap();
            service::memory_delete(a, now, m.id).unwrap();
        }
        _ => {}
    }
    // The capsule's `updated_at` is that of its last write: make it the same whatever the order.
    service::capsule_update(a, now, CapsuleUpdate::default()).unwrap();
}

/// The sample's manifest, built in a fresh store.
pub fn sample_manifest(order: Order, mutation: Mutation) -> Manifest {
    in_fresh_store(move || {
        build_sample(order, mutation);
        capsule::manifest::of(owner()).expect("the sample has a capsule")
    })
}
