//! Who may get a personal canister, and how fast. Principals cost nothing, and every creation hands
//! out cycles from the reserve, so each request is admitted against limits before anything is spent:
//! an optional allowlist, canisters per user (a user who has or had one needs an admin's grant for
//! another), a global hourly rate, a bounded queue of active jobs, and a cap on a user's own retries.

use super::api::*;
use candid::{CandidType, Deserialize, Principal};
use capsule::candid_storable;
use capsule::store::{memory, Region, VMem};
use ic_stable_structures::{Cell, StableBTreeMap};
use std::cell::RefCell;

const HOUR_NANOS: u64 = 3_600 * 1_000_000_000;
/// Principals one allowlist call may name.
const ALLOWLIST_BATCH_MAX: usize = 100;

candid_storable!(UserAdmission);

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
struct AdmissionState {
    config: AdmissionConfig,
    /// The clock hour (time / 1 h) the counter below belongs to.
    hour: u64,
    admitted_this_hour: u32,
}
candid_storable!(AdmissionState);

struct Store {
    state: Cell<AdmissionState, VMem>,
    users: StableBTreeMap<Principal, UserAdmission, VMem>,
}

thread_local! {
    static STORE: RefCell<Store> = RefCell::new(Store {
        state: Cell::init(memory(Region::FactoryAdmission), AdmissionState::default()),
        users: StableBTreeMap::init(memory(Region::FactoryUsers)),
    });
}

fn with<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    STORE.with(|s| f(&mut s.borrow_mut()))
}

fn error(kind: FactoryErrorKind, message: impl Into<String>) -> FactoryError {
    FactoryError::new(kind, message)
}

pub fn config() -> AdmissionConfig {
    with(|s| s.state.get().config.clone())
}

pub fn user(p: Principal) -> UserAdmission {
    with(|s| s.users.get(&p).unwrap_or_default())
}

fn update_user(p: Principal, f: impl FnOnce(&mut UserAdmission)) -> UserAdmission {
    with(|s| {
        let mut u = s.users.get(&p).unwrap_or_default();
        f(&mut u);
        s.users.insert(p, u.clone());
        u
    })
}

/// Admits a new request of `caller` (who has no job), counting it against the hourly rate; refuses
/// with a typed error before anything is spent.
pub fn admit(caller: Principal, now: u64, active_jobs: u64) -> FactoryResult<()> {
    let cfg = config();
    let u = user(caller);
    if cfg.allowlist_only && !u.allowlisted {
        return Err(error(
            FactoryErrorKind::NotAllowlisted,
            "personal canisters are open to allowlisted users only for now; ask an admin",
        ));
    }
    let limit = cfg.max_canisters_per_user.saturating_add(u.granted);
    if u.canisters >= limit {
        return Err(error(
            FactoryErrorKind::CanisterLimitReached { limit },
            format!("you already have or had {} personal canister(s), the limit; an admin may grant another", u.canisters),
        ));
    }
    if active_jobs >= cfg.max_active_jobs as u64 {
        return Err(error(
            FactoryErrorKind::QueueFull {
                limit: cfg.max_active_jobs,
            },
            "the factory is busy with as many migrations as it takes at once; try again later",
        ));
    }
    with(|s| {
        let mut st = s.state.get().clone();
        let hour = now / HOUR_NANOS;
        if st.hour != hour {
            st.hour = hour;
            st.admitted_this_hour = 0;
        }
        if st.admitted_this_hour >= cfg.creations_per_hour {
            let retry_after_secs = ((hour + 1) * HOUR_NANOS - now).div_ceil(1_000_000_000);
            return Err(error(
                FactoryErrorKind::RateLimited {
                    limit_per_hour: cfg.creations_per_hour,
                    retry_after_secs,
                },
                format!("the factory admits {} requests an hour and has reached it; try again in {retry_after_secs} s", cfg.creations_per_hour),
            ));
        }
        st.admitted_this_hour += 1;
        s.state.set(st);
        Ok(())
    })
}

/// Refuses a user's own retry beyond the cap; an admin's retry is always admitted.
pub fn check_retry(retries_so_far: u32, by_admin: bool) -> FactoryResult<()> {
    let limit = config().max_user_retries;
    if !by_admin && retries_so_far >= limit {
        return Err(error(
            FactoryErrorKind::RetryLimitReached { limit },
            format!("this creation was retried {retries_so_far} times, the limit for users; an admin may retry it"),
        ));
    }
    Ok(())
}

/// A canister was created for `user`.
pub fn record_canister(user: Principal) {
    update_user(user, |u| u.canisters = u.canisters.saturating_add(1));
}

/// A cleanup deleted one of `user`'s canisters: it no longer counts against the limit.
pub fn record_deleted(user: Principal) {
    update_user(user, |u| u.canisters = u.canisters.saturating_sub(1));
}

// ---- admins ---------------------------------------------------------------------------------------

