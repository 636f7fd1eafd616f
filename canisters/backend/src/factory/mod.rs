//! The factory's endpoints (feature `personal_canister_creation`): thin wrappers that take the caller
//! and the time from the IC and hand them to `service`.

pub mod admission;
pub mod api;
pub mod cleanup;
pub mod control;
pub mod driver;
pub mod failpoints;
mod ic;
pub mod repo;
pub mod runtime;
pub mod service;
pub mod timers;

#[cfg(test)]
mod tests;

use api::*;
use candid::{Nat, Principal};
use ic_cdk::api::{msg_caller, time};
use ic_cdk::{query, update};

/// Methods only admins may call; `inspect_message` drops other callers' ingress to them early.
pub const ADMIN_METHODS: &[&str] = &[
    "factory_set_enabled",
    "factory_set_paused",
    "factory_configure",
    "reserve_top_up",
    "reserve_allocate",
    "admin_retry_job",
    "admin_cleanup_job",
    "admin_cancel_job",
    "admission_configure",
    "admission_allow",
    "admission_disallow",
    "admission_grant",
    "personal_wasm_put_chunk",
    "personal_wasm_commit",
    "failpoint_arm",
    "failpoints_clear",
];

/// A line in the canister log (nothing off the IC, where the driver runs under unit tests).
pub(crate) fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    ic_cdk::println!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    let _ = line;
}

fn admin() -> FactoryResult<()> {
    service::require_admin(msg_caller())
}

// ---- users ----------------------------------------------------------------------------------------

#[update]
fn create_personal_canister(
    config: Option<CreatePersonalCanisterConfig>,
) -> FactoryResult<CreationStatus> {
    service::create(msg_caller(), time(), config)
}

/// The same as `create_personal_canister`.
#[update]
fn migrate_capsule(config: Option<CreatePersonalCanisterConfig>) -> FactoryResult<CreationStatus> {
    service::create(msg_caller(), time(), config)
}

#[query]
fn get_creation_status() -> FactoryResult<Option<CreationStatus>> {
    service::status(msg_caller())
}

/// The same as `get_creation_status`.
#[query]
fn get_migration_status() -> FactoryResult<Option<CreationStatus>> {
    service::status(msg_caller())
}

#[update]
fn retry_personal_canister_creation() -> FactoryResult<CreationStatus> {
    service::require_user(msg_caller())?;
    service::retry(msg_caller(), time(), false)
}

#[query]
fn get_my_personal_canister_id() -> FactoryResult<Option<Principal>> {
    service::personal_canister_of(msg_caller(), msg_caller())
}

#[query]
fn get_personal_canister_id(user: Principal) -> FactoryResult<Option<Principal>> {
    service::personal_canister_of(msg_caller(), user)
}

// ---- admins ---------------------------------------------------------------------------------------

#[update]
fn factory_set_enabled(enabled: bool) -> FactoryResult<FactoryConfigView> {
    admin()?;
    service::set_enabled(enabled);
    Ok(service::config_view())
}

/// The emergency brake (distinct from `factory_set_enabled`, which only refuses new requests): while
/// paused, every running job stops at its next await and none is started; unpaused, they resume.
#[update]
fn factory_set_paused(paused: bool) -> FactoryResult<bool> {
    admin()?;
    Ok(service::set_paused(paused))
}

#[query]
fn factory_paused() -> FactoryResult<bool> {
    admin()?;
    Ok(repo::state().is_paused())
}

#[query]
fn factory_config() -> FactoryResult<FactoryConfigView> {
    admin()?;
    Ok(service::config_view())
}

#[update]
fn factory_configure(update: FactoryConfigUpdate) -> FactoryResult<FactoryConfigView> {
    admin()?;
    service::configure(update, time())
}

#[query]
fn factory_stats() -> FactoryResult<FactoryStats> {
    admin()?;
    Ok(service::stats())
}

#[query]
fn factory_jobs(req: JobPageRequest) -> FactoryResult<JobPage> {
    admin()?;
    service::jobs(req)
}

