//! Candid types of the capsule API, shared by the backend and personal canisters.

use candid::{CandidType, Deserialize, Principal};

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CapsuleInput {
    pub name: String,
    pub bio: String,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CapsuleUpdate {
    pub name: Option<String>,
    pub bio: Option<String>,
}

/// Where the capsule can be written: here, nowhere while it moves, or in the owner's personal canister.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CapsuleStatus {
    Active,
    Locked,
    Migrated { canister_id: Principal },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Capsule {
    pub owner: Principal,
    pub name: String,
    pub bio: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub memory_count: u64,
    pub connection_count: u64,
    pub stored_bytes: u64,
    pub status: CapsuleStatus,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    Note,
    Image,
    Video,
    Audio,
    Document,
    Other,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AssetInput {
    None,
    Inline {
        bytes: serde_bytes::ByteBuf,
    },
    /// A finished upload session; its blob becomes the memory's asset.
    Upload {
        upload_id: u64,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryInput {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kind: MemoryKind,
    pub mime_type: String,
    pub asset: AssetInput,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AssetInfo {
    None,
    Inline {
        len: u64,
        sha256: serde_bytes::ByteBuf,
    },
    Blob {
        len: u64,
        sha256: serde_bytes::ByteBuf,
        chunk_size: u32,
        chunk_count: u32,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    pub id: u64,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kind: MemoryKind,
    pub mime_type: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub asset: AssetInfo,
}

/// A memory with its inline bytes (blob bytes are read with `blob_read_chunk`).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryDetail {
    pub memory: Memory,
    pub inline_bytes: Option<serde_bytes::ByteBuf>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPageRequest {
    pub after: Option<u64>,
    pub limit: Option<u32>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryPage {
    pub items: Vec<Memory>,
    pub next: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadBegin {
    pub total_len: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    pub upload_id: u64,
    pub chunk_size: u32,
    pub chunk_count: u32,
    pub expires_at: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadReceipt {
    pub upload_id: u64,
    pub len: u64,
    pub sha256: serde_bytes::ByteBuf,
}

/// The capsule store's use of stable memory, for admins.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StorageStatus {
    /// Stable memory the canister holds now (every region, the factory's included).
    pub stable_bytes: u64,
    /// Users' writes are refused with `StorageFull` past this.
    pub budget_bytes: u64,
    /// The memory manager's limit, where every insert would trap.
    pub limit_bytes: u64,
    /// Upload records held: open ones, and aborted or expired ones the sweeper has not dropped yet.
    pub open_uploads: u64,
    /// Expired uploads the sweeper has dropped since install.
    pub uploads_swept: u64,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStatus {
    Pending,
    Accepted,
    Blocked,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionResponse {
    Accept,
    Block,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub peer: Principal,
    pub note: String,
    pub status: ConnectionStatus,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionPageRequest {
    pub after: Option<Principal>,
    pub limit: Option<u32>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPage {
    pub items: Vec<Connection>,
    pub next: Option<Principal>,
}

/// Counts plus the canonical SHA-256 root of a capsule's content (see `manifest`).
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub memories: u64,
    pub inline_assets: u64,
    pub inline_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub connections: u64,
    pub root: serde_bytes::ByteBuf,
    pub root_hex: String,
}
