//! An admin's cleanup of a failed job: delete its canister (or find it already gone, or no longer the
//! factory's), forget the job and unlock the capsule, so the user can start over. The job is marked
//! `cleaning` before the first await, so no retry or cancel can start under it, and re-read after.

use super::api::*;
use super::repo;
use super::runtime::{CallErr, Runtime, DESTINATION_INVALID};
use candid::Principal;

/// Longer than the three bounded-wait calls a cleanup makes (stop, delete, canister_info).
const CLEANUP_NANOS: u64 = 20 * 60 * 1_000_000_000;

fn error(kind: FactoryErrorKind, message: impl Into<String>) -> FactoryError {
    FactoryError::new(kind, message)
}

/// What became of the job's canister.
#[derive(Debug, PartialEq, Eq)]
enum Gone {
    /// Deleted now, or found deleted.
    Deleted,
    /// The factory is no longer a controller: the canister is left to whoever controls it.
    Released,
}

pub async fn cleanup<R: Runtime>(rt: &R, user: Principal) -> FactoryResult<()> {
    let Some(job) = repo::job(user) else {
        return Err(error(FactoryErrorKind::JobNotFound, "no job for this user"));
    };
    if job.state != CreationState::Failed {
        return Err(error(
            FactoryErrorKind::JobNotFailed { state: job.state },
            "only failed jobs can be cleaned up",
        ));
    }
    if repo::lease(user).is_cleaning(rt.now()) {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "a cleanup of this job is already under way",
        ));
    }
    if super::driver::create_in_flight(user) {
        return Err(error(
            FactoryErrorKind::CreateInFlight,
            "the factory is waiting for create_canister on this job; try again in a moment",
        ));
    }
    let epoch = repo::take_over(user);
    repo::update_lease(user, |l| l.cleaning_until = rt.now() + CLEANUP_NANOS);
    let outcome = match job.canister_id {
        Some(id) => delete(rt, id).await.map(Some),
        None => Ok(None),
    };
    // Nothing else may have touched the job (retries refuse a cleaning job), but check what is stored.
    let Some(job) = repo::job(user).filter(|_| repo::lease(user).epoch == epoch) else {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "the job changed during the cleanup",
        ));
    };
    let gone = match outcome {
        Ok(gone) => gone,
        Err(e) => {
            // The canister is still there and still the factory's: the job stays, retryable again.
            repo::update_lease(user, |l| l.cleaning_until = 0);
            return Err(e.into());
        }
    };
    if let (Some(id), Some(gone)) = (job.canister_id, gone) {
        if gone == Gone::Deleted {
            super::admission::record_deleted(user);
        }
        if let Some(mut entry) = repo::registry_entry(id) {
            entry.deleted = gone == Gone::Deleted;
            entry.status = CreationState::Failed;
            entry.updated_at = rt.now();
            repo::save_entry(entry);
        }
    }
    repo::remove_job(user);
    repo::update_lease(user, |l| l.cleaning_until = 0);
    // A job that failed after its import was finalized kept the capsule locked.
    if capsule::service::status_of(user) == capsule::CapsuleStatus::Locked {
        capsule::service::set_status(user, capsule::CapsuleStatus::Active);
    }
    Ok(())
}

/// Stops and deletes the canister. A canister that no longer exists counts as deleted; one the factory
/// no longer controls (the management canister's `canister_info` says so) is released.
async fn delete<R: Runtime>(rt: &R, id: Principal) -> Result<Gone, CallErr> {
    let result = match rt.stop_canister(id).await {
        Ok(()) => rt.delete_canister(id).await,
        Err(e) => Err(e),
    };
    let Err(e) = result else {
        return Ok(Gone::Deleted);
    };
    match rt.canister_info(id).await {
        Err(info) if info.code == DESTINATION_INVALID => Ok(Gone::Deleted),
        Ok(facts) if !facts.controllers.contains(&rt.factory()) => Ok(Gone::Released),
        _ => Err(e),
    }
}
