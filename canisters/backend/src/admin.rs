//! Who may administer the backend: the principals named in the init argument (and added since), plus
//! the canister's controllers. Nobody becomes an admin by calling first.

use candid::Principal;
use capsule::store::{memory, Region, VMem};
use ic_stable_structures::StableBTreeMap;
use std::cell::RefCell;

thread_local! {
    static ADMINS: RefCell<StableBTreeMap<Principal, (), VMem>> = RefCell::new(StableBTreeMap::init(memory(Region::Admins)));
}

pub fn add(p: Principal) {
    ADMINS.with(|a| a.borrow_mut().insert(p, ()));
}

pub fn remove(p: Principal) -> bool {
    ADMINS.with(|a| a.borrow_mut().remove(&p).is_some())
}

pub fn list() -> Vec<Principal> {
    ADMINS.with(|a| a.borrow().keys().collect())
}

pub fn is_admin(p: Principal) -> bool {
    p != Principal::anonymous()
        && (ADMINS.with(|a| a.borrow().contains_key(&p)) || ic_cdk::api::is_controller(&p))
}
