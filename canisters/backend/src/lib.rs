//! The shared backend canister: every user's capsule, and (feature `personal_canister_creation`) the
//! factory that moves a capsule into the user's own personal canister.

use candid::{CandidType, Deserialize, Principal};

mod admin;

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
    for a in arg.admins {
        admin::add(a);
    }
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<BackendInit>) {
    for a in arg.map(|a| a.admins).unwrap_or_default() {
        admin::add(a);
    }
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
