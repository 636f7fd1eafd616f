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
#[derive(Debug, PartialEq)]
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
