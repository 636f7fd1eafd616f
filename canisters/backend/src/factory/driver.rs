//! Walks jobs through their stages. A tick leases runnable jobs to tasks (`lease_runnable`); a task
//! (`run`) owns its job through the epoch of its lease and acts only while that epoch is stored: after
//! every await it checks the lease and the job's state and stops if anyone (a newer task, a retry, a
//! cancel, a cleanup) moved them, and every save is a compare-and-swap on the epoch that renews the
//! lease. While the epoch is the task's nobody else writes the job, so its copy is the stored one. Each step is
//! "once": it reads the facts persisted so far, acts, and persists what it learned before anything
//! else, so a retry, a resumed task or an upgrade never repeats a side effect. What the user's
//! co-controlled canister is running is confirmed through the management canister (`control`), never
//! taken from the canister itself, whose replies are decoded with quotas.

mod stages;
mod witness;

use super::api::*;
use super::log;
use super::repo::{self, Job};
use super::runtime::{CallErr, Runtime};
use candid::Principal;
use capsule::CapsuleStatus;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// The personal canister API major version this factory imports into.
pub const PERSONAL_API_MAJOR: u32 = 1;

/// A lease outlives any single bounded-wait call (they time out within 300 s) and is renewed by every
/// save; a task that trapped loses it after this long and the job's next task resumes from its facts.
pub const LEASE_NANOS: u64 = 600 * 1_000_000_000;
const BACKOFF_BASE_NANOS: u64 = 2 * 1_000_000_000;
const BACKOFF_CAP_NANOS: u64 = 60 * 1_000_000_000;
/// Import batches stay well under the 2 MiB message limit.
const BATCH_BYTES: usize = 1_800_000;
const BATCH_COUNT: usize = 500;
const CONNECTION_BATCH: usize = 500;
/// Replies of the personal canister are small records; a reply that costs more to decode (or to skip)
/// than this is refused instead of burning the factory's instructions.
const DECODING_QUOTA: usize = 200_000;
const SKIPPING_QUOTA: usize = 10_000;

thread_local! {
    /// Users whose create_canister call is in flight. Heap only: an upgrade is refused while it is not
    /// empty, and a task trapping in the callback leaves through `InFlight`'s drop.
    static CREATING: RefCell<BTreeSet<Principal>> = const { RefCell::new(BTreeSet::new()) };
}

/// Marks a user's create_canister call in flight for as long as it lives.
struct InFlight(Principal);

impl InFlight {
    fn enter(user: Principal) -> Self {
        CREATING.with(|c| c.borrow_mut().insert(user));
        InFlight(user)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        CREATING.with(|c| c.borrow_mut().remove(&self.0));
    }
}

/// Whether the factory is waiting for create_canister on this user's behalf.
pub fn create_in_flight(user: Principal) -> bool {
    CREATING.with(|c| c.borrow().contains(&user))
}

pub fn creates_in_flight() -> usize {
    CREATING.with(|c| c.borrow().len())
}

/// A task's claim on one job: it may act while the job's stored epoch is `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub user: Principal,
    pub epoch: u64,
}

/// Why a step did not reach its next stage.
#[derive(Debug, PartialEq, Eq)]
enum Halt {
    Failed(FactoryError),
    /// The job moved on under the task (a newer lease, a retry, a cancel): the task stops, touching nothing.
    Stale,
    /// The factory is paused: the task releases its lease and stops; the job resumes from its facts.
    Paused,
}

impl From<FactoryError> for Halt {
    fn from(e: FactoryError) -> Self {
        Halt::Failed(e)
    }
}

impl From<CallErr> for Halt {
    fn from(e: CallErr) -> Self {
        Halt::Failed(e.into())
    }
}

type Step<T> = Result<T, Halt>;

fn err(kind: FactoryErrorKind, message: impl Into<String>) -> FactoryError {
    FactoryError::new(kind, message)
}

// ---- leases ---------------------------------------------------------------------------------------

