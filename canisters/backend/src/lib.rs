//! The shared backend canister: every user's capsule, and (feature `personal_canister_creation`) the
//! factory that moves a capsule into the user's own personal canister.

use admin::{AdminRoles, Role};
#[cfg(feature = "personal_canister_creation")]
use candid::Nat;
use candid::{CandidType, Deserialize, Principal};

pub mod admin;
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
    /// The caller is an admin without the role this method needs.
    RoleRequired {
        role: Role,
    },
    /// Removing the last admin manager would leave only controllers in charge; refused to avoid lock-out.
    LastAdmin,
    /// The anonymous principal can hold no role (anyone can call as it).
    AnonymousAdmin,
    /// A storage budget above the memory manager's limit would not keep writes clear of it.
    BudgetAboveLimit {
        limit_bytes: u64,
    },
}

/// The backend's own admin updates and the role each needs (the factory has its list);
/// `inspect_message` drops other callers' ingress to them early.
const ADMIN_METHODS: &[(&str, Role)] = &[
    ("admin_add", Role::AdminManager),
    ("admin_set_roles", Role::AdminManager),
    ("admin_remove", Role::AdminManager),
    ("storage_set_budget", Role::Operator),
];

/// The caller, if an admin (any role: the admin views).
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

/// The caller, if an admin holding `role`.
fn require_role(role: Role) -> Result<Principal, AdminError> {
    let caller = require_admin()?;
    if !admin::has(caller, role) {
        return Err(AdminError::RoleRequired { role });
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
    capsule_start_timers();
    #[cfg(feature = "personal_canister_creation")]
    {
        // An empty reserve is already low: say so from the start.
        factory::service::check_reserve_alert(&factory::ic::IcRuntime);
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
    capsule_start_timers();
    #[cfg(feature = "personal_canister_creation")]
    factory::timers::start();
}

/// Drops ingress that would be refused anyway before it costs the canister anything: the anonymous
/// principal's updates, and admin updates from callers who are no admin. The methods check again.
#[ic_cdk::inspect_message]
fn inspect_message() {
    let caller = ic_cdk::api::msg_caller();
    if caller == Principal::anonymous() {
        return;
    }
    let method = ic_cdk::api::msg_method_name();
    #[cfg(feature = "personal_canister_creation")]
    let factory_methods = factory::ADMIN_METHODS;
    #[cfg(not(feature = "personal_canister_creation"))]
    let factory_methods: &[(&str, Role)] = &[];
    let admin_method = ADMIN_METHODS
        .iter()
        .chain(factory_methods)
        .any(|(m, _)| *m == method);
    // Admins without the method's role get through, to be told which role they lack.
    if admin_method && !admin::is_admin(caller) {
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

/// Every admin with their roles (controllers, who hold every role, are not listed).
#[ic_cdk::query]
fn admin_roles() -> Result<Vec<AdminRoles>, AdminError> {
    require_admin()?;
    Ok(admin::roles())
}

/// Makes `p` an admin with every role.
#[ic_cdk::update]
fn admin_add(p: Principal) -> Result<(), AdminError> {
    admin_set_roles(p, vec![Role::Operator, Role::Publisher, Role::AdminManager])
}

/// Sets `p`'s roles (none: `p` is no longer an admin). The last admin manager keeps that role.
#[ic_cdk::update]
fn admin_set_roles(p: Principal, roles: Vec<Role>) -> Result<(), AdminError> {
    require_role(Role::AdminManager)?;
    if p == Principal::anonymous() {
        return Err(AdminError::AnonymousAdmin);
    }
    if !roles.contains(&Role::AdminManager) && admin::last_manager(p) {
        return Err(AdminError::LastAdmin);
    }
    admin::set(p, &roles);
    Ok(())
}

#[ic_cdk::update]
fn admin_remove(p: Principal) -> Result<(), AdminError> {
    admin_set_roles(p, vec![])
}

/// The capsule store's use of stable memory against its budget and limit (admins).
#[ic_cdk::query]
fn storage_status() -> Result<capsule::StorageStatus, AdminError> {
    require_admin()?;
    Ok(capsule::service::storage_status())
}

/// Sets the stable memory past which users' writes are refused with `StorageFull` (admins).
#[ic_cdk::update]
fn storage_set_budget(bytes: u64) -> Result<(), AdminError> {
    require_role(Role::Operator)?;
    let limit_bytes = capsule::limits::STORAGE_LIMIT;
    if bytes > limit_bytes {
        return Err(AdminError::BudgetAboveLimit { limit_bytes });
    }
    capsule::service::set_storage_budget(bytes);
    Ok(())
}

ic_cdk::export_candid!();

/// The Candid service this code exports (the checked-in `backend.did` must equal it).
pub fn candid_interface() -> String {
    __export_service()
}
