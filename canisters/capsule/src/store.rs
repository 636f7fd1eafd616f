//! Stable storage: one `MemoryManager`, named regions, and the maps every capsule lives in.
//! Records are Candid-encoded so new optional fields can be added without a migration.

use crate::error::{Error, ErrorKind, Result};
use crate::hash::StoredSha256;
use crate::limits::{CHUNK_SIZE, STORAGE_BUDGET_DEFAULT, STORAGE_LIMIT};
use crate::types::{CapsuleStatus, ConnectionStatus, MemoryKind, StorageStatus};
use candid::{CandidType, Deserialize, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{Cell, DefaultMemoryImpl, Memory as _, StableBTreeMap, StableBTreeSet};
use serde_bytes::ByteBuf;
use std::cell::RefCell;

pub type VMem = VirtualMemory<DefaultMemoryImpl>;

/// Every stable region of both canisters. Ids are part of the stable layout: never renumber.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum Region {
    Capsules = 0,
    Memories = 1,
    Connections = 2,
    Blobs = 3,
    BlobSlots = 4,
    FreeSlots = 5,
    Uploads = 6,
    Meta = 7,
    Locks = 8,
    UploadExpiry = 9,
    // personal canister: the import
    ImportState = 10,
    ImportPendingBlobs = 11,
    // backend: the factory
    FactoryConfig = 20,
    FactoryJobs = 21,
    FactoryRegistry = 22,
    FactoryStats = 23,
    FactoryWasm = 24,
    FactoryWasmChunks = 25,
    FactoryAlerts = 26,
    Admins = 27,
    FactoryActiveJobs = 28,
    FactoryAdmission = 29,
    FactoryUsers = 30,
    FactoryLeases = 31,
}

thread_local! {
    /// The canister's whole stable memory, under the memory manager: its size is what storage costs.
    static RAW: DefaultMemoryImpl = DefaultMemoryImpl::default();
    static MANAGER: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(RAW.with(|m| m.clone()));
    static STORE: RefCell<Store> = RefCell::new(Store::init());
}

pub fn memory(region: Region) -> VMem {
    MANAGER.with(|m| m.get(MemoryId::new(region as u8)))
}

pub(crate) fn with<R>(f: impl FnOnce(&Store) -> R) -> R {
    STORE.with(|s| f(&s.borrow()))
}

pub(crate) fn with_mut<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    STORE.with(|s| f(&mut s.borrow_mut()))
}

/// Implements `Storable` for a type through Candid.
#[macro_export]
macro_rules! candid_storable {
    ($t:ty) => {
        impl ic_stable_structures::Storable for $t {
            fn to_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
                std::borrow::Cow::Owned(
                    candid::encode_one(self).expect("candid encoding of a stored record"),
                )
            }
            fn into_bytes(self) -> Vec<u8> {
                candid::encode_one(&self).expect("candid encoding of a stored record")
            }
            fn from_bytes(bytes: std::borrow::Cow<[u8]>) -> Self {
                candid::decode_one(&bytes).expect("candid decoding of a stored record")
            }
            const BOUND: ic_stable_structures::storable::Bound =
                ic_stable_structures::storable::Bound::Unbounded;
        }
    };
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct CapsuleRecord {
    pub owner: Principal,
    pub name: String,
    pub bio: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub next_memory_id: u64,
    pub memory_count: u64,
    pub connection_count: u64,
    pub stored_bytes: u64,
}
candid_storable!(CapsuleRecord);

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoredAsset {
    None,
    Inline { bytes: ByteBuf, sha256: ByteBuf },
    Blob { blob_id: u64 },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemoryRecord {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kind: MemoryKind,
    pub mime_type: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub asset: StoredAsset,
}
candid_storable!(MemoryRecord);

/// A blob's bytes live in fixed-size slots of `BlobSlots`; its hashes are computed once, when stored.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlobRecord {
    pub len: u64,
    pub sha256: ByteBuf,
    pub chunk_hashes: Vec<ByteBuf>,
    pub slots: Vec<u64>,
}
candid_storable!(BlobRecord);

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionRecord {
    pub note: String,
    pub status: ConnectionStatus,
    pub created_at: u64,
    pub updated_at: u64,
}
candid_storable!(ConnectionRecord);

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub slot: u64,
    pub len: u64,
    pub sha256: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct UploadRecord {
    pub owner: Principal,
    pub total_len: u64,
    pub chunks: Vec<Option<ChunkRef>>,
    pub expires_at: u64,
    pub finished_sha256: Option<ByteBuf>,
    /// The digest of the chunks received so far, built as they arrive (`None` in records written
    /// before it existed: nothing hashed yet).
    pub hash: Option<UploadHash>,
}
candid_storable!(UploadRecord);

