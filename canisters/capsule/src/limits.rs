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
/// Stored chunks one message reads back to hash, besides the one it carries: the running digest
/// catches up this fast after chunks arrived out of order, and no message hashes more.
pub const UPLOAD_HASH_CATCH_UP: usize = 4;
/// Expired uploads one sweep drops (each frees up to 147 chunk slots); a full batch schedules the next.
pub const UPLOAD_SWEEP_BATCH: usize = 16;
/// How often the sweeper looks for expired uploads.
pub const UPLOAD_SWEEP_INTERVAL_SECS: u64 = 10 * 60;

/// The memory manager's limit: 32,768 buckets of 128 wasm pages. At it every insert traps.
pub const STORAGE_LIMIT: u64 = 32_768 * 128 * 65_536;
/// Users' writes stop with `StorageFull` at this much stable memory (three quarters of the limit),
/// leaving room for the factory's records and the maps' own growth. Admins can set another budget.
pub const STORAGE_BUDGET_DEFAULT: u64 = STORAGE_LIMIT / 4 * 3;
/// What one write may add to stable memory besides the blob bytes it carries: a region grows by whole
/// buckets of 128 wasm pages (8 MiB).
pub const RECORD_ROOM: u64 = 128 * 65_536;

pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 100;

/// Import batches: bounded by count here and by the message size on the wire.
pub const IMPORT_BATCH_MAX: usize = 1_000;
