//! The shared backend canister: every user's capsule, and (feature `personal_canister_creation`) the
//! factory that moves a capsule into the user's own personal canister.

#[cfg(feature = "personal_canister_creation")]
use candid::Nat;
use candid::{CandidType, Deserialize, Principal};

mod admin;
#[cfg(feature = "personal_canister_creation")]
pub mod factory;
// The factory's types must be in scope here for `export_candid!`.
#[cfg(feature = "personal_canister_creation")]
use factory::api::*;

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct BackendInit {
    /// The backend's admins, besides its controllers.
    pub admins: Vec<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    AnonymousCaller,
    NotAdmin,
    /// Removing the last admin would leave only controllers in charge; refused to avoid lock-out.
    LastAdmin,
    /// The anonymous principal can hold no role (anyone can call as it).
    AnonymousAdmin,
}

fn require_admin() -> Result<Principal, AdminError> {
    let caller = ic_cdk::api::msg_caller();
    if caller == Principal::anonymous() {
        return Err(AdminError::AnonymousCaller);
    }
    if !admin::is_admin(caller) {
        return Err(AdminError::NotAdmin);
    }
    Ok(caller)
}

#[ic_cdk::init]
fn init(arg: BackendInit) {
    for a in arg
        .admins
        .into_iter()
        .filter(|a| *a != Principal::anonymous())
    {
        admin::add(a);
    }
    #[cfg(feature = "personal_canister_creation")]
    {
        // An empty reserve is already low: say so from the start.
        factory::service::check_reserve_alert(ic_cdk::api::time());
        factory::timers::start();
    }
}

#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    #[cfg(feature = "personal_canister_creation")]
    factory::timers::guard_upgrade();
}

/// Everything lives in stable structures; an upgrade only adds the admins it names and re-arms the
/// factory's driver, so a migration in flight resumes from its persisted facts.
#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<BackendInit>) {
    let admins = arg.map(|a| a.admins).unwrap_or_default();
    for a in admins.into_iter().filter(|a| *a != Principal::anonymous()) {
        admin::add(a);
    }
    #[cfg(feature = "personal_canister_creation")]
    factory::timers::start();
}

/// Drops ingress that would be refused anyway before it costs the canister anything: the anonymous
/// principal's updates, and admin methods from non-admins. The methods check again themselves.
#[ic_cdk::inspect_message]
fn inspect_message() {
    let caller = ic_cdk::api::msg_caller();
    if caller == Principal::anonymous() {
        return;
    }
    let method = ic_cdk::api::msg_method_name();
    #[cfg(feature = "personal_canister_creation")]
    if factory::ADMIN_METHODS.contains(&method.as_str()) && !admin::is_admin(caller) {
        return;
    }
    if ["admin_add", "admin_remove"].contains(&method.as_str()) && !admin::is_admin(caller) {
        return;
    }
    ic_cdk::api::accept_message();
}

capsule::capsule_endpoints!();

#[ic_cdk::query]
fn admins_list() -> Result<Vec<Principal>, AdminError> {
    require_admin()?;
    Ok(admin::list())
}

#[ic_cdk::update]
fn admin_add(p: Principal) -> Result<(), AdminError> {
    require_admin()?;
    if p == Principal::anonymous() {
        return Err(AdminError::AnonymousAdmin);
    }
    admin::add(p);
    Ok(())
}

#[ic_cdk::update]
fn admin_remove(p: Principal) -> Result<(), AdminError> {
    require_admin()?;
    if admin::list() == vec![p] {
        return Err(AdminError::LastAdmin);
    }
    admin::remove(p);
    Ok(())
}

ic_cdk::export_candid!();

/// The Candid service this code exports (the checked-in `backend.did` must equal it).
pub fn candid_interface() -> String {
    __export_service()
}