/// How far an upload's SHA-256 has got.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) enum UploadHash {
    /// The state after the leading chunks (all full), waiting for the next one.
    Running(StoredSha256),
    /// Every chunk hashed: the whole blob's digest.
    Done(ByteBuf),
    /// The digest was not the expected one: the upload is gone for its owner, and the sweeper frees
    /// its chunks (freeing up to 147 slots is not work for the message that found the mismatch).
    Aborted,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub next_blob_id: u64,
    pub next_upload_id: u64,
    pub slot_count: u64,
    /// The storage budget an admin set (`None`: `STORAGE_BUDGET_DEFAULT`).
    pub storage_budget: Option<u64>,
    /// Expired uploads dropped by the sweeper since install.
    pub uploads_swept: Option<u64>,
}
candid_storable!(Meta);

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockRecord(pub CapsuleStatus);
candid_storable!(LockRecord);

pub(crate) struct Store {
    pub capsules: StableBTreeMap<Principal, CapsuleRecord, VMem>,
    pub memories: StableBTreeMap<(Principal, u64), MemoryRecord, VMem>,
    pub connections: StableBTreeMap<(Principal, Principal), ConnectionRecord, VMem>,
    pub blobs: StableBTreeMap<u64, BlobRecord, VMem>,
    pub uploads: StableBTreeMap<(Principal, u64), UploadRecord, VMem>,
    /// Every open upload by (expires_at, upload_id), so the sweeper finds the expired ones first.
    upload_expiry: StableBTreeMap<(u64, u64), Principal, VMem>,
    pub locks: StableBTreeMap<Principal, LockRecord, VMem>,
    pub slots: SlotStore,
    meta: Cell<Meta, VMem>,
}

impl Store {
    fn init() -> Self {
        Store {
            capsules: StableBTreeMap::init(memory(Region::Capsules)),
            memories: StableBTreeMap::init(memory(Region::Memories)),
            connections: StableBTreeMap::init(memory(Region::Connections)),
            blobs: StableBTreeMap::init(memory(Region::Blobs)),
            uploads: StableBTreeMap::init(memory(Region::Uploads)),
            upload_expiry: StableBTreeMap::init(memory(Region::UploadExpiry)),
            locks: StableBTreeMap::init(memory(Region::Locks)),
            slots: SlotStore {
                data: memory(Region::BlobSlots),
                free: StableBTreeSet::init(memory(Region::FreeSlots)),
            },
            meta: Cell::init(memory(Region::Meta), Meta::default()),
        }
    }

    pub fn next_blob_id(&mut self) -> u64 {
        let mut meta = self.meta.get().clone();
        meta.next_blob_id += 1;
        let id = meta.next_blob_id;
        self.meta.set(meta);
        id
    }

    pub fn next_upload_id(&mut self) -> u64 {
        let mut meta = self.meta.get().clone();
        meta.next_upload_id += 1;
        let id = meta.next_upload_id;
        self.meta.set(meta);
        id
    }

    /// Opens an upload.
    pub fn insert_upload(&mut self, key: (Principal, u64), record: UploadRecord) {
        self.upload_expiry.insert((record.expires_at, key.1), key.0);
        self.uploads.insert(key, record);
    }

    /// Closes an upload (attached to a memory, aborted or expired); its chunks stay allocated.
    pub fn take_upload(&mut self, key: (Principal, u64)) -> Option<UploadRecord> {
        let record = self.uploads.remove(&key)?;
        self.upload_expiry.remove(&(record.expires_at, key.1));
        Some(record)
    }

    /// Hands an upload to the sweeper: it becomes due now.
    pub fn abort_upload(&mut self, key: (Principal, u64), mut record: UploadRecord, now: u64) {
        self.upload_expiry.remove(&(record.expires_at, key.1));
        record.expires_at = now;
        record.hash = Some(UploadHash::Aborted);
        self.upload_expiry.insert((now, key.1), key.0);
        self.uploads.insert(key, record);
    }

    /// Up to `max` uploads expired at `now`, oldest first, and whether more are waiting.
    pub fn expired_uploads(&self, now: u64, max: usize) -> (Vec<(Principal, u64)>, bool) {
        let mut due: Vec<(Principal, u64)> = self
            .upload_expiry
            .range(..=(now, u64::MAX))
            .take(max + 1)
            .map(|e| (e.value(), e.key().1))
            .collect();
        let more = due.len() > max;
        due.truncate(max);
        (due, more)
    }

    pub fn count_swept(&mut self, n: u64) {
        let mut meta = self.meta.get().clone();
        meta.uploads_swept = Some(meta.uploads_swept.unwrap_or(0) + n);
        self.meta.set(meta);
    }

    pub fn storage_budget(&self) -> u64 {
        self.meta
            .get()
            .storage_budget
            .unwrap_or(STORAGE_BUDGET_DEFAULT)
    }