#[query]
fn registry_list(req: RegistryPageRequest) -> FactoryResult<RegistryPage> {
    admin()?;
    service::registry(req)
}

#[query]
fn registry_by_user(user: Principal) -> FactoryResult<Vec<RegistryEntry>> {
    admin()?;
    Ok(service::registry_by_user(user))
}

#[query]
fn reserve_status() -> FactoryResult<ReserveStatus> {
    admin()?;
    Ok(service::reserve_status())
}

/// Adds the attached cycles to the reserve.
#[update]
fn reserve_top_up() -> FactoryResult<ReserveStatus> {
    admin()?;
    service::top_up(time())
}

/// Moves `amount` of the canister's own balance into the reserve.
#[update]
fn reserve_allocate(amount: Nat) -> FactoryResult<ReserveStatus> {
    admin()?;
    service::allocate(amount, time())
}

#[query]
fn reserve_alerts() -> FactoryResult<Vec<ReserveAlert>> {
    admin()?;
    Ok(service::alerts())
}

#[update]
fn admin_retry_job(user: Principal) -> FactoryResult<CreationStatus> {
    admin()?;
    service::retry(user, time(), true)
}

/// Fails an active job now (its task stops at its next await) and unlocks the capsule unless the
/// import was finalized.
#[update]
fn admin_cancel_job(user: Principal) -> FactoryResult<CreationStatus> {
    admin()?;
    service::cancel(msg_caller(), user, time())
}

#[update]
async fn admin_cleanup_job(user: Principal) -> FactoryResult<()> {
    admin()?;
    cleanup::cleanup(&ic::IcRuntime, user).await
}

#[query]
fn admission_config() -> FactoryResult<AdmissionConfig> {
    admin()?;
    Ok(admission::config())
}

#[update]
fn admission_configure(update: AdmissionUpdate) -> FactoryResult<AdmissionConfig> {
    admin()?;
    admission::configure(update)
}

/// Puts principals on the allowlist (consulted when `allowlist_only` is on).
#[update]
fn admission_allow(principals: Vec<Principal>) -> FactoryResult<()> {
    admin()?;
    admission::set_allowed(principals, true)
}

#[update]
fn admission_disallow(principals: Vec<Principal>) -> FactoryResult<()> {
    admin()?;
    admission::set_allowed(principals, false)
}

/// Allows a user one more personal canister than `max_canisters_per_user`.
#[update]
fn admission_grant(user: Principal) -> FactoryResult<UserAdmission> {
    admin()?;
    admission::grant(user)
}

#[query]
fn admission_user(user: Principal) -> FactoryResult<UserAdmission> {
    admin()?;
    Ok(admission::user(user))
}

#[update]
fn personal_wasm_put_chunk(index: u32, bytes: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    admin()?;
    service::wasm_put_chunk(index, bytes)
}

#[update]
fn personal_wasm_commit(sha256: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    admin()?;
    service::wasm_commit(sha256)
}

#[query]
fn personal_wasm_info() -> FactoryResult<WasmInfo> {
    admin()?;
    Ok(service::wasm_info())
}

// ---- failpoints (feature `failpoints`) ------------------------------------------------------------

#[cfg(feature = "failpoints")]
#[update]
fn failpoint_arm(req: FailpointArm) -> FactoryResult<()> {
    admin()?;
    failpoints::arm(req)
}

#[cfg(feature = "failpoints")]
#[update]
fn failpoints_clear() -> FactoryResult<()> {
    admin()?;
    failpoints::clear();
    Ok(())
}

#[cfg(feature = "failpoints")]
#[query]
fn failpoints_list() -> FactoryResult<Vec<String>> {
    admin()?;
    Ok(failpoints::list())
}

/// Commits a failpoint's disarm before it traps; only the canister itself may call it.
#[cfg(feature = "failpoints")]
#[update]
fn failpoint_commit() {
    if msg_caller() != ic_cdk::api::canister_self() {
        ic_cdk::trap("failpoint_commit is internal");
    }
}