/// Leases runnable jobs to new tasks, keeping at most `max_concurrent_jobs` held at once.
pub fn lease_runnable(now: u64) -> Vec<Task> {
    let state = repo::state();
    if state.is_paused() {
        return vec![];
    }
    let cap = state.max_concurrent_jobs as usize;
    let users = repo::active_users();
    let busy = |u: Principal| repo::lease(u).is_leased(now) || create_in_flight(u);
    let held = users.iter().filter(|u| busy(**u)).count();
    let mut tasks = vec![];
    for user in users {
        if tasks.len() >= cap.saturating_sub(held) {
            break;
        }
        let lease = repo::lease(user);
        if busy(user) || lease.is_cleaning(now) {
            continue;
        }
        if repo::job(user).is_none_or(|j| j.next_attempt_at > now) {
            continue;
        }
        let lease = repo::update_lease(user, |l| {
            l.epoch += 1;
            l.until = now + LEASE_NANOS;
        });
        tasks.push(Task {
            user,
            epoch: lease.epoch,
        });
    }
    tasks
}

/// After an upgrade no task survives: their leases are void, and a step they were in did not trap.
pub fn release_all_leases() {
    for user in repo::active_users() {
        repo::update_lease(user, |l| {
            l.until = 0;
            l.in_step = None;
        });
    }
}

/// Whether the job is still this task's to act on: the same epoch, and still active.
fn current(task: Task) -> bool {
    repo::lease(task.user).epoch == task.epoch && repo::is_active(task.user)
}

/// The task's view of its job and the world: every check and save goes through here. While the epoch
/// is the task's, nobody else writes the job, so the task's copy is the stored one.
struct Cx<'a, R> {
    rt: &'a R,
    task: Task,
}

impl<R: Runtime> Cx<'_, R> {
    /// After an await: the job must still be this task's, and the factory not paused.
    fn fresh(&self) -> Step<()> {
        if !current(self.task) {
            return Err(Halt::Stale);
        }
        if repo::state().is_paused() {
            return Err(Halt::Paused);
        }
        Ok(())
    }

    /// Saves the task's copy if the job is still this task's (a compare-and-swap on the epoch), and
    /// renews the lease.
    fn save(&self, job: &mut Job) -> Step<()> {
        if !current(self.task) {
            return Err(Halt::Stale);
        }
        let now = self.rt.now();
        job.updated_at = now;
        repo::update_lease(job.user, |l| l.until = now + LEASE_NANOS);
        repo::save_job(job);
        Ok(())
    }

    async fn failpoint(&self, site: &str) -> Step<()> {
        let r = self.rt.failpoint(site).await;
        self.fresh()?;
        Ok(r?)
    }
}

// ---- the task -------------------------------------------------------------------------------------

/// Walks one job through its stages until it completes, fails, waits for a retry, or is taken from
/// the task. Releases the lease if it is still the task's.
pub async fn run<R: Runtime>(rt: &R, task: Task) {
    let cx = Cx { rt, task };
    while current(task) {
        let Some(job) = repo::job(task.user) else {
            break;
        };
        if job.next_attempt_at > rt.now() || !run_step(&cx, job).await {
            break;
        }
    }
    if current(task) {
        repo::update_lease(task.user, |l| l.until = 0);
    }
}

