//! The one error type of the capsule API: a typed kind (its variant name is the stable code) and a
//! human-readable message. Bad input never traps; it comes back as one of these.

use candid::{CandidType, Deserialize, Principal};
use std::fmt;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    AnonymousCaller,
    NotOwner,
    NotImporter,
    CapsuleNotFound,
    CapsuleExists,
    CapsuleLocked,
    CapsuleMigrated {
        canister_id: Principal,
    },
    MemoryNotFound {
        id: u64,
    },
    ConnectionNotFound {
        peer: Principal,
    },
    ConnectionExists {
        peer: Principal,
    },
    TooLong {
        field: String,
        max: u64,
        actual: u64,
    },
    TooMany {
        field: String,
        max: u64,
        actual: u64,
    },
    InvalidArgument {
        field: String,
        reason: String,
    },
    UploadNotFound {
        upload_id: u64,
    },
    UploadExpired {
        upload_id: u64,
    },
    UploadIncomplete {
        upload_id: u64,
        missing_chunks: u32,
    },
    /// Every chunk is in but the digest is still catching up with chunks that came out of order;
    /// each `upload_finish` advances it by a bounded amount.
    UploadHashing {
        upload_id: u64,
        hashed_chunks: u32,
        chunk_count: u32,
    },
    /// The service's storage budget is used up: nothing that adds data is accepted until space is freed.
    StorageFull,
    ChunkOutOfRange {
        index: u32,
        chunk_count: u32,
    },
    ChunkSizeInvalid {
        index: u32,
        expected: u64,
        actual: u64,
    },
    ChunkConflict {
        index: u32,
    },
    HashMismatch {
        expected: String,
        actual: String,
    },
    LengthMismatch {
        expected: u64,
        actual: u64,
    },
    ImportInProgress,
    ImportNotStarted,
    ImportFinalized,
    ImportConflict {
        reason: String,
    },
    ImportOutOfOrder {
        stream: String,
        expected: u64,
        got: u64,
    },
    ManifestMismatch {
        expected: Box<crate::Manifest>,
        actual: Box<crate::Manifest>,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind) -> Self {
        let message = describe(&kind);
        Error { kind, message }
    }

    /// The stable code: the variant's name.
    pub fn code(&self) -> &'static str {
        code(&self.kind)
    }

    pub fn too_long(field: &str, max: usize, actual: usize) -> Self {
        Self::new(ErrorKind::TooLong {
            field: field.into(),
            max: max as u64,
            actual: actual as u64,
        })
    }

    /// `TooLong` for byte totals, which can exceed a wasm32 `usize`.
    pub fn too_large(field: &str, max: u64, actual: u64) -> Self {
        Self::new(ErrorKind::TooLong {
            field: field.into(),
            max,
            actual,
        })
    }

    pub fn too_many(field: &str, max: usize, actual: usize) -> Self {
        Self::new(ErrorKind::TooMany {
            field: field.into(),
            max: max as u64,
            actual: actual as u64,
        })
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        })
    }

    pub fn hash_mismatch(expected: &[u8], actual: &[u8]) -> Self {
        Self::new(ErrorKind::HashMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        })
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

fn code(kind: &ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        AnonymousCaller => "AnonymousCaller",
        NotOwner => "NotOwner",
        NotImporter => "NotImporter",
        CapsuleNotFound => "CapsuleNotFound",
        CapsuleExists => "CapsuleExists",
        CapsuleLocked => "CapsuleLocked",
        CapsuleMigrated { .. } => "CapsuleMigrated",
        MemoryNotFound { .. } => "MemoryNotFound",
        ConnectionNotFound { .. } => "ConnectionNotFound",
        ConnectionExists { .. } => "ConnectionExists",
        TooLong { .. } => "TooLong",
        TooMany { .. } => "TooMany",
        InvalidArgument { .. } => "InvalidArgument",
        UploadNotFound { .. } => "UploadNotFound",
        UploadExpired { .. } => "UploadExpired",
        UploadIncomplete { .. } => "UploadIncomplete",
        UploadHashing { .. } => "UploadHashing",
        StorageFull => "StorageFull",
        ChunkOutOfRange { .. } => "ChunkOutOfRange",
        ChunkSizeInvalid { .. } => "ChunkSizeInvalid",
        ChunkConflict { .. } => "ChunkConflict",
        HashMismatch { .. } => "HashMismatch",
        LengthMismatch { .. } => "LengthMismatch",
        ImportInProgress => "ImportInProgress",
        ImportNotStarted => "ImportNotStarted",
        ImportFinalized => "ImportFinalized",
        ImportConflict { .. } => "ImportConflict",
        ImportOutOfOrder { .. } => "ImportOutOfOrder",
        ManifestMismatch { .. } => "ManifestMismatch",
    }
}

