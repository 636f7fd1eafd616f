//! Who may administer the backend, and what: each admin holds roles, given by the init argument (all of
//! them) or by an admin manager since. The canister's controllers hold every role: their recovery path.
//! Nobody becomes an admin by calling first, and the anonymous principal holds nothing.

use candid::{CandidType, Deserialize, Principal};
use capsule::store::{memory, Region, VMem};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{StableBTreeMap, Storable};
use std::borrow::Cow;
use std::cell::RefCell;

/// What an admin may do. Every admin may read the admin views.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Runs the service: the factory's switches, brake and configuration, the reserve, admission, job
    /// retries, cancels and cleanups, the storage budget.
    Operator,
    /// Uploads and activates the personal canister WASM that every future user canister runs.
    Publisher,
    /// Adds and removes admins and sets their roles.
    AdminManager,
}

const ALL: [Role; 3] = [Role::Operator, Role::Publisher, Role::AdminManager];

/// A set of roles, stored as one byte. Entries written before roles existed are empty and mean all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Roles(u8);

impl Roles {
    fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |bits, r| bits | bit(*r)))
    }
    fn list(self) -> Vec<Role> {
        ALL.into_iter().filter(|r| self.0 & bit(*r) != 0).collect()
    }
}

fn bit(role: Role) -> u8 {
    1 << role as u8
}

impl Storable for Roles {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(vec![self.0])
    }
    fn into_bytes(self) -> Vec<u8> {
        vec![self.0]
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        match bytes.first() {
            Some(b) => Roles(*b),
            None => Roles::of(&ALL),
        }
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: 1,
        is_fixed_size: false,
    };
}

/// An admin and their roles, as `admin_roles` lists them.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdminRoles {
    pub principal: Principal,
    pub roles: Vec<Role>,
}

thread_local! {
    static ADMINS: RefCell<StableBTreeMap<Principal, Roles, VMem>> = RefCell::new(StableBTreeMap::init(memory(Region::Admins)));
}

/// Gives `p` every role.
pub fn add(p: Principal) {
    set(p, &ALL);
}

/// Sets `p`'s roles; none removes `p`.
pub fn set(p: Principal, roles: &[Role]) {
    ADMINS.with(|a| {
        let mut a = a.borrow_mut();
        if roles.is_empty() {
            a.remove(&p);
        } else {
            a.insert(p, Roles::of(roles));
        }
    });
}

pub fn list() -> Vec<Principal> {
    ADMINS.with(|a| a.borrow().keys().collect())
}

pub fn roles() -> Vec<AdminRoles> {
    ADMINS.with(|a| {
        a.borrow()
            .iter()
            .map(|e| AdminRoles {
                principal: *e.key(),
                roles: e.value().list(),
            })
            .collect()
    })
}

/// Whether `p` is the only admin holding `AdminManager`: that role cannot be taken from them, or the
/// admins could only be managed by the controllers.
pub fn last_manager(p: Principal) -> bool {
    let manager = |r: &Roles| r.0 & bit(Role::AdminManager) != 0;
    ADMINS.with(|a| {
        let a = a.borrow();
        a.get(&p).is_some_and(|r| manager(&r))
            && !a.iter().any(|e| *e.key() != p && manager(&e.value()))
    })
}

/// Whether `p` holds `role` (controllers hold every role).
pub fn has(p: Principal, role: Role) -> bool {
    p != Principal::anonymous()
        && (ADMINS
            .with(|a| a.borrow().get(&p))
            .is_some_and(|r| r.0 & bit(role) != 0)
            || is_controller(p))
}

/// Whether `p` holds any role.
pub fn is_admin(p: Principal) -> bool {
    p != Principal::anonymous()
        && (ADMINS.with(|a| a.borrow().contains_key(&p)) || is_controller(p))
}

#[cfg(target_arch = "wasm32")]
fn is_controller(p: Principal) -> bool {
    ic_cdk::api::is_controller(&p)
}

/// Off the IC (unit tests) nobody is a controller.
#[cfg(not(target_arch = "wasm32"))]
fn is_controller(_p: Principal) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n; 29])
    }

    #[test]
    fn roles_are_what_was_set_and_old_entries_mean_all() {
        set(p(1), &[Role::Publisher]);
        assert!(has(p(1), Role::Publisher) && !has(p(1), Role::Operator));
        assert!(is_admin(p(1)));
        assert_eq!(Roles::from_bytes(Cow::Borrowed(&[])).list(), ALL.to_vec());
        add(p(2));
        assert_eq!(
            roles(),
            vec![
                AdminRoles {
                    principal: p(1),
                    roles: vec![Role::Publisher]
                },
                AdminRoles {
                    principal: p(2),
                    roles: ALL.to_vec()
                }
            ]
        );
        assert!(!last_manager(p(1)) && last_manager(p(2)));
        set(p(1), &[]);
        assert!(!is_admin(p(1)));
        assert!(!has(Principal::anonymous(), Role::Operator));
    }
}
