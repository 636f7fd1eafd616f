//! The personal canister: one user's capsule, served with the same API as the shared backend, filled
//! once by the factory through the import API.

use capsule::transfer::{
    self, ApiVersion, BlobChunk, ConnectionBatch, ImportAck, ImportBegin, ImportStatus,
    MemoryBatch, PersonalInit,
};
use capsule::{Manifest, Result};

/// The API version this build serves. The factory migrates only into a matching major version.
pub const API_VERSION: ApiVersion = ApiVersion {
    major: if cfg!(feature = "next_major_api") {
        2
    } else {
        1
    },
    minor: 0,
};

#[ic_cdk::init]
fn init(arg: PersonalInit) {
    transfer::init(arg.owner, arg.importer);
    capsule_start_timers();
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    transfer::restore();
    capsule_start_timers();
}

/// Drops update ingress the canister would refuse anyway, before it costs the canister anything (a
/// hostile co-controller could otherwise burn its cycles during the import): the import API from anyone
/// but the importer (the factory is a canister, whose calls never pass here), other methods from anyone
/// but the owner, and the owner's writes while the capsule is locked for the import. The methods check
/// again.
#[ic_cdk::inspect_message]
fn inspect_message() {
    let caller = ic_cdk::api::msg_caller();
    let status = transfer::status();
    let allowed = if ic_cdk::api::msg_method_name().starts_with("import_") {
        Some(caller) == status.importer
    } else {
        Some(caller) == status.owner
            && capsule::service::status_of(caller) != capsule::CapsuleStatus::Locked
    };
    if allowed {
        ic_cdk::api::accept_message();
    }
}

capsule::capsule_endpoints!();

#[ic_cdk::query]
fn api_version() -> ApiVersion {
    API_VERSION
}

#[ic_cdk::update]
fn import_begin(req: ImportBegin) -> Result<ImportStatus> {
    transfer::begin(ic_cdk::api::msg_caller(), req)
}

#[ic_cdk::update]
fn import_blob_chunk(chunk: BlobChunk) -> Result<ImportAck> {
    transfer::put_chunk(ic_cdk::api::msg_caller(), chunk)
}

#[ic_cdk::update]
fn import_memories(batch: MemoryBatch) -> Result<ImportAck> {
    transfer::put_memories(ic_cdk::api::msg_caller(), batch)
}

#[ic_cdk::update]
fn import_connections(batch: ConnectionBatch) -> Result<ImportAck> {
    transfer::put_connections(ic_cdk::api::msg_caller(), batch)
}

#[ic_cdk::update]
fn import_finalize() -> Result<Manifest> {
    transfer::finalize(ic_cdk::api::msg_caller())
}

/// The import's progress, for the owner and the importer only.
#[ic_cdk::query]
fn import_status() -> Result<ImportStatus> {
    transfer::status_for(ic_cdk::api::msg_caller())
}

/// The manifest of the owner's capsule as stored now, for the importer's verification and the owner.
#[ic_cdk::query]
fn manifest() -> Result<Manifest> {
    transfer::manifest_for(ic_cdk::api::msg_caller())
}

ic_cdk::export_candid!();

/// The Candid service this code exports (the checked-in `personal.did` must equal it).
pub fn candid_interface() -> String {
    __export_service()
}
