//! Moving a capsule between canisters: the backend's export (read-only views of the owner's data) and the
//! personal canister's import (idempotent streams, verified by the manifest at finalize).

use crate::error::{Error, ErrorKind, Result};
use crate::limits::*;
use crate::service::{check_memory_fields, check_text, set_sole_owner, sha256};
use crate::store::{
    self, chunk_count, chunk_len, memory, CapsuleRecord, ChunkRef, ConnectionRecord, MemoryRecord,
    Region, StoredAsset, VMem,
};
use crate::types::*;
use crate::{candid_storable, manifest};
use candid::{CandidType, Deserialize, Principal};
use ic_stable_structures::{Cell as StableCell, StableBTreeMap};
use serde_bytes::ByteBuf;
use std::cell::RefCell;

/// The personal canister's init argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PersonalInit {
    /// The user the canister belongs to: the only principal that can hold a capsule there.
    pub owner: Principal,
    /// The factory allowed to import the owner's capsule, once, until it finalizes.
    pub importer: Option<Principal>,
}

/// What `api_version` answers; the factory migrates only into the major version it knows.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CapsuleSnapshot {
    pub name: String,
    pub bio: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub next_memory_id: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImportBegin {
    pub capsule: CapsuleSnapshot,
    pub expected: Manifest,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ExportAsset {
    None,
    Inline {
        bytes: ByteBuf,
    },
    /// The blob's chunks are sent with `import_blob_chunk` before the memory that owns it.
    Blob {
        len: u64,
        sha256: ByteBuf,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryExport {
    pub id: u64,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kind: MemoryKind,
    pub mime_type: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub asset: ExportAsset,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryBatch {
    pub seq: u64,
    pub memories: Vec<MemoryExport>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionBatch {
    pub seq: u64,
    pub connections: Vec<Connection>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlobChunk {
    pub memory_id: u64,
    pub index: u32,
    pub total_len: u64,
    /// SHA-256 of `bytes`; a chunk whose bytes do not hash to it is refused.
    pub sha256: ByteBuf,
    pub bytes: ByteBuf,
}

/// The answer to every import write: whether it was a duplicate, and the stream's next expected item.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImportAck {
    pub duplicate: bool,
    pub next: u64,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportPhase {
    /// No importer was named: the canister serves its owner directly.
    Closed,
    /// An importer was named; nothing received yet.
    Ready,
    Open,
    Finalized,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImportStatus {
    pub phase: ImportPhase,
    pub owner: Option<Principal>,
    pub importer: Option<Principal>,
    pub expected: Option<Manifest>,
    pub memory_batches: u64,
    pub connection_batches: u64,
    pub memories: u64,
    pub connections: u64,
    pub pending_blobs: u64,
    /// The manifest verified at finalize, as it was then (the owner may write afterwards).
    pub finalized: Option<Manifest>,
}

// ---- export (backend) -----------------------------------------------------------------------------

pub mod export {
    use super::*;

    pub fn snapshot(owner: Principal) -> Option<CapsuleSnapshot> {
        store::with(|s| {
            s.capsules.get(&owner).map(|c| CapsuleSnapshot {
                name: c.name,
                bio: c.bio,
                created_at: c.created_at,
                updated_at: c.updated_at,
                next_memory_id: c.next_memory_id,
            })
        })
    }

    /// Memories after `after` in id order, stopping before `max_bytes` of payload or `max_count` items
    /// (at least one item is returned when any is left).
    pub fn memories_after(
        owner: Principal,
        after: Option<u64>,
        max_count: usize,
        max_bytes: usize,
    ) -> Vec<MemoryExport> {
        let start = after.map(|a| a.saturating_add(1)).unwrap_or(0);
        store::with(|s| {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for entry in s.memories.range((owner, start)..=(owner, u64::MAX)) {
                let (id, r) = (entry.key().1, entry.value());
                let asset = match r.asset {
                    StoredAsset::None => ExportAsset::None,
                    StoredAsset::Inline { bytes, .. } => ExportAsset::Inline { bytes },
                    StoredAsset::Blob { blob_id } => {
                        let blob = s.blobs.get(&blob_id).expect("a memory's blob exists");
                        ExportAsset::Blob {
                            len: blob.len,
                            sha256: blob.sha256,
                        }
                    }
                };
                let item = MemoryExport {
                    id,
                    title: r.title,
                    description: r.description,
                    tags: r.tags,
                    kind: r.kind,
                    mime_type: r.mime_type,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    asset,
                };
                let size = export_size(&item);
                if !out.is_empty() && (out.len() >= max_count || bytes + size > max_bytes) {
                    break;
                }
                bytes += size;
                out.push(item);
            }
            out
        })
    }

    /// Wire size of a memory, a little over its Candid encoding.
    pub fn export_size(m: &MemoryExport) -> usize {
        let asset = match &m.asset {
            ExportAsset::Inline { bytes } => bytes.len(),
            _ => 48,
        };
        64 + m.title.len()
            + m.description.len()
            + m.mime_type.len()
            + m.tags.iter().map(|t| t.len() + 4).sum::<usize>()
            + asset
    }

    /// Chunk `index` of the blob of memory `memory_id`, with the hash stored when it was uploaded.
    pub fn blob_chunk(owner: Principal, memory_id: u64, index: u32) -> Option<BlobChunk> {
        store::with(|s| {
            let record = s.memories.get(&(owner, memory_id))?;
            let StoredAsset::Blob { blob_id } = record.asset else {
                return None;
            };
            let blob = s.blobs.get(&blob_id)?;
            let i = index as usize;
            if i >= blob.slots.len() {
                return None;
            }
            Some(BlobChunk {
                memory_id,
                index,
                total_len: blob.len,
                sha256: blob.chunk_hashes[i].clone(),
                bytes: ByteBuf::from(s.read_blob_chunk(&blob, i)),
            })
        })
    }

    pub fn connections_after(
        owner: Principal,
        after: Option<Principal>,
        limit: usize,
    ) -> Vec<Connection> {
        store::with(|s| {
            let min = Principal::from_slice(&[]);
            s.connections
                .range((owner, after.unwrap_or(min))..)
                .take_while(|e| e.key().0 == owner)
                .filter(|e| Some(e.key().1) != after)
                .take(limit)
                .map(|e| {
                    let r = e.value();
                    Connection {
                        peer: e.key().1,
                        note: r.note,
                        status: r.status,
                        created_at: r.created_at,
                        updated_at: r.updated_at,
                    }
                })
                .collect()
        })
    }
}

// ---- import (personal canister) -------------------------------------------------------------------

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
struct ImportState {
    owner: Option<Principal>,
    importer: Option<Principal>,
    phase: ImportPhase,
    expected: Option<Manifest>,
    snapshot: Option<CapsuleSnapshot>,
    memory_batches: u64,
    connection_batches: u64,
    memories: u64,
    connections: u64,
    finalized: Option<Manifest>,
}
candid_storable!(ImportState);

impl Default for ImportState {
    fn default() -> Self {
        ImportState {
            owner: None,
            importer: None,
            phase: ImportPhase::Closed,
            expected: None,
            snapshot: None,
            memory_batches: 0,
            connection_batches: 0,
            memories: 0,
            connections: 0,
            finalized: None,
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
struct PendingBlob {
    total_len: u64,
    chunks: Vec<ChunkRef>,
}
candid_storable!(PendingBlob);

struct ImportStore {
    state: StableCell<ImportState, VMem>,
    pending: StableBTreeMap<u64, PendingBlob, VMem>,
}

thread_local! {
    static IMPORT: RefCell<ImportStore> = RefCell::new(ImportStore {
        state: StableCell::init(memory(Region::ImportState), ImportState::default()),
        pending: StableBTreeMap::init(memory(Region::ImportPendingBlobs)),
    });
}

fn with_import<R>(f: impl FnOnce(&mut ImportStore) -> R) -> R {
    IMPORT.with(|i| f(&mut i.borrow_mut()))
}

/// Install-time setup of a personal canister: `owner` is the only capsule holder; when `importer` is
/// named, the owner's capsule stays locked until that importer finalizes the import.
pub fn init(owner: Principal, importer: Option<Principal>) {
    let phase = if importer.is_some() {
        ImportPhase::Ready
    } else {
        ImportPhase::Closed
    };
    with_import(|i| {
        i.state.set(ImportState {
            owner: Some(owner),
            importer,
            phase,
            ..ImportState::default()
        });
    });
    set_sole_owner(Some(owner));
    if importer.is_some() {
        crate::service::set_status(owner, CapsuleStatus::Locked);
    }
}

/// After an upgrade: re-applies the owner policy from stable memory.
pub fn restore() {
    let owner = with_import(|i| i.state.get().owner);
    set_sole_owner(owner);
}

pub fn status() -> ImportStatus {
    with_import(|i| {
        let st = i.state.get();
        ImportStatus {
            phase: st.phase,
            owner: st.owner,
            importer: st.importer,
            expected: st.expected.clone(),
            memory_batches: st.memory_batches,
            connection_batches: st.connection_batches,
            memories: st.memories,
            connections: st.connections,
            pending_blobs: i.pending.len(),
            finalized: st.finalized.clone(),
        }
    })
}

/// Checks the caller is the importer and the import is in a phase that accepts `open_required` writes.
fn guard(caller: Principal, open_required: bool) -> Result<ImportState> {
    if caller == Principal::anonymous() {
        return Err(ErrorKind::AnonymousCaller.into());
    }
    let st = with_import(|i| i.state.get().clone());
    if st.importer != Some(caller) {
        return Err(ErrorKind::NotImporter.into());
    }
    match st.phase {
        ImportPhase::Finalized => Err(ErrorKind::ImportFinalized.into()),
        ImportPhase::Closed => Err(ErrorKind::NotImporter.into()),
        ImportPhase::Ready if open_required => Err(ErrorKind::ImportNotStarted.into()),
        _ => Ok(st),
    }
}

fn save(st: ImportState) {
    with_import(|i| {
        i.state.set(st);
    });
}

/// Opens the import with the capsule's metadata and the manifest the result must match. Sending the
/// same begin twice is accepted once; a different one is a conflict.
pub fn begin(caller: Principal, req: ImportBegin) -> Result<ImportStatus> {
    let mut st = guard(caller, false)?;
    check_text("name", &req.capsule.name, NAME_MAX)?;
    check_text("bio", &req.capsule.bio, BIO_MAX)?;
    if req.expected.root.len() != 32 {
        return Err(Error::invalid("expected.root", "must be a 32-byte SHA-256"));
    }
    if req.expected.root_hex != hex::encode(&req.expected.root) {
        return Err(Error::invalid(
            "expected.root_hex",
            "must be the hex encoding of expected.root",
        ));
    }
    if st.phase == ImportPhase::Open {
        if st.expected.as_ref() == Some(&req.expected) && st.snapshot.as_ref() == Some(&req.capsule)
        {
            return Ok(status());
        }
        return Err(ErrorKind::ImportConflict {
            reason: "an import with another manifest is open".into(),
        }
        .into());
    }
    let owner = st.owner.expect("a personal canister has an owner");
    store::with_mut(|s| {
        if s.capsules.contains_key(&owner) {
            return Err(Error::from(ErrorKind::ImportConflict {
                reason: "the owner already has a capsule here".into(),
            }));
        }
        let c = &req.capsule;
        s.capsules.insert(
            owner,
            CapsuleRecord {
                owner,
                name: c.name.clone(),
                bio: c.bio.clone(),
                created_at: c.created_at,
                updated_at: c.updated_at,
                next_memory_id: c.next_memory_id,
                memory_count: 0,
                connection_count: 0,
                stored_bytes: 0,
            },
        );
        Ok(())
    })?;
    st.phase = ImportPhase::Open;
    st.expected = Some(req.expected);
    st.snapshot = Some(req.capsule);
    save(st);
    Ok(status())
}

/// Stores one chunk of a memory's blob. Chunks of a blob arrive in order; one already stored is
/// acknowledged as a duplicate without storing it again.
pub fn put_chunk(caller: Principal, chunk: BlobChunk) -> Result<ImportAck> {
    let st = guard(caller, true)?;
    let owner = st.owner.expect("owner");
    if chunk.bytes.len() > CHUNK_SIZE {
        return Err(Error::too_long("chunk", CHUNK_SIZE, chunk.bytes.len()));
    }
    if chunk.total_len == 0 || chunk.total_len > BLOB_MAX {
        return Err(Error::invalid(
            "total_len",
            format!("must be between 1 and {BLOB_MAX}"),
        ));
    }
    let count = chunk_count(chunk.total_len);
    if chunk.index >= count {
        return Err(ErrorKind::ChunkOutOfRange {
            index: chunk.index,
            chunk_count: count,
        }
        .into());
    }
    // Already committed as part of a memory: the whole stream is a duplicate.
    if store::with(|s| s.memories.contains_key(&(owner, chunk.memory_id))) {
        return Ok(ImportAck {
            duplicate: true,
            next: count as u64,
        });
    }
    let expected_len = chunk_len(chunk.total_len, chunk.index as usize);
    if chunk.bytes.len() != expected_len {
        return Err(ErrorKind::ChunkSizeInvalid {
            index: chunk.index,
            expected: expected_len as u64,
            actual: chunk.bytes.len() as u64,
        }
        .into());
    }
    with_import(|i| {
        let mut pending = i.pending.get(&chunk.memory_id).unwrap_or(PendingBlob {
            total_len: chunk.total_len,
            chunks: vec![],
        });
        if pending.total_len != chunk.total_len {
            return Err(Error::from(ErrorKind::LengthMismatch {
                expected: pending.total_len,
                actual: chunk.total_len,
            }));
        }
        let next = pending.chunks.len() as u32;
        if chunk.index < next {
            let stored = &pending.chunks[chunk.index as usize].sha256;
            return if stored.as_slice() == chunk.sha256.as_slice() {
                Ok(ImportAck {
                    duplicate: true,
                    next: next as u64,
                })
            } else {
                Err(ErrorKind::ChunkConflict { index: chunk.index }.into())
            };
        }
        if chunk.index > next {
            return Err(ErrorKind::ImportOutOfOrder {
                stream: format!("blob of memory {}", chunk.memory_id),
                expected: next as u64,
                got: chunk.index as u64,
            }
            .into());
        }
        let actual = sha256(&chunk.bytes);
        if actual.as_slice() != chunk.sha256.as_slice() {
            return Err(Error::hash_mismatch(&chunk.sha256, &actual));
        }
        let stored = store::with_mut(|s| s.store_chunk(&chunk.bytes, actual))?;
        pending.chunks.push(stored);
        let next = pending.chunks.len() as u64;
        i.pending.insert(chunk.memory_id, pending);
        Ok(ImportAck {
            duplicate: false,
            next,
        })
    })
}

/// Commits a batch of memories. Batches carry consecutive sequence numbers from 0; one already
/// committed is acknowledged as a duplicate without storing anything.
pub fn put_memories(caller: Principal, batch: MemoryBatch) -> Result<ImportAck> {
    let mut st = guard(caller, true)?;
    let owner = st.owner.expect("owner");
    if let Some(ack) = sequence_check("memories", st.memory_batches, batch.seq)? {
        return Ok(ack);
    }
    if batch.memories.len() > IMPORT_BATCH_MAX {
        return Err(Error::too_many(
            "memories",
            IMPORT_BATCH_MAX,
            batch.memories.len(),
        ));
    }
    let next_id = st.snapshot.as_ref().map(|c| c.next_memory_id).unwrap_or(0);
    let mut ids = std::collections::BTreeSet::new();
    for m in &batch.memories {
        if !ids.insert(m.id) {
            return Err(Error::invalid(
                "memories[].id",
                format!("memory {} appears twice in the batch", m.id),
            ));
        }
        check_memory_fields(&m.title, &m.description, &m.tags, &m.mime_type)?;
        if m.id >= next_id {
            return Err(Error::invalid(
                "memories[].id",
                format!("memory {} is beyond the capsule's next id {next_id}", m.id),
            ));
        }
        match &m.asset {
            ExportAsset::Inline { bytes } if bytes.len() > INLINE_MAX => {
                return Err(Error::too_long("asset.inline", INLINE_MAX, bytes.len()))
            }
            ExportAsset::Blob { len, sha256 } => {
                if sha256.len() != 32 {
                    return Err(Error::invalid("asset.sha256", "must be 32 bytes"));
                }
                let pending = with_import(|i| i.pending.get(&m.id));
                let complete = pending.as_ref().is_some_and(|p| {
                    p.total_len == *len && p.chunks.len() as u32 == chunk_count(*len)
                });
                if !complete {
                    return Err(ErrorKind::ImportConflict {
                        reason: format!("the blob of memory {} has not been fully received", m.id),
                    }
                    .into());
                }
            }
            _ => {}
        }
    }
    store::with_mut(|s| {
        if let Some(m) = batch
            .memories
            .iter()
            .find(|m| s.memories.contains_key(&(owner, m.id)))
        {
            return Err(Error::from(ErrorKind::ImportConflict {
                reason: format!("memory {} was already imported", m.id),
            }));
        }
        let mut capsule = s.capsules.get(&owner).expect("capsule created at begin");
        for m in batch.memories {
            let (asset, len) = match m.asset {
                ExportAsset::None => (StoredAsset::None, 0),
                ExportAsset::Inline { bytes } => {
                    let sha = ByteBuf::from(sha256(&bytes).to_vec());
                    let len = bytes.len() as u64;
                    (StoredAsset::Inline { bytes, sha256: sha }, len)
                }
                ExportAsset::Blob { len, sha256 } => {
                    let pending = with_import(|i| i.pending.remove(&m.id)).expect("checked above");
                    let sha: [u8; 32] = sha256.as_slice().try_into().expect("checked above");
                    (
                        StoredAsset::Blob {
                            blob_id: s.insert_blob(len, sha, pending.chunks),
                        },
                        len,
                    )
                }
            };
            let record = MemoryRecord {
                title: m.title,
                description: m.description,
                tags: m.tags,
                kind: m.kind,
                mime_type: m.mime_type,
                created_at: m.created_at,
                updated_at: m.updated_at,
                asset,
            };
            s.memories.insert((owner, m.id), record);
            capsule.memory_count += 1;
            capsule.stored_bytes += len;
            st.memories += 1;
        }
        s.capsules.insert(owner, capsule);
        Ok(())
    })?;
    st.memory_batches += 1;
    let next = st.memory_batches;
    save(st);
    Ok(ImportAck {
        duplicate: false,
        next,
    })
}

pub fn put_connections(caller: Principal, batch: ConnectionBatch) -> Result<ImportAck> {
    let mut st = guard(caller, true)?;
    let owner = st.owner.expect("owner");
    if let Some(ack) = sequence_check("connections", st.connection_batches, batch.seq)? {
        return Ok(ack);
    }
    if batch.connections.len() > IMPORT_BATCH_MAX {
        return Err(Error::too_many(
            "connections",
            IMPORT_BATCH_MAX,
            batch.connections.len(),
        ));
    }
    let mut peers = std::collections::BTreeSet::new();
    for c in &batch.connections {
        if !peers.insert(c.peer) {
            return Err(Error::invalid(
                "connections[].peer",
                format!("{} appears twice in the batch", c.peer),
            ));
        }
        check_text("note", &c.note, NOTE_MAX)?;
        if c.peer == owner || c.peer == Principal::anonymous() {
            return Err(Error::invalid(
                "connections[].peer",
                "cannot be the owner or anonymous",
            ));
        }
    }
    store::with_mut(|s| {
        if let Some(c) = batch
            .connections
            .iter()
            .find(|c| s.connections.contains_key(&(owner, c.peer)))
        {
            return Err(Error::from(ErrorKind::ImportConflict {
                reason: format!("connection with {} was already imported", c.peer),
            }));
        }
        let mut capsule = s.capsules.get(&owner).expect("capsule created at begin");
        for c in batch.connections {
            let record = ConnectionRecord {
                note: c.note,
                status: c.status,
                created_at: c.created_at,
                updated_at: c.updated_at,
            };
            s.connections.insert((owner, c.peer), record);
            capsule.connection_count += 1;
            st.connections += 1;
        }
        s.capsules.insert(owner, capsule);
        Ok(())
    })?;
    st.connection_batches += 1;
    let next = st.connection_batches;
    save(st);
    Ok(ImportAck {
        duplicate: false,
        next,
    })
}

/// `Some(ack)` for a batch already committed; an error for one that skips ahead.
fn sequence_check(stream: &str, next: u64, seq: u64) -> Result<Option<ImportAck>> {
    if seq < next {
        return Ok(Some(ImportAck {
            duplicate: true,
            next,
        }));
    }
    if seq > next {
        return Err(ErrorKind::ImportOutOfOrder {
            stream: stream.into(),
            expected: next,
            got: seq,
        }
        .into());
    }
    Ok(None)
}

/// Recomputes the manifest over what was stored and compares it with the expected one. On a match the
/// import is closed for good and the owner can write; on a mismatch both manifests are reported.
pub fn finalize(caller: Principal) -> Result<Manifest> {
    let mut st = guard(caller, true)?;
    let owner = st.owner.expect("owner");
    let expected = st.expected.clone().expect("set at begin");
    let actual = manifest::of(owner).expect("capsule created at begin");
    if actual != expected {
        return Err(ErrorKind::ManifestMismatch {
            expected: Box::new(expected),
            actual: Box::new(actual),
        }
        .into());
    }
    // The manifest covers content; the capsule's counters must agree with it too.
    let capsule = store::with(|s| s.capsules.get(&owner)).expect("capsule created at begin");
    let stored = actual.inline_bytes + actual.blob_bytes;
    if (
        capsule.memory_count,
        capsule.connection_count,
        capsule.stored_bytes,
    ) != (actual.memories, actual.connections, stored)
    {
        let reason = format!(
            "capsule counters ({} memories, {} connections, {} bytes) disagree with its content ({}, {}, {})",
            capsule.memory_count, capsule.connection_count, capsule.stored_bytes, actual.memories, actual.connections, stored
        );
        return Err(ErrorKind::ImportConflict { reason }.into());
    }
    let orphans: Vec<u64> = with_import(|i| i.pending.keys().collect());
    for memory_id in orphans {
        if let Some(p) = with_import(|i| i.pending.remove(&memory_id)) {
            store::with_mut(|s| s.free_slots(p.chunks.into_iter().map(|c| c.slot)));
        }
    }
    st.phase = ImportPhase::Finalized;
    st.finalized = Some(actual.clone());
    save(st);
    crate::service::set_status(owner, CapsuleStatus::Active);
    Ok(actual)
}

/// The owner, if `caller` is the owner or the importer: the only ones who may read the import.
fn owner_or_importer(caller: Principal) -> Result<Principal> {
    if caller == Principal::anonymous() {
        return Err(ErrorKind::AnonymousCaller.into());
    }
    let st = with_import(|i| i.state.get().clone());
    let owner = st.owner.ok_or(ErrorKind::CapsuleNotFound)?;
    if caller != owner && st.importer != Some(caller) {
        return Err(ErrorKind::NotOwner.into());
    }
    Ok(owner)
}

/// The import's status, for the owner and the importer.
pub fn status_for(caller: Principal) -> Result<ImportStatus> {
    owner_or_importer(caller)?;
    Ok(status())
}

/// The owner's manifest as stored now; readable by the importer (to verify) and the owner.
pub fn manifest_for(caller: Principal) -> Result<Manifest> {
    let owner = owner_or_importer(caller)?;
    manifest::of(owner).ok_or_else(|| ErrorKind::CapsuleNotFound.into())
}
