//! The capsule API's logic. Every function takes the caller and the time from the endpoint, checks the
//! caller and bounds its input before touching storage, and returns a typed error for bad input.

use crate::error::{Error, ErrorKind, Result};
use crate::hash::RunningSha256;
use crate::limits::*;
use crate::store::{
    self, chunk_count, chunk_len, CapsuleRecord, ConnectionRecord, LockRecord, MemoryRecord, Store,
    StoredAsset, UploadHash, UploadRecord,
};
use crate::types::*;
use candid::Principal;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::cell::Cell;

thread_local! {
    /// In a personal canister only this principal may hold a capsule; `None` in the shared backend.
    static SOLE_OWNER: Cell<Option<Principal>> = const { Cell::new(None) };
}

pub fn set_sole_owner(owner: Option<Principal>) {
    SOLE_OWNER.with(|o| o.set(owner));
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

// ---- guards ---------------------------------------------------------------------------------------

fn check_caller(caller: Principal) -> Result<()> {
    if caller == Principal::anonymous() {
        return Err(ErrorKind::AnonymousCaller.into());
    }
    match SOLE_OWNER.with(|o| o.get()) {
        Some(owner) if owner != caller => Err(ErrorKind::NotOwner.into()),
        _ => Ok(()),
    }
}

fn capsule_of(s: &Store, caller: Principal) -> Result<CapsuleRecord> {
    check_caller(caller)?;
    s.capsules
        .get(&caller)
        .ok_or_else(|| ErrorKind::CapsuleNotFound.into())
}

/// The capsule, if the caller owns one and it can be written here now.
fn writable_capsule(s: &Store, caller: Principal) -> Result<CapsuleRecord> {
    let capsule = capsule_of(s, caller)?;
    check_writable(s, caller)?;
    Ok(capsule)
}

fn check_writable(s: &Store, owner: Principal) -> Result<()> {
    match s.locks.get(&owner).map(|l| l.0) {
        None | Some(CapsuleStatus::Active) => Ok(()),
        Some(CapsuleStatus::Locked) => Err(ErrorKind::CapsuleLocked.into()),
        Some(CapsuleStatus::Migrated { canister_id }) => {
            Err(ErrorKind::CapsuleMigrated { canister_id }.into())
        }
    }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::too_long(field, max, value.len()));
    }
    Ok(())
}

pub(crate) fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > TAGS_MAX {
        return Err(Error::too_many("tags", TAGS_MAX, tags.len()));
    }
    for tag in tags {
        check_text("tags[]", tag, TAG_MAX)?;
        if tag.trim().is_empty() {
            return Err(Error::invalid("tags[]", "a tag cannot be empty"));
        }
    }
    Ok(())
}

fn page_limit(limit: Option<u32>) -> Result<usize> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(0) => Err(Error::invalid("limit", "must be at least 1")),
        Some(n) if n as usize > PAGE_MAX => Err(Error::too_many("limit", PAGE_MAX, n as usize)),
        Some(n) => Ok(n as usize),
    }
}

// ---- capsule --------------------------------------------------------------------------------------

pub fn status_of(owner: Principal) -> CapsuleStatus {
    store::with(|s| {
        s.locks
            .get(&owner)
            .map(|l| l.0)
            .unwrap_or(CapsuleStatus::Active)
    })
}

/// Sets where the owner's capsule may be written. The capsule record itself is not touched.
pub fn set_status(owner: Principal, status: CapsuleStatus) {
    store::with_mut(|s| match status {
        CapsuleStatus::Active => {
            s.locks.remove(&owner);
        }
        other => {
            s.locks.insert(owner, LockRecord(other));
        }
    })
}

pub fn has_capsule(owner: Principal) -> bool {
    store::with(|s| s.capsules.contains_key(&owner))
}

