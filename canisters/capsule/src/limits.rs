//! Every input bound of the capsule API, in one place.

pub const NAME_MAX: usize = 100;
pub const BIO_MAX: usize = 2_000;
pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 4_000;
pub const TAG_MAX: usize = 40;
pub const TAGS_MAX: usize = 20;
pub const MIME_MAX: usize = 100;
pub const NOTE_MAX: usize = 500;

/// Assets up to this size live inline in the memory record.
pub const INLINE_MAX: usize = 32 * 1024;
/// Blob chunk size: one chunk per message, well under the 2 MiB message limit with room for framing.
pub const CHUNK_SIZE: usize = 1_835_008; // 1.75 MiB = 28 wasm pages
pub const BLOB_MAX: u64 = 256 * 1024 * 1024;
/// Total bytes (inline + blobs) one capsule may hold.
pub const CAPSULE_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
pub const MEMORIES_MAX: u64 = 100_000;
pub const CONNECTIONS_MAX: u64 = 10_000;

pub const UPLOADS_PER_CALLER_MAX: usize = 4;
pub const UPLOAD_TTL_NANOS: u64 = 2 * 60 * 60 * 1_000_000_000;

pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 100;

/// Import batches: bounded by count here and by the message size on the wire.
pub const IMPORT_BATCH_MAX: usize = 1_000;