    pub fn set_storage_budget(&mut self, bytes: u64) {
        let mut meta = self.meta.get().clone();
        meta.storage_budget = Some(bytes);
        self.meta.set(meta);
    }

    /// Refuses a write that could take stable memory past the storage budget: `adding` is the most
    /// the write can grow it by. The whole service would stop at the memory manager's limit, where
    /// every insert traps; the budget keeps users' writes well clear of it.
    pub fn check_room(&self, adding: u64) -> Result<()> {
        if stable_bytes().saturating_add(adding) > self.storage_budget() {
            return Err(ErrorKind::StorageFull.into());
        }
        Ok(())
    }

    /// The storage figures for admins.
    pub fn storage_status(&self) -> StorageStatus {
        StorageStatus {
            stable_bytes: stable_bytes(),
            budget_bytes: self.storage_budget(),
            limit_bytes: STORAGE_LIMIT,
            open_uploads: self.uploads.len(),
            uploads_swept: self.meta.get().uploads_swept.unwrap_or(0),
        }
    }

    pub fn alloc_slot(&mut self) -> Result<u64> {
        if let Some(slot) = self.slots.free.pop_first() {
            return Ok(slot);
        }
        let mut meta = self.meta.get().clone();
        let slot = meta.slot_count;
        self.slots.ensure_capacity(slot + 1)?;
        meta.slot_count += 1;
        self.meta.set(meta);
        Ok(slot)
    }

    pub fn free_slots(&mut self, slots: impl IntoIterator<Item = u64>) {
        for slot in slots {
            self.slots.free.insert(slot);
        }
    }

    /// Writes one chunk into a fresh slot and returns where it went.
    pub fn store_chunk(&mut self, bytes: &[u8], sha256: [u8; 32]) -> Result<ChunkRef> {
        let slot = self.alloc_slot()?;
        self.slots.write(slot, bytes);
        Ok(ChunkRef {
            slot,
            len: bytes.len() as u64,
            sha256: ByteBuf::from(sha256.to_vec()),
        })
    }

    /// Moves finished chunks into a new blob record.
    pub fn insert_blob(&mut self, len: u64, sha256: [u8; 32], chunks: Vec<ChunkRef>) -> u64 {
        let id = self.next_blob_id();
        let record = BlobRecord {
            len,
            sha256: ByteBuf::from(sha256.to_vec()),
            chunk_hashes: chunks.iter().map(|c| c.sha256.clone()).collect(),
            slots: chunks.iter().map(|c| c.slot).collect(),
        };
        self.blobs.insert(id, record);
        id
    }

    pub fn remove_blob(&mut self, blob_id: u64) {
        if let Some(blob) = self.blobs.remove(&blob_id) {
            self.free_slots(blob.slots);
        }
    }

    pub fn read_blob_chunk(&self, blob: &BlobRecord, index: usize) -> Vec<u8> {
        let len = chunk_len(blob.len, index);
        self.slots.read(blob.slots[index], len)
    }
}

/// Bytes of stable memory the canister holds now (all regions, in whole pages).
pub fn stable_bytes() -> u64 {
    RAW.with(|m| m.size()) * WASM_PAGE
}

/// Length of chunk `index` of a blob of `total` bytes cut into `CHUNK_SIZE` chunks.
pub fn chunk_len(total: u64, index: usize) -> usize {
    let start = index as u64 * CHUNK_SIZE as u64;
    (total.saturating_sub(start)).min(CHUNK_SIZE as u64) as usize
}

pub fn chunk_count(total: u64) -> u32 {
    total.div_ceil(CHUNK_SIZE as u64) as u32
}

/// Fixed-size slots of `CHUNK_SIZE` bytes in their own region, reused through a free list.
pub(crate) struct SlotStore {
    data: VMem,
    free: StableBTreeSet<u64, VMem>,
}

const WASM_PAGE: u64 = 65_536;

impl SlotStore {
    fn ensure_capacity(&self, slots: u64) -> Result<()> {
        let needed = (slots * CHUNK_SIZE as u64).div_ceil(WASM_PAGE);
        let have = self.data.size();
        if needed > have && self.data.grow(needed - have) < 0 {
            return Err(Error::new(ErrorKind::InvalidArgument {
                field: "blob".into(),
                reason: "the canister's stable memory is full".into(),
            }));
        }
        Ok(())
    }

    fn write(&self, slot: u64, bytes: &[u8]) {
        debug_assert!(bytes.len() <= CHUNK_SIZE);
        self.data.write(slot * CHUNK_SIZE as u64, bytes);
    }

    fn read(&self, slot: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.data.read(slot * CHUNK_SIZE as u64, &mut buf);
        buf
    }
}

impl Store {
    pub fn slots_read(&self, slot: u64, len: usize) -> Vec<u8> {
        self.slots.read(slot, len)
    }
}