fn describe(kind: &ErrorKind) -> String {
    use ErrorKind::*;
    match kind {
        AnonymousCaller => "the anonymous principal cannot use this method; sign in first".into(),
        NotOwner => "only the capsule's owner may do this".into(),
        NotImporter => "only the importer named at install may call the import API".into(),
        CapsuleNotFound => "you have no capsule yet; create one first".into(),
        CapsuleExists => "you already have a capsule".into(),
        CapsuleLocked => "your capsule is being moved to your personal canister; writes are paused until that finishes".into(),
        CapsuleMigrated { canister_id } => {
            format!("your capsule now lives in your personal canister {canister_id}; write there")
        }
        MemoryNotFound { id } => format!("memory {id} does not exist"),
        ConnectionNotFound { peer } => format!("no connection with {peer}"),
        ConnectionExists { peer } => format!("a connection with {peer} already exists"),
        TooLong { field, max, actual } => format!("{field} is {actual} bytes long; the limit is {max}"),
        TooMany { field, max, actual } => format!("{field}: {actual} is more than the limit of {max}"),
        InvalidArgument { field, reason } => format!("{field}: {reason}"),
        UploadNotFound { upload_id } => format!("upload {upload_id} does not exist (or belongs to someone else)"),
        UploadExpired { upload_id } => format!("upload {upload_id} expired; begin a new one"),
        UploadIncomplete { upload_id, missing_chunks } => {
            format!("upload {upload_id} is missing {missing_chunks} chunk(s)")
        }
        UploadHashing { upload_id, hashed_chunks, chunk_count } => format!(
            "upload {upload_id} is still being hashed ({hashed_chunks} of {chunk_count} chunks); call upload_finish again"
        ),
        StorageFull => "the service's storage is full; nothing can be added now (deleting still works)".into(),
        ChunkOutOfRange { index, chunk_count } => {
            format!("chunk {index} is out of range: the blob has {chunk_count} chunk(s)")
        }
        ChunkSizeInvalid { index, expected, actual } => {
            format!("chunk {index} is {actual} bytes; it must be {expected}")
        }
        ChunkConflict { index } => format!("chunk {index} was already received with different content"),
        HashMismatch { expected, actual } => format!("SHA-256 mismatch: expected {expected}, got {actual}"),
        LengthMismatch { expected, actual } => format!("length mismatch: expected {expected} bytes, got {actual}"),
        ImportInProgress => "this canister is still receiving its capsule; try again when the import is finalized".into(),
        ImportNotStarted => "no import has begun".into(),
        ImportFinalized => "the import is finalized; the import API is closed for good".into(),
        ImportConflict { reason } => format!("import conflict: {reason}"),
        ImportOutOfOrder { stream, expected, got } => {
            format!("{stream}: expected item {expected}, got {got}; send the missing ones first")
        }
        ManifestMismatch { expected, actual } => format!(
            "the stored capsule does not match the expected manifest: expected root {} ({} memories, {} blobs, {} connections), got {} ({} memories, {} blobs, {} connections)",
            expected.root_hex, expected.memories, expected.blobs, expected.connections,
            actual.root_hex, actual.memories, actual.blobs, actual.connections
        ),
    }
}