pub fn configure(update: AdmissionUpdate) -> FactoryResult<AdmissionConfig> {
    let bounds = [
        (
            "max_canisters_per_user",
            update.max_canisters_per_user,
            1,
            100,
        ),
        ("creations_per_hour", update.creations_per_hour, 1, 10_000),
        ("max_active_jobs", update.max_active_jobs, 1, 100_000),
        ("max_user_retries", update.max_user_retries, 0, 100),
    ];
    for (field, value, min, max) in bounds {
        if value.is_some_and(|v| v < min || v > max) {
            return Err(FactoryError::invalid(
                field,
                format!("must be between {min} and {max}"),
            ));
        }
    }
    with(|s| {
        let mut st = s.state.get().clone();
        let c = &mut st.config;
        c.allowlist_only = update.allowlist_only.unwrap_or(c.allowlist_only);
        c.max_canisters_per_user = update
            .max_canisters_per_user
            .unwrap_or(c.max_canisters_per_user);
        c.creations_per_hour = update.creations_per_hour.unwrap_or(c.creations_per_hour);
        c.max_active_jobs = update.max_active_jobs.unwrap_or(c.max_active_jobs);
        c.max_user_retries = update.max_user_retries.unwrap_or(c.max_user_retries);
        s.state.set(st);
    });
    Ok(config())
}

/// Puts principals on the allowlist (`allowed`) or takes them off.
pub fn set_allowed(principals: Vec<Principal>, allowed: bool) -> FactoryResult<()> {
    if principals.len() > ALLOWLIST_BATCH_MAX {
        return Err(FactoryError::invalid(
            "principals",
            format!("at most {ALLOWLIST_BATCH_MAX} per call"),
        ));
    }
    if principals.contains(&Principal::anonymous()) {
        return Err(FactoryError::invalid(
            "principals",
            "the anonymous principal cannot be allowlisted",
        ));
    }
    for p in principals {
        update_user(p, |u| u.allowlisted = allowed);
    }
    Ok(())
}

/// Allows `user` one more canister than the limit.
pub fn grant(user: Principal) -> FactoryResult<UserAdmission> {
    if user == Principal::anonymous() {
        return Err(FactoryError::invalid(
            "user",
            "the anonymous principal has no capsule",
        ));
    }
    Ok(update_user(user, |u| {
        u.granted = u.granted.saturating_add(1)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = HOUR_NANOS;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n; 29])
    }

    fn kind(r: FactoryResult<()>) -> FactoryErrorKind {
        r.unwrap_err().kind
    }

    fn set(update: AdmissionUpdate) {
        configure(update).unwrap();
    }

    #[test]
    fn the_allowlist_admits_only_those_on_it() {
        set(AdmissionUpdate {
            allowlist_only: Some(true),
            ..Default::default()
        });
        assert_eq!(kind(admit(p(1), HOUR, 0)), FactoryErrorKind::NotAllowlisted);
        set_allowed(vec![p(1)], true).unwrap();
        admit(p(1), HOUR, 0).unwrap();
        set_allowed(vec![p(1)], false).unwrap();
        assert_eq!(kind(admit(p(1), HOUR, 0)), FactoryErrorKind::NotAllowlisted);
        assert!(set_allowed(vec![Principal::anonymous()], true).is_err());
        assert!(set_allowed(vec![p(2); 101], true).is_err());
    }

    #[test]
    fn a_user_with_a_canister_needs_a_grant_for_another() {
        record_canister(p(1));
        assert_eq!(
            kind(admit(p(1), HOUR, 0)),
            FactoryErrorKind::CanisterLimitReached { limit: 1 }
        );
        grant(p(1)).unwrap();
        admit(p(1), HOUR, 0).unwrap();
        record_canister(p(1));
        assert_eq!(
            kind(admit(p(1), HOUR, 0)),
            FactoryErrorKind::CanisterLimitReached { limit: 2 }
        );
        record_deleted(p(1));
        admit(p(1), HOUR, 0).unwrap();
    }

    #[test]
    fn the_hourly_rate_refuses_then_the_next_hour_admits() {
        set(AdmissionUpdate {
            creations_per_hour: Some(3),
            ..Default::default()
        });
        let start = 10 * HOUR + HOUR / 2;
        for n in 0..3 {
            admit(p(n), start, 0).unwrap();
        }
        assert_eq!(
            kind(admit(p(9), start, 0)),
            FactoryErrorKind::RateLimited {
                limit_per_hour: 3,
                retry_after_secs: 1_800
            }
        );
        admit(p(9), 11 * HOUR, 0).unwrap();
    }

    #[test]
    fn a_full_queue_refuses_without_counting_against_the_rate() {
        set(AdmissionUpdate {
            max_active_jobs: Some(2),
            creations_per_hour: Some(1),
            ..Default::default()
        });
        assert_eq!(
            kind(admit(p(1), HOUR, 2)),
            FactoryErrorKind::QueueFull { limit: 2 }
        );
        admit(p(1), HOUR, 1).unwrap();
    }

    #[test]
    fn user_retries_stop_at_the_cap_and_admins_go_on() {
        check_retry(2, false).unwrap();
        assert_eq!(
            kind(check_retry(3, false)),
            FactoryErrorKind::RetryLimitReached { limit: 3 }
        );
        check_retry(30, true).unwrap();
    }

    #[test]
    fn limits_are_bounded() {
        for update in [
            AdmissionUpdate {
                max_canisters_per_user: Some(0),
                ..Default::default()
            },
            AdmissionUpdate {
                creations_per_hour: Some(10_001),
                ..Default::default()
            },
            AdmissionUpdate {
                max_active_jobs: Some(0),
                ..Default::default()
            },
            AdmissionUpdate {
                max_user_retries: Some(101),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                configure(update),
                Err(FactoryError {
                    kind: FactoryErrorKind::InvalidConfig { .. },
                    ..
                })
            ));
        }
        assert_eq!(config(), AdmissionConfig::default());
    }
}
