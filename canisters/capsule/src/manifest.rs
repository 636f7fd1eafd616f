//! The capsule manifest: counts plus one SHA-256 root over the capsule's content in a defined order.
//!
//! The encoding is our own and fixed (length-prefixed big-endian fields), not Candid, so it never changes
//! with a library version. Memories are hashed in id order and connections in peer order — the order of
//! the stable maps — so the root does not depend on insertion order. Blob bytes enter through their
//! whole-blob SHA-256 and the SHA-256 of every chunk, all computed when the bytes were stored, so
//! computing a manifest never re-reads a blob.

use crate::store::{CapsuleRecord, ConnectionRecord, MemoryRecord, Store, StoredAsset};
use crate::types::{ConnectionStatus, Manifest, MemoryKind};
use candid::Principal;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"capsule-manifest/v1";

/// A SHA-256 hasher with the canonical field encoding.
struct Canonical(Sha256);

impl Canonical {
    fn new(tag: &[u8]) -> Self {
        let mut c = Canonical(Sha256::new());
        c.bytes(tag);
        c
    }
    fn u64(&mut self, v: u64) {
        self.0.update(v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

fn kind_code(kind: MemoryKind) -> u64 {
    match kind {
        MemoryKind::Note => 0,
        MemoryKind::Image => 1,
        MemoryKind::Video => 2,
        MemoryKind::Audio => 3,
        MemoryKind::Document => 4,
        MemoryKind::Other => 5,
    }
}

fn status_code(status: ConnectionStatus) -> u64 {
    match status {
        ConnectionStatus::Pending => 0,
        ConnectionStatus::Accepted => 1,
        ConnectionStatus::Blocked => 2,
    }
}

fn capsule_hash(c: &CapsuleRecord) -> [u8; 32] {
    let mut h = Canonical::new(b"capsule");
    h.bytes(c.owner.as_slice());
    h.bytes(c.name.as_bytes());
    h.bytes(c.bio.as_bytes());
    h.u64(c.created_at);
    h.u64(c.updated_at);
    h.u64(c.next_memory_id);
    h.finish()
}

fn memory_hash(s: &Store, id: u64, m: &MemoryRecord) -> [u8; 32] {
    let mut h = Canonical::new(b"memory");
    h.u64(id);
    h.bytes(m.title.as_bytes());
    h.bytes(m.description.as_bytes());
    h.u64(m.tags.len() as u64);
    for tag in &m.tags {
        h.bytes(tag.as_bytes());
    }
    h.u64(kind_code(m.kind));
    h.bytes(m.mime_type.as_bytes());
    h.u64(m.created_at);
    h.u64(m.updated_at);
    match &m.asset {
        StoredAsset::None => h.u64(0),
        StoredAsset::Inline { bytes, sha256 } => {
            h.u64(1);
            h.u64(bytes.len() as u64);
            h.bytes(sha256);
        }
        StoredAsset::Blob { blob_id } => {
            let blob = s.blobs.get(blob_id).expect("a memory's blob exists");
            h.u64(2);
            h.u64(blob.len);
            h.bytes(&blob.sha256);
            h.u64(blob.chunk_hashes.len() as u64);
            for chunk in &blob.chunk_hashes {
                h.bytes(chunk);
            }
        }
    }
    h.finish()
}

fn connection_hash(peer: Principal, c: &ConnectionRecord) -> [u8; 32] {
    let mut h = Canonical::new(b"connection");
    h.bytes(peer.as_slice());
    h.bytes(c.note.as_bytes());
    h.u64(status_code(c.status));
    h.u64(c.created_at);
    h.u64(c.updated_at);
    h.finish()
}

/// The manifest of `owner`'s capsule as stored here, or `None` when there is no capsule.
pub(crate) fn compute(s: &Store, owner: Principal) -> Option<Manifest> {
    let capsule = s.capsules.get(&owner)?;
    let mut m = Manifest::default();
    let mut root = Canonical::new(DOMAIN);
    root.bytes(&capsule_hash(&capsule));
    for entry in s.memories.range((owner, 0)..=(owner, u64::MAX)) {
        let (id, record) = (entry.key().1, entry.value());
        m.memories += 1;
        match &record.asset {
            StoredAsset::None => {}
            StoredAsset::Inline { bytes, .. } => {
                m.inline_assets += 1;
                m.inline_bytes += bytes.len() as u64;
            }
            StoredAsset::Blob { blob_id } => {
                m.blobs += 1;
                m.blob_bytes += s.blobs.get(blob_id).map(|b| b.len).unwrap_or(0);
            }
        }
        root.bytes(&memory_hash(s, id, &record));
    }
    root.u64(m.memories);
    let min = Principal::from_slice(&[]);
    for entry in s
        .connections
        .range((owner, min)..)
        .take_while(|e| e.key().0 == owner)
    {
        m.connections += 1;
        root.bytes(&connection_hash(entry.key().1, &entry.value()));
    }
    root.u64(m.connections);
    let digest = root.finish();
    m.root = ByteBuf::from(digest.to_vec());
    m.root_hex = hex::encode(digest);
    Some(m)
}

/// The manifest of `owner`'s capsule, for the factory's export.
pub fn of(owner: Principal) -> Option<Manifest> {
    crate::store::with(|s| compute(s, owner))
}
