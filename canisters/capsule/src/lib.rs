//! The capsule domain shared by the backend and personal canisters.
//!
//! - `types`: the Candid API types; `error`: the one typed error; `limits`: every input bound.
//! - `service`: the capsule API's logic (caller checks, bounds, storage).
//! - `store`: stable storage (one `MemoryManager`, named regions).
//! - `manifest`: the canonical SHA-256 of a capsule's content; `hash`: SHA-256 across messages.
//! - `transfer`: the backend's export and the personal canister's import.

mod endpoints;
pub mod error;
pub mod hash;
pub mod limits;
pub mod manifest;
pub mod service;
pub mod store;
pub mod transfer;
pub mod types;

pub use error::{Error, ErrorKind, Result};
pub use types::*;
