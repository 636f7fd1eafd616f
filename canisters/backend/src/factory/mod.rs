//! The factory's endpoints (feature `personal_canister_creation`): thin wrappers that take the caller
//! and the time from the IC and hand them to `service`.

pub mod admission;
pub mod api;
pub mod cleanup;
pub mod control;
pub mod driver;
pub mod failpoints;
pub mod funding;
pub(crate) mod ic;
pub mod repo;
pub mod runtime;
pub mod service;
pub mod timers;

#[cfg(test)]
mod tests;

use crate::admin::Role;
use api::*;
use candid::{Nat, Principal};
use ic_cdk::api::{msg_caller, time};
use ic_cdk::{query, update};

/// The factory's admin updates and the role each needs: the methods check it (`require`), and
/// `inspect_message` drops other callers' ingress to them early. Every admin may read the admin views.
pub const ADMIN_METHODS: &[(&str, Role)] = &[
    ("factory_set_enabled", Role::Operator),
    ("factory_set_paused", Role::Operator),
    ("factory_configure", Role::Operator),
    ("reserve_top_up", Role::Operator),
    ("reserve_allocate", Role::Operator),
    ("admin_retry_job", Role::Operator),
    ("admin_cleanup_job", Role::Operator),
    ("admin_cancel_job", Role::Operator),
    ("admission_configure", Role::Operator),
    ("admission_allow", Role::Operator),
    ("admission_disallow", Role::Operator),
    ("admission_grant", Role::Operator),
    ("personal_wasm_put_chunk", Role::Publisher),
    ("personal_wasm_commit", Role::Publisher),
    ("failpoint_arm", Role::Operator),
    ("failpoints_clear", Role::Operator),
];

/// A line in the canister log (nothing off the IC, where the driver runs under unit tests).
pub(crate) fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    ic_cdk::println!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    let _ = line;
}

/// Any admin: the admin views.
fn admin() -> FactoryResult<()> {
    service::require_admin(msg_caller())
}

/// An admin with the role `ADMIN_METHODS` names for `method`.
fn require(method: &str) -> FactoryResult<()> {
    let role = ADMIN_METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| ic_cdk::trap(format!("{method} is not in ADMIN_METHODS")));
    service::require_role(msg_caller(), role)
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
    require("factory_set_enabled")?;
    service::set_enabled(enabled);
    Ok(service::config_view())
}

/// The emergency brake (distinct from `factory_set_enabled`, which only refuses new requests): while
/// paused, every running job stops at its next await and none is started; unpaused, they resume.
#[update]
fn factory_set_paused(paused: bool) -> FactoryResult<bool> {
    require("factory_set_paused")?;
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
    require("factory_configure")?;
    service::configure(&ic::IcRuntime, update)
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
    Ok(service::reserve_status(&ic::IcRuntime))
}

/// Adds the attached cycles to the reserve.
#[update]
fn reserve_top_up() -> FactoryResult<ReserveStatus> {
    require("reserve_top_up")?;
    service::top_up(&ic::IcRuntime)
}

/// Moves `amount` of the canister's own balance into the reserve.
#[update]
fn reserve_allocate(amount: Nat) -> FactoryResult<ReserveStatus> {
    require("reserve_allocate")?;
    service::allocate(&ic::IcRuntime, amount)
}

#[query]
fn reserve_alerts() -> FactoryResult<Vec<ReserveAlert>> {
    admin()?;
    Ok(service::alerts())
}

#[update]
fn admin_retry_job(user: Principal) -> FactoryResult<CreationStatus> {
    require("admin_retry_job")?;
    service::retry(user, time(), true)
}

/// Fails an active job now (its task stops at its next await) and unlocks the capsule unless the
/// import was finalized.
#[update]
fn admin_cancel_job(user: Principal) -> FactoryResult<CreationStatus> {
    require("admin_cancel_job")?;
    service::cancel(msg_caller(), user, time())
}

#[update]
async fn admin_cleanup_job(user: Principal) -> FactoryResult<()> {
    require("admin_cleanup_job")?;
    cleanup::cleanup(&ic::IcRuntime, user).await
}

#[query]
fn admission_config() -> FactoryResult<AdmissionConfig> {
    admin()?;
    Ok(admission::config())
}

#[update]
fn admission_configure(update: AdmissionUpdate) -> FactoryResult<AdmissionConfig> {
    require("admission_configure")?;
    admission::configure(update)
}

/// Puts principals on the allowlist (consulted when `allowlist_only` is on).
#[update]
fn admission_allow(principals: Vec<Principal>) -> FactoryResult<()> {
    require("admission_allow")?;
    admission::set_allowed(principals, true)
}

#[update]
fn admission_disallow(principals: Vec<Principal>) -> FactoryResult<()> {
    require("admission_disallow")?;
    admission::set_allowed(principals, false)
}

/// Allows a user one more personal canister than `max_canisters_per_user`.
#[update]
fn admission_grant(user: Principal) -> FactoryResult<UserAdmission> {
    require("admission_grant")?;
    admission::grant(user)
}

#[query]
fn admission_user(user: Principal) -> FactoryResult<UserAdmission> {
    admin()?;
    Ok(admission::user(user))
}

#[update]
fn personal_wasm_put_chunk(index: u32, bytes: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    require("personal_wasm_put_chunk")?;
    service::wasm_put_chunk(index, bytes)
}

#[update]
fn personal_wasm_commit(sha256: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    require("personal_wasm_commit")?;
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
    require("failpoint_arm")?;
    failpoints::arm(req)
}

#[cfg(feature = "failpoints")]
#[update]
fn failpoints_clear() -> FactoryResult<()> {
    require("failpoints_clear")?;
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