/// Runs the job's current stage once; whether the task should go on with the next.
async fn run_step<R: Runtime>(cx: &Cx<'_, R>, mut job: Job) -> bool {
    let stage = job.state;
    let user = job.user;
    let max = repo::state().max_step_attempts;
    // The attempt marker, persisted before the step's first await: a later task that finds it knows
    // this step trapped (a trap rolls back everything after the last await, the marker included).
    let lease = repo::update_lease(user, |l| {
        if l.in_step == Some(stage) {
            l.traps += 1;
        } else {
            l.in_step = Some(stage);
            l.traps = 0;
        }
    });
    if lease.traps >= max {
        let times = lease.traps;
        let e = err(
            FactoryErrorKind::StepTrapped { stage, times },
            format!(
                "{} trapped {times} times in a row; the job stops instead of looping",
                stage.name()
            ),
        );
        fail_job(&mut job, e.at(stage), cx.rt.now());
        return false;
    }
    let result = step(cx, &mut job).await;
    if current(cx.task) {
        repo::update_lease(user, |l| l.in_step = None);
    }
    match result {
        Err(Halt::Stale) => false,
        Err(Halt::Paused) => {
            log(&format!("job {user}: paused at {}", stage.name()));
            false
        }
        Ok(next) => advance(cx, &mut job, next).is_ok() && next.is_active(),
        Err(Halt::Failed(e)) => {
            if e.kind.is_transient() && job.attempts + 1 < max {
                let now = cx.rt.now();
                job.attempts += 1;
                job.last_error = Some(e.at(stage));
                let backoff = (BACKOFF_BASE_NANOS << job.attempts.min(16)).min(BACKOFF_CAP_NANOS);
                job.next_attempt_at = now + backoff;
                if cx.save(&mut job).is_ok() {
                    log(&format!(
                        "job {user}: {} failed (attempt {}), retrying: {}",
                        stage.name(),
                        job.attempts,
                        job.last_error.as_ref().map_or("", |e| e.message.as_str())
                    ));
                }
                return false;
            }
            if stage == CreationState::Importing
                && matches!(
                    stages::detect_finalized(cx, &mut job).await,
                    Err(Halt::Stale | Halt::Paused)
                )
            {
                return false;
            }
            if current(cx.task) {
                fail_job(&mut job, e.at(stage), cx.rt.now());
            }
            false
        }
    }
}

fn advance<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job, next: CreationState) -> Step<()> {
    log(&format!(
        "job {}: {} -> {}",
        job.user,
        job.state.name(),
        next.name()
    ));
    job.state = next;
    job.attempts = 0;
    job.last_error = None;
    cx.save(job)?;
    repo::update_lease(job.user, |l| l.traps = 0);
    repo::sync_registry(job);
    if next == CreationState::Completed {
        repo::update_state(|s| s.succeeded = s.succeeded.saturating_add(1));
    }
    Ok(())
}

/// Marks an active job Failed and keeps its canister for a retry or a cleanup. The capsule, which the
/// factory never modified, unlocks, unless the import was finalized (the copy is verified and only the
/// handoff remains) and nothing was tampered with. A job that is no longer active is left alone.
pub fn fail_job(job: &mut Job, err: FactoryError, now: u64) {
    if !repo::is_active(job.user) {
        return;
    }
    log(&format!(
        "job {}: failed at {}: {}",
        job.user,
        err.stage.map(|s| s.name()).unwrap_or("?"),
        err.message
    ));
    let stage = err.stage.unwrap_or(job.state);
    let keep_locked = job.cursor.finalized && !err.kind.is_tamper();
    job.state = CreationState::Failed;
    job.last_error = Some(err);
    job.updated_at = now;
    repo::update_lease(job.user, |l| {
        l.until = 0;
        l.in_step = None;
        l.traps = 0;
    });
    repo::save_job(job);
    repo::sync_registry(job);
    repo::update_state(|s| {
        s.failed = s.failed.saturating_add(1);
        match s.failed_by_stage.iter_mut().find(|(st, _)| *st == stage) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => s.failed_by_stage.push((stage, 1)),
        }
    });
    if !keep_locked && capsule::service::status_of(job.user) == CapsuleStatus::Locked {
        capsule::service::set_status(job.user, CapsuleStatus::Active);
    }
}

async fn step<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    match job.state {
        CreationState::NotStarted => Ok(CreationState::Exporting),
        CreationState::Exporting => stages::export_once(cx, job).await,
        CreationState::Creating => stages::create_once(cx, job).await,
        CreationState::Installing => stages::install_once(cx, job).await,
        CreationState::Importing => stages::import_once(cx, job).await,
        CreationState::Verifying => stages::verify_once(cx, job).await,
        CreationState::Completed | CreationState::Failed => Ok(job.state),
    }
}