pub(crate) fn capsule_view(s: &Store, record: &CapsuleRecord) -> Capsule {
    Capsule {
        owner: record.owner,
        name: record.name.clone(),
        bio: record.bio.clone(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        memory_count: record.memory_count,
        connection_count: record.connection_count,
        stored_bytes: record.stored_bytes,
        status: s
            .locks
            .get(&record.owner)
            .map(|l| l.0)
            .unwrap_or(CapsuleStatus::Active),
    }
}

pub fn capsule_create(caller: Principal, now: u64, input: CapsuleInput) -> Result<Capsule> {
    check_caller(caller)?;
    check_text("name", &input.name, NAME_MAX)?;
    check_text("bio", &input.bio, BIO_MAX)?;
    store::with_mut(|s| {
        check_writable(s, caller)?;
        if s.capsules.contains_key(&caller) {
            return Err(ErrorKind::CapsuleExists.into());
        }
        s.check_room(RECORD_ROOM)?;
        let record = CapsuleRecord {
            owner: caller,
            name: input.name,
            bio: input.bio,
            created_at: now,
            updated_at: now,
            next_memory_id: 0,
            memory_count: 0,
            connection_count: 0,
            stored_bytes: 0,
        };
        s.capsules.insert(caller, record.clone());
        Ok(capsule_view(s, &record))
    })
}

pub fn capsule_get(caller: Principal) -> Result<Capsule> {
    store::with(|s| capsule_of(s, caller).map(|c| capsule_view(s, &c)))
}

pub fn capsule_update(caller: Principal, now: u64, update: CapsuleUpdate) -> Result<Capsule> {
    check_caller(caller)?;
    if let Some(name) = &update.name {
        check_text("name", name, NAME_MAX)?;
    }
    if let Some(bio) = &update.bio {
        check_text("bio", bio, BIO_MAX)?;
    }
    store::with_mut(|s| {
        let mut capsule = writable_capsule(s, caller)?;
        if let Some(name) = update.name {
            capsule.name = name;
        }
        if let Some(bio) = update.bio {
            capsule.bio = bio;
        }
        capsule.updated_at = now;
        s.capsules.insert(caller, capsule.clone());
        Ok(capsule_view(s, &capsule))
    })
}

// ---- memories -------------------------------------------------------------------------------------

pub(crate) fn asset_info(s: &Store, asset: &StoredAsset) -> AssetInfo {
    match asset {
        StoredAsset::None => AssetInfo::None,
        StoredAsset::Inline { bytes, sha256 } => AssetInfo::Inline {
            len: bytes.len() as u64,
            sha256: sha256.clone(),
        },
        StoredAsset::Blob { blob_id } => {
            let blob = s.blobs.get(blob_id).expect("a memory's blob exists");
            AssetInfo::Blob {
                len: blob.len,
                sha256: blob.sha256,
                chunk_size: CHUNK_SIZE as u32,
                chunk_count: blob.slots.len() as u32,
            }
        }
    }
}

pub(crate) fn memory_view(s: &Store, id: u64, r: &MemoryRecord) -> Memory {
    Memory {
        id,
        title: r.title.clone(),
        description: r.description.clone(),
        tags: r.tags.clone(),
        kind: r.kind,
        mime_type: r.mime_type.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        asset: asset_info(s, &r.asset),
    }
}

pub(crate) fn asset_len(s: &Store, asset: &StoredAsset) -> u64 {
    match asset {
        StoredAsset::None => 0,
        StoredAsset::Inline { bytes, .. } => bytes.len() as u64,
        StoredAsset::Blob { blob_id } => s.blobs.get(blob_id).map(|b| b.len).unwrap_or(0),
    }
}

pub(crate) fn check_memory_fields(
    title: &str,
    description: &str,
    tags: &[String],
    mime_type: &str,
) -> Result<()> {
    check_text("title", title, TITLE_MAX)?;
    check_text("description", description, DESCRIPTION_MAX)?;
    check_tags(tags)?;
    check_text("mime_type", mime_type, MIME_MAX)
}

/// Refuses a new memory of `added_bytes` that would take the capsule past its limits. The caller's
/// open uploads count as stored (but `attaching`, the one becoming this memory's blob, only once).
fn check_capacity(
    s: &Store,
    capsule: &CapsuleRecord,
    added_bytes: u64,
    attaching: Option<u64>,
) -> Result<()> {
    if capsule.memory_count >= MEMORIES_MAX {
        return Err(Error::too_many(
            "memories",
            MEMORIES_MAX as usize,
            capsule.memory_count as usize + 1,
        ));
    }
    let reserved = open_upload_bytes(s, capsule.owner, attaching);
    check_bytes(capsule.stored_bytes + reserved + added_bytes)
}

fn check_bytes(total: u64) -> Result<()> {
    if total > CAPSULE_BYTES_MAX {
        return Err(Error::too_large(
            "capsule storage (stored and open uploads)",
            CAPSULE_BYTES_MAX,
            total,
        ));
    }
    Ok(())
}

/// The bytes the owner's open uploads will add, except `except`'s (at most `UPLOADS_PER_CALLER_MAX`).
fn open_upload_bytes(s: &Store, owner: Principal, except: Option<u64>) -> u64 {
    s.uploads
        .range((owner, 0)..=(owner, u64::MAX))
        .filter(|e| Some(e.key().1) != except && e.value().hash != Some(UploadHash::Aborted))
        .map(|e| e.value().total_len)
        .sum()
}

pub fn memory_create(caller: Principal, now: u64, input: MemoryInput) -> Result<Memory> {
    check_caller(caller)?;
    check_memory_fields(
        &input.title,
        &input.description,
        &input.tags,
        &input.mime_type,
    )?;
    if let AssetInput::Inline { bytes } = &input.asset {
        if bytes.len() > INLINE_MAX {
            return Err(Error::too_long("asset.inline", INLINE_MAX, bytes.len()));
        }
    }
    store::with_mut(|s| {
        let mut capsule = writable_capsule(s, caller)?;
        s.check_room(RECORD_ROOM)?;
        let (asset, added) = match input.asset {
            AssetInput::None => {
                check_capacity(s, &capsule, 0, None)?;
                (StoredAsset::None, 0)
            }
            AssetInput::Inline { bytes } => {
                check_capacity(s, &capsule, bytes.len() as u64, None)?;
                let sha = ByteBuf::from(sha256(&bytes).to_vec());
                let len = bytes.len() as u64;
                (StoredAsset::Inline { bytes, sha256: sha }, len)
            }
            AssetInput::Upload { upload_id } => {
                let key = (caller, upload_id);
                let upload = live_upload(s, key, now)?;
                let Some(sha) = upload.finished_sha256.clone() else {
                    let missing = upload.chunks.iter().filter(|c| c.is_none()).count() as u32;
                    return Err(ErrorKind::UploadIncomplete {
                        upload_id,
                        missing_chunks: missing,
                    }
                    .into());
                };
                check_capacity(s, &capsule, upload.total_len, Some(upload_id))?;
                s.take_upload(key);
                let chunks = upload
                    .chunks
                    .into_iter()
                    .map(|c| c.expect("finished upload"))
                    .collect();
                let sha: [u8; 32] = sha.as_slice().try_into().expect("32-byte hash");
                (
                    StoredAsset::Blob {
                        blob_id: s.insert_blob(upload.total_len, sha, chunks),
                    },
                    upload.total_len,
                )
            }
        };
        let id = capsule.next_memory_id;
        let record = MemoryRecord {
            title: input.title,
            description: input.description,
            tags: input.tags,
            kind: input.kind,
            mime_type: input.mime_type,
            created_at: now,
            updated_at: now,
            asset,
        };
        s.memories.insert((caller, id), record.clone());
        capsule.next_memory_id += 1;
        capsule.memory_count += 1;
        capsule.stored_bytes += added;
        capsule.updated_at = now;
        s.capsules.insert(caller, capsule);
        Ok(memory_view(s, id, &record))
    })
}

pub fn memory_get(caller: Principal, id: u64) -> Result<MemoryDetail> {
    store::with(|s| {
        capsule_of(s, caller)?;
        let record = s
            .memories
            .get(&(caller, id))
            .ok_or(ErrorKind::MemoryNotFound { id })?;
        let inline_bytes = match &record.asset {
            StoredAsset::Inline { bytes, .. } => Some(bytes.clone()),
            _ => None,
        };
        Ok(MemoryDetail {
            memory: memory_view(s, id, &record),
            inline_bytes,
        })
    })
}

pub fn memory_update(caller: Principal, now: u64, id: u64, update: MemoryUpdate) -> Result<Memory> {
    check_caller(caller)?;
    if let Some(title) = &update.title {
        check_text("title", title, TITLE_MAX)?;
    }
    if let Some(description) = &update.description {
        check_text("description", description, DESCRIPTION_MAX)?;
    }
    if let Some(tags) = &update.tags {
        check_tags(tags)?;
    }
    store::with_mut(|s| {
        writable_capsule(s, caller)?;
        let mut record = s
            .memories
            .get(&(caller, id))
            .ok_or(ErrorKind::MemoryNotFound { id })?;
        if let Some(title) = update.title {
            record.title = title;
        }
        if let Some(description) = update.description {
            record.description = description;
        }
        if let Some(tags) = update.tags {
            record.tags = tags;
        }
        record.updated_at = now;
        s.memories.insert((caller, id), record.clone());
        Ok(memory_view(s, id, &record))
    })
}

pub fn memory_delete(caller: Principal, now: u64, id: u64) -> Result<()> {
    check_caller(caller)?;
    store::with_mut(|s| {
        let mut capsule = writable_capsule(s, caller)?;
        let record = s
            .memories
            .remove(&(caller, id))
            .ok_or(ErrorKind::MemoryNotFound { id })?;
        let freed = asset_len(s, &record.asset);
        if let StoredAsset::Blob { blob_id } = record.asset {
            s.remove_blob(blob_id);
        }
        capsule.memory_count -= 1;
        capsule.stored_bytes -= freed;
        capsule.updated_at = now;
        s.capsules.insert(caller, capsule);
        Ok(())
    })
}

pub fn memories_list(caller: Principal, req: MemoryPageRequest) -> Result<MemoryPage> {
    let limit = page_limit(req.limit)?;
    store::with(|s| {
        capsule_of(s, caller)?;
        let start = match req.after {
            Some(after) => after
                .checked_add(1)
                .ok_or_else(|| Error::invalid("after", "no memory comes after u64::MAX"))?,
            None => 0,
        };
        let mut items: Vec<Memory> = s
            .memories
            .range((caller, start)..=(caller, u64::MAX))
            .take(limit + 1)
            .map(|e| memory_view(s, e.key().1, &e.value()))
            .collect();
        let next = if items.len() > limit {
            items.pop();
            items.last().map(|m| m.id)
        } else {
            None
        };
        Ok(MemoryPage { items, next })
    })
}

pub fn blob_read_chunk(caller: Principal, memory_id: u64, index: u32) -> Result<ByteBuf> {
    store::with(|s| {
        capsule_of(s, caller)?;
        let record = s
            .memories
            .get(&(caller, memory_id))
            .ok_or(ErrorKind::MemoryNotFound { id: memory_id })?;
        let StoredAsset::Blob { blob_id } = record.asset else {
            return Err(Error::invalid("memory_id", "this memory has no blob asset"));
        };
        let blob = s.blobs.get(&blob_id).expect("a memory's blob exists");
        if index as usize >= blob.slots.len() {
            return Err(ErrorKind::ChunkOutOfRange {
                index,
                chunk_count: blob.slots.len() as u32,
            }
            .into());
        }
        Ok(ByteBuf::from(s.read_blob_chunk(&blob, index as usize)))
    })
}

// ---- uploads --------------------------------------------------------------------------------------

/// The caller's upload, if it exists and has not expired; an expired one is dropped on the spot, an
/// aborted one is left to the sweeper.
fn live_upload(s: &mut Store, key: (Principal, u64), now: u64) -> Result<UploadRecord> {
    let upload = s
        .uploads
        .get(&key)
        .filter(|u| u.hash != Some(UploadHash::Aborted))
        .ok_or(ErrorKind::UploadNotFound { upload_id: key.1 })?;
    if now >= upload.expires_at {
        drop_upload(s, key);
        return Err(ErrorKind::UploadExpired { upload_id: key.1 }.into());
    }
    Ok(upload)
}

fn drop_upload(s: &mut Store, key: (Principal, u64)) {
    if let Some(upload) = s.take_upload(key) {
        s.free_slots(upload.chunks.into_iter().flatten().map(|c| c.slot));
    }
}

pub fn upload_begin(caller: Principal, now: u64, req: UploadBegin) -> Result<UploadSession> {
    check_caller(caller)?;
    if req.total_len == 0 {
        return Err(Error::invalid(
            "total_len",
            "an upload needs at least one byte",
        ));
    }
    if req.total_len > BLOB_MAX {
        return Err(Error::too_large("total_len", BLOB_MAX, req.total_len));
    }
    store::with_mut(|s| {
        let capsule = writable_capsule(s, caller)?;
        s.check_room(RECORD_ROOM)?;
        let expired: Vec<_> = s
            .uploads
            .range((caller, 0)..=(caller, u64::MAX))
            .filter(|e| now >= e.value().expires_at)
            .map(|e| *e.key())
            .collect();
        for key in expired {
            drop_upload(s, key);
        }
        let open = s
            .uploads
            .range((caller, 0)..=(caller, u64::MAX))
            .filter(|e| e.value().hash != Some(UploadHash::Aborted))
            .count();
        if open >= UPLOADS_PER_CALLER_MAX {
            return Err(Error::too_many(
                "open uploads",
                UPLOADS_PER_CALLER_MAX,
                open + 1,
            ));
        }
        check_capacity(s, &capsule, req.total_len, None)?;
        let upload_id = s.next_upload_id();
        let chunk_count = chunk_count(req.total_len);
        let expires_at = now + UPLOAD_TTL_NANOS;
        s.insert_upload(
            (caller, upload_id),
            UploadRecord {
                owner: caller,
                total_len: req.total_len,
                chunks: vec![None; chunk_count as usize],
                expires_at,
                finished_sha256: None,
                hash: None,
            },
        );
        Ok(UploadSession {
            upload_id,
            chunk_size: CHUNK_SIZE as u32,
            chunk_count,
            expires_at,
        })
    })
}

pub fn upload_put_chunk(
    caller: Principal,
    now: u64,
    upload_id: u64,
    index: u32,
    bytes: ByteBuf,
) -> Result<()> {
    check_caller(caller)?;
    if bytes.len() > CHUNK_SIZE {
        return Err(Error::too_long("chunk", CHUNK_SIZE, bytes.len()));
    }
    store::with_mut(|s| {
        writable_capsule(s, caller)?;
        let key = (caller, upload_id);
        let mut upload = live_upload(s, key, now)?;
        if upload.finished_sha256.is_some() {
            return Err(Error::invalid(
                "upload_id",
                "this upload is already finished",
            ));
        }
        let count = upload.chunks.len() as u32;
        if index >= count {
            return Err(ErrorKind::ChunkOutOfRange {
                index,
                chunk_count: count,
            }
            .into());
        }
        let expected = chunk_len(upload.total_len, index as usize);
        if bytes.len() != expected {
            return Err(ErrorKind::ChunkSizeInvalid {
                index,
                expected: expected as u64,
                actual: bytes.len() as u64,
            }
            .into());
        }
        let hash = sha256(&bytes);
        if let Some(existing) = &upload.chunks[index as usize] {
            // The same chunk sent twice is accepted once.
            return if existing.sha256.as_slice() == hash {
                Ok(())
            } else {
                Err(ErrorKind::ChunkConflict { index }.into())
            };
        }
        s.check_room(CHUNK_SIZE as u64 + RECORD_ROOM)?;
        upload.chunks[index as usize] = Some(s.store_chunk(&bytes, hash)?);
        advance_hash(s, &mut upload, Some((index as usize, &bytes)));
        s.uploads.insert(key, upload);
        Ok(())
    })
}

/// Feeds the upload's digest the chunks that now follow its hashed prefix: the one in hand for free,
/// at most `UPLOAD_HASH_CATCH_UP` others read back from storage. When the last chunk is in, the
/// digest is done.
fn advance_hash(s: &Store, upload: &mut UploadRecord, in_hand: Option<(usize, &[u8])>) {
    let mut running = match &upload.hash {
        Some(UploadHash::Done(_)) | Some(UploadHash::Aborted) => return,
        Some(UploadHash::Running(stored)) => RunningSha256::from_stored(stored).unwrap_or_default(),
        None => RunningSha256::default(),
    };
    let count = upload.chunks.len();
    let mut next = (running.len() / CHUNK_SIZE as u64) as usize;
    let mut reads = 0;
    while next < count {
        let Some(chunk) = &upload.chunks[next] else {
            break;
        };
        let read_back;
        let bytes = match in_hand {
            Some((index, bytes)) if index == next => bytes,
            _ if reads == UPLOAD_HASH_CATCH_UP => break,
            _ => {
                reads += 1;
                read_back = s.slots_read(chunk.slot, chunk.len as usize);
                &read_back[..]
            }
        };
        if next + 1 == count {
            let digest = running.finish(bytes);
            upload.hash = Some(UploadHash::Done(ByteBuf::from(digest.to_vec())));
            return;
        }
        running.absorb(bytes);
        next += 1;
    }
    upload.hash = Some(UploadHash::Running(running.to_stored()));
}

/// Completes an upload whose chunks are all in. Costs the same at any size: the digest was built as
/// the chunks arrived (or catches up by a bounded step per call, `UploadHashing`). A digest that is
/// not the expected one aborts the upload: it cannot be finished again, and the sweeper frees its chunks.
pub fn upload_finish(
    caller: Principal,
    now: u64,
    upload_id: u64,
    expected_sha256: ByteBuf,
) -> Result<UploadReceipt> {
    check_caller(caller)?;
    if expected_sha256.len() != 32 {
        return Err(Error::invalid(
            "sha256",
            format!("must be 32 bytes, got {}", expected_sha256.len()),
        ));
    }
    store::with_mut(|s| {
        writable_capsule(s, caller)?;
        let key = (caller, upload_id);
        let mut upload = live_upload(s, key, now)?;
        if let Some(done) = &upload.finished_sha256 {
            return if *done == expected_sha256 {
                Ok(UploadReceipt {
                    upload_id,
                    len: upload.total_len,
                    sha256: done.clone(),
                })
            } else {
                Err(Error::hash_mismatch(&expected_sha256, done))
            };
        }
        let missing = upload.chunks.iter().filter(|c| c.is_none()).count() as u32;
        if missing > 0 {
            return Err(ErrorKind::UploadIncomplete {
                upload_id,
                missing_chunks: missing,
            }
            .into());
        }
        advance_hash(s, &mut upload, None);
        let actual = match &upload.hash {
            Some(UploadHash::Done(digest)) => digest.clone(),
            Some(UploadHash::Running(stored)) => {
                let hashed_chunks = (stored.len / CHUNK_SIZE as u64) as u32;
                let chunk_count = upload.chunks.len() as u32;
                s.uploads.insert(key, upload);
                return Err(ErrorKind::UploadHashing {
                    upload_id,
                    hashed_chunks,
                    chunk_count,
                }
                .into());
            }
            Some(UploadHash::Aborted) | None => {
                unreachable!("a live upload has a digest state after advance_hash")
            }
        };
        if actual != expected_sha256 {
            s.abort_upload(key, upload, now);
            return Err(Error::hash_mismatch(&expected_sha256, &actual));
        }
        upload.finished_sha256 = Some(expected_sha256.clone());
        let len = upload.total_len;
        s.uploads.insert(key, upload);
        Ok(UploadReceipt {
            upload_id,
            len,
            sha256: expected_sha256,
        })
    })
}

pub fn upload_abort(caller: Principal, upload_id: u64) -> Result<()> {
    check_caller(caller)?;
    store::with_mut(|s| {
        let key = (caller, upload_id);
        let open = s
            .uploads
            .get(&key)
            .filter(|u| u.hash != Some(UploadHash::Aborted));
        if open.is_none() {
            return Err(ErrorKind::UploadNotFound { upload_id }.into());
        }
        drop_upload(s, key);
        Ok(())
    })
}

/// Drops up to `UPLOAD_SWEEP_BATCH` uploads that expired by `now`, oldest first, whoever owns them;
/// `true` if more are waiting. The canisters run it on a timer.
pub fn sweep_expired_uploads(now: u64) -> bool {
    store::with_mut(|s| {
        let (due, more) = s.expired_uploads(now, UPLOAD_SWEEP_BATCH);
        for key in &due {
            drop_upload(s, *key);
        }
        s.count_swept(due.len() as u64);
        more
    })
}

/// The storage figures, for admins.
pub fn storage_status() -> StorageStatus {
    store::with(|s| s.storage_status())
}

/// Sets the storage budget (admins; the endpoint refuses more than `STORAGE_LIMIT`).
pub fn set_storage_budget(bytes: u64) {
    store::with_mut(|s| s.set_storage_budget(bytes.min(STORAGE_LIMIT)));
}

// ---- connections ----------------------------------------------------------------------------------

fn connection_view(peer: Principal, r: ConnectionRecord) -> Connection {
    Connection {
        peer,
        note: r.note,
        status: r.status,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub fn connection_add(
    caller: Principal,
    now: u64,
    peer: Principal,
    note: String,
) -> Result<Connection> {
    check_caller(caller)?;
    check_text("note", &note, NOTE_MAX)?;
    if peer == Principal::anonymous() {
        return Err(Error::invalid(
            "peer",
            "cannot connect to the anonymous principal",
        ));
    }
    if peer == caller {
        return Err(Error::invalid("peer", "cannot connect to yourself"));
    }
    store::with_mut(|s| {
        let mut capsule = writable_capsule(s, caller)?;
        s.check_room(RECORD_ROOM)?;
        if s.connections.contains_key(&(caller, peer)) {
            return Err(ErrorKind::ConnectionExists { peer }.into());
        }
        if capsule.connection_count >= CONNECTIONS_MAX {
            return Err(Error::too_many(
                "connections",
                CONNECTIONS_MAX as usize,
                capsule.connection_count as usize + 1,
            ));
        }
        let record = ConnectionRecord {
            note,
            status: ConnectionStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        s.connections.insert((caller, peer), record.clone());
        capsule.connection_count += 1;
        capsule.updated_at = now;
        s.capsules.insert(caller, capsule);
        Ok(connection_view(peer, record))
    })
}

pub fn connection_respond(
    caller: Principal,
    now: u64,
    peer: Principal,
    response: ConnectionResponse,
) -> Result<Connection> {
    check_caller(caller)?;
    store::with_mut(|s| {
        writable_capsule(s, caller)?;
        let mut record = s
            .connections
            .get(&(caller, peer))
            .ok_or(ErrorKind::ConnectionNotFound { peer })?;
        record.status = match response {
            ConnectionResponse::Accept => ConnectionStatus::Accepted,
            ConnectionResponse::Block => ConnectionStatus::Blocked,
        };
        record.updated_at = now;
        s.connections.insert((caller, peer), record.clone());
        Ok(connection_view(peer, record))
    })
}

pub fn connection_remove(caller: Principal, now: u64, peer: Principal) -> Result<()> {
    check_caller(caller)?;
    store::with_mut(|s| {
        let mut capsule = writable_capsule(s, caller)?;
        s.connections
            .remove(&(caller, peer))
            .ok_or(ErrorKind::ConnectionNotFound { peer })?;
        capsule.connection_count -= 1;
        capsule.updated_at = now;
        s.capsules.insert(caller, capsule);
        Ok(())
    })
}

pub fn connections_list(caller: Principal, req: ConnectionPageRequest) -> Result<ConnectionPage> {
    let limit = page_limit(req.limit)?;
    store::with(|s| {
        capsule_of(s, caller)?;
        let min = Principal::from_slice(&[]);
        let mut items: Vec<Connection> = s
            .connections
            .range((caller, req.after.unwrap_or(min))..)
            .take_while(|e| e.key().0 == caller)
            .filter(|e| Some(e.key().1) != req.after)
            .take(limit + 1)
            .map(|e| connection_view(e.key().1, e.value()))
            .collect();
        let next = if items.len() > limit {
            items.pop();
            items.last().map(|c| c.peer)
        } else {
            None
        };
        Ok(ConnectionPage { items, next })
    })
}

pub fn capsule_manifest(caller: Principal) -> Result<Manifest> {
    store::with(|s| {
        capsule_of(s, caller)?;
        Ok(crate::manifest::compute(s, caller).expect("capsule exists"))
    })
}
