//! An embedded Internet Computer: one simulated 13-node application subnet plus the management canister,
//! running real canister wasm in process on wasmtime. See `shared/reference/ic-engine-spec.md`.

mod engine;
pub mod metrics;
pub mod mgmt_types;
mod runtime;
pub mod stable;
mod types;
pub mod wasm;

pub use candid::Principal;
pub use engine::{canister_id_at, Engine};
pub use metrics::{ExecKind, ExecRecord, Metrics, Totals};
pub use types::*;
