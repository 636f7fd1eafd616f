//! Walks jobs through their stages. A tick leases runnable jobs to tasks (`lease_runnable`); a task
//! (`run`) owns its job through the epoch of its lease and acts only while that epoch is stored: after
//! every await it checks the lease and the job's state and stops if anyone (a newer task, a retry, a
//! cancel, a cleanup) moved them, and every save is a compare-and-swap on the epoch that renews the
//! lease. While the epoch is the task's nobody else writes the job, so its copy is the stored one. Each step is
//! "once": it reads the facts persisted so far, acts, and persists what it learned before anything
//! else, so a retry, a resumed task or an upgrade never repeats a side effect. What the user's
//! co-controlled canister is running is confirmed through the management canister (`control`), never
//! taken from the canister itself, whose replies are decoded with quotas.

use super::api::*;
use super::control::{self, Control};
use super::log;
use super::repo::{self, BlobCursor, Custody, Job};
use super::runtime::{CallErr, Runtime};
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Principal};
use capsule::transfer::{
    export, ConnectionBatch, ImportAck, ImportBegin, ImportPhase, ImportStatus, MemoryBatch,
};
use capsule::{CapsuleStatus, Manifest};
use ic_management_canister_types::CanisterInstallMode;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// The personal canister API major version this factory imports into.
pub const PERSONAL_API_MAJOR: u32 = 1;

/// A lease outlives any single bounded-wait call (they time out within 300 s) and is renewed by every
/// save; a task that trapped loses it after this long and the job's next task resumes from its facts.
pub const LEASE_NANOS: u64 = 600 * 1_000_000_000;
const BACKOFF_BASE_NANOS: u64 = 2 * 1_000_000_000;
const BACKOFF_CAP_NANOS: u64 = 60 * 1_000_000_000;
/// Cycles kept for the factory's own operation on top of what a creation attaches.
const OPERATING_MARGIN: u128 = 100_000_000_000;
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
            let transient = matches!(&e.kind, FactoryErrorKind::CallRejected { code, .. } if matches!(code, 2 | 5 | 6));
            if transient && job.attempts + 1 < max {
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
                    detect_finalized(cx, &mut job).await,
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
        CreationState::Exporting => export_once(cx, job).await,
        CreationState::Creating => create_once(cx, job).await,
        CreationState::Installing => install_once(cx, job).await,
        CreationState::Importing => import_once(cx, job).await,
        CreationState::Verifying => verify_once(cx, job).await,
        CreationState::Completed | CreationState::Failed => Ok(job.state),
    }
}

// ---- the trusted witness and the untrusted callee -------------------------------------------------

/// Confirms through the management canister that the chain of control is unbroken and, with
/// `check_module`, that the pinned module runs; records how far the history is verified.
async fn confirm<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job, check_module: bool) -> Step<Control> {
    let id = canister_of(job)?;
    let info = cx.rt.canister_info(id).await;
    cx.fresh()?;
    let custody = job.custody();
    let pinned = custody
        .module_sha256
        .as_ref()
        .map(|h| h.as_slice())
        .filter(|_| check_module);
    let verdict = control::check(
        &info?,
        cx.rt.factory(),
        job.user,
        pinned,
        custody.changes_checked,
    )?;
    if let Control::Held { checked } = verdict {
        if checked != custody.changes_checked {
            job.custody = Some(Custody {
                changes_checked: checked,
                ..custody
            });
            cx.save(job)?;
        }
    }
    Ok(verdict)
}

/// A failed call to or about the job's canister: if the management canister shows someone else changed
/// the canister's code or controllers, that is the error; otherwise the call's own. (The module is not
/// compared: the failed call may have been the factory's own install.)
async fn explain<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job, e: FactoryError) -> Halt {
    match confirm(cx, job, false).await {
        Err(Halt::Failed(found)) if found.kind.is_tamper() => Halt::Failed(found),
        Err(Halt::Stale) => Halt::Stale,
        _ => Halt::Failed(e),
    }
}

/// Decodes a reply of the personal canister, which the user may have replaced, within quotas.
fn decode_reply<T: CandidType + DeserializeOwned>(
    method: &str,
    bytes: &[u8],
) -> Result<T, FactoryError> {
    let mut config = candid::de::DecoderConfig::new();
    config.set_decoding_quota(DECODING_QUOTA);
    config.set_skipping_quota(SKIPPING_QUOTA);
    candid::utils::decode_one_with_config(bytes, &config).map_err(|e| {
        err(
            FactoryErrorKind::BadReply {
                method: method.into(),
                message: e.to_string(),
            },
            format!("{method} answered with an unacceptable reply: {e}"),
        )
    })
}

/// Calls the personal canister and decodes its reply with quotas.
async fn personal<R: Runtime, A: ArgumentEncoder, T: CandidType + DeserializeOwned>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    method: &str,
    args: A,
) -> Step<T> {
    let id = canister_of(job)?;
    let arg = candid::encode_args(args).expect("encode arguments");
    let reply = cx.rt.call_personal(id, method, arg).await;
    cx.fresh()?;
    match reply {
        Ok(bytes) => Ok(decode_reply(method, &bytes)?),
        Err(e) => Err(explain(cx, job, e.into()).await),
    }
}

/// An import call: the personal canister's typed error becomes `ImportRejected`.
async fn import_call<R: Runtime, A: ArgumentEncoder, T: CandidType + DeserializeOwned>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    method: &str,
    args: A,
) -> Step<T> {
    let r: Result<T, capsule::Error> = personal(cx, job, method, args).await?;
    r.map_err(|e| {
        let message = format!("{method}: {}", e.message);
        Halt::Failed(err(
            FactoryErrorKind::ImportRejected {
                method: method.into(),
                error: Box::new(e),
            },
            message,
        ))
    })
}

fn canister_of(job: &Job) -> Result<Principal, FactoryError> {
    job.canister_id
        .ok_or_else(|| err(FactoryErrorKind::CanisterMissing, "the job has no canister"))
}

// ---- Exporting ------------------------------------------------------------------------------------

async fn export_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    cx.failpoint("export.before").await?;
    let user = job.user;
    let Some(manifest) = capsule::manifest::of(user) else {
        return Err(err(
            FactoryErrorKind::NoCapsule,
            "the user has no capsule to move",
        )
        .into());
    };
    capsule::service::set_status(user, CapsuleStatus::Locked);
    if job.expected.is_none() {
        job.progress = Progress {
            memories_total: manifest.memories,
            bytes_total: manifest.blob_bytes + manifest.inline_bytes,
            connections_total: manifest.connections,
            ..Progress::default()
        };
        job.expected = Some(manifest);
        cx.save(job)?;
    }
    cx.failpoint("export.after").await?;
    Ok(CreationState::Creating)
}

// ---- Creating -------------------------------------------------------------------------------------

async fn create_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    if job.canister_id.is_some() {
        return Ok(CreationState::Installing);
    }
    if job.create_in_flight {
        return Err(err(
            FactoryErrorKind::CreateOutcomeUnknown,
            "the backend was upgraded while create_canister was in flight; check for an untracked canister, then retry",
        ).into());
    }
    cx.failpoint("create.before").await?;
    let st = repo::state();
    let cycles = st.cycles_per_canister;
    // Saturating: a min_reserve at the top of the range must refuse, not wrap into a small number.
    let required = st.min_reserve.saturating_add(cycles);
    if st.reserve < required || required == u128::MAX {
        let required = candid::Nat::from(st.min_reserve) + candid::Nat::from(cycles);
        return Err(err(
            FactoryErrorKind::ReserveInsufficient { reserve: st.reserve.into(), required: required.clone() },
            format!("the cycles reserve holds {} but a creation needs {} ({cycles} for the canister + {} minimum reserve); an admin must top it up", st.reserve, required.0, st.min_reserve),
        ).into());
    }
    let balance = cx.rt.liquid_balance();
    let needed = cycles.saturating_add(OPERATING_MARGIN);
    if balance < needed {
        return Err(err(
            FactoryErrorKind::BalanceInsufficient {
                balance: balance.into(),
                required: needed.into(),
            },
            format!(
                "the backend's cycle balance {balance} cannot fund a canister of {cycles} cycles"
            ),
        )
        .into());
    }
    // Earmark the cycles in the same message as the preflight, so concurrent jobs cannot overdraw.
    repo::update_state(|s| s.reserve -= cycles);
    job.create_in_flight = true;
    cx.save(job)?;
    let user = job.user;
    let created = {
        let _in_flight = InFlight::enter(user);
        cx.rt
            .create_canister(vec![cx.rt.factory(), user], cycles)
            .await
    };
    // The answer is a fact whatever happened to the job meanwhile: record it before anything else.
    record_created(user, &created, cx.rt.now(), cycles);
    cx.fresh()?;
    *job = repo::job(user).ok_or(Halt::Stale)?;
    let id = created?;
    super::service::check_reserve_alert(cx.rt.now());
    if job.canister_id != Some(id) {
        // The job already had another canister (set by a task this one outlived): this one stays in
        // the registry, known and marked Failed, for an admin to delete.
        return Err(Halt::Stale);
    }
    cx.failpoint("create.after").await?;
    Ok(CreationState::Installing)
}

/// Writes create_canister's outcome into the stored job and the registry, in the message of the reply.
fn record_created(user: Principal, created: &Result<Principal, CallErr>, now: u64, cycles: u128) {
    let mut job = repo::job(user);
    if let Some(job) = job.as_mut() {
        job.create_in_flight = false;
    }
    match created {
        Ok(id) => {
            let adopted = match job.as_mut() {
                Some(job) if job.canister_id.is_none() => {
                    job.canister_id = Some(*id);
                    job.cycles_spent = job.cycles_spent.saturating_add(cycles);
                    true
                }
                _ => false,
            };
            repo::save_entry(RegistryEntry {
                canister_id: *id,
                created_by: user,
                created_at: now,
                status: if adopted {
                    CreationState::Creating
                } else {
                    CreationState::Failed
                },
                cycles_consumed: cycles.into(),
                updated_at: now,
                deleted: false,
            });
            repo::update_state(|s| s.total_consumed = s.total_consumed.saturating_add(cycles));
            super::admission::record_canister(user);
        }
        // The IC refunds the attached cycles of a rejected call: give them back to the reserve.
        Err(_) => repo::update_state(|s| s.reserve = s.reserve.saturating_add(cycles)),
    }
    if let Some(job) = job {
        repo::save_job(&job);
    }
}

// ---- Installing -----------------------------------------------------------------------------------

async fn install_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    let id = canister_of(job)?;
    let Some((wasm, sha)) = repo::active_wasm() else {
        return Err(err(
            FactoryErrorKind::NoPersonalWasm,
            "no personal canister WASM is active; an admin must upload one",
        )
        .into());
    };
    cx.failpoint("install.before").await?;
    confirm(cx, job, false).await?;
    let installed = cx.rt.module_hash(id).await;
    cx.fresh()?;
    let installed = match installed {
        Ok(h) => h,
        Err(e) => return Err(explain(cx, job, e.into()).await),
    };
    let mode = match installed {
        None => Some(CanisterInstallMode::Install),
        // The module is the active one: reinstall unless the canister says nothing was imported yet.
        Some(hash) if hash == sha && import_untouched(cx, job).await? => None,
        Some(_) => Some(CanisterInstallMode::Reinstall),
    };
    // Pinned before the module is sent: every later check compares with what was installed.
    job.custody = Some(Custody {
        module_sha256: Some(sha.clone().into()),
        ..job.custody()
    });
    if let Some(mode) = mode {
        job.cursor = Default::default();
        cx.save(job)?;
        let init = capsule::transfer::PersonalInit {
            owner: job.user,
            importer: Some(cx.rt.factory()),
        };
        let arg = candid::encode_one(init).expect("encode init");
        let chunked = wasm.len() as u64 > repo::state().chunked_install_threshold;
        let r = cx.rt.install(id, mode, &wasm, &sha, arg, chunked).await;
        cx.fresh()?;
        if let Err(e) = r {
            return Err(explain(cx, job, e.into()).await);
        }
    } else {
        cx.save(job)?;
    }
    cx.failpoint("install.after").await?;
    confirm(cx, job, true).await?;
    check_version(cx, job).await?;
    Ok(CreationState::Importing)
}

/// Whether the installed personal canister has received nothing yet, for this user, from this factory.
async fn import_untouched<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<bool> {
    let s: ImportStatus = import_call(cx, job, "import_status", ()).await?;
    Ok(s.phase == ImportPhase::Ready
        && s.owner == Some(job.user)
        && s.importer == Some(cx.rt.factory()))
}

async fn check_version<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<()> {
    cx.failpoint("version.before").await?;
    let v: capsule::transfer::ApiVersion = personal(cx, job, "api_version", ()).await?;
    if v.major != PERSONAL_API_MAJOR {
        return Err(err(
            FactoryErrorKind::VersionMismatch {
                expected_major: PERSONAL_API_MAJOR,
                actual_major: v.major,
                actual_minor: v.minor,
            },
            format!(
                "the personal canister serves API {}.{}; this factory imports into {}.x",
                v.major, v.minor, PERSONAL_API_MAJOR
            ),
        )
        .into());
    }
    Ok(())
}

// ---- Importing ------------------------------------------------------------------------------------

async fn import_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    let user = job.user;
    // Before any data is sent (again): the canister is still the one the factory installed.
    confirm(cx, job, true).await?;
    check_version(cx, job).await?;
    if !job.cursor.begun {
        cx.failpoint("import.begin").await?;
        let capsule = export::snapshot(user)
            .ok_or_else(|| err(FactoryErrorKind::NoCapsule, "the capsule disappeared"))?;
        let expected = job.expected.clone().expect("set in Exporting");
        let _: ImportStatus = import_call(
            cx,
            job,
            "import_begin",
            (ImportBegin { capsule, expected },),
        )
        .await?;
        job.cursor.begun = true;
        cx.save(job)?;
    }
    while !job.cursor.memories_done {
        let page = export::memories_after(user, job.cursor.memory_after, BATCH_COUNT, BATCH_BYTES);
        let Some(last) = page.last().map(|m| m.id) else {
            job.cursor.memories_done = true;
            cx.save(job)?;
            break;
        };
        for m in &page {
            let capsule::transfer::ExportAsset::Blob { len, .. } = m.asset else {
                continue;
            };
            let start = match &job.cursor.blob {
                Some(b) if b.memory_id > m.id => continue,
                Some(b) if b.memory_id == m.id => b.next_chunk,
                _ => 0,
            };
            for index in start..capsule::store::chunk_count(len) {
                cx.failpoint("import.chunk").await?;
                let chunk =
                    export::blob_chunk(user, m.id, index).expect("a frozen capsule's blob chunk");
                let sent = chunk.bytes.len() as u64;
                let _: ImportAck = import_call(cx, job, "import_blob_chunk", (chunk,)).await?;
                job.cursor.blob = Some(BlobCursor {
                    memory_id: m.id,
                    next_chunk: index + 1,
                });
                job.progress.bytes_imported += sent;
                cx.save(job)?;
            }
        }
        cx.failpoint("import.batch").await?;
        let count = page.len() as u64;
        let inline: u64 = page
            .iter()
            .map(|m| match &m.asset {
                capsule::transfer::ExportAsset::Inline { bytes } => bytes.len() as u64,
                _ => 0,
            })
            .sum();
        let batch = MemoryBatch {
            seq: job.cursor.memory_seq,
            memories: page,
        };
        let _: ImportAck = import_call(cx, job, "import_memories", (batch,)).await?;
        job.cursor.memory_after = Some(last);
        job.cursor.memory_seq += 1;
        job.cursor.blob = None;
        job.progress.memories_imported += count;
        job.progress.bytes_imported += inline;
        cx.save(job)?;
    }
    while !job.cursor.connections_done {
        let page = export::connections_after(user, job.cursor.connection_after, CONNECTION_BATCH);
        let Some(last) = page.last().map(|c| c.peer) else {
            job.cursor.connections_done = true;
            cx.save(job)?;
            break;
        };
        cx.failpoint("import.connections").await?;
        let count = page.len() as u64;
        let batch = ConnectionBatch {
            seq: job.cursor.connection_seq,
            connections: page,
        };
        let _: ImportAck = import_call(cx, job, "import_connections", (batch,)).await?;
        job.cursor.connection_after = Some(last);
        job.cursor.connection_seq += 1;
        job.progress.connections_imported += count;
        cx.save(job)?;
    }
    if !job.cursor.finalized {
        cx.failpoint("import.finalize").await?;
        // The data went into the canister the factory installed, and nobody else touched it.
        confirm(cx, job, true).await?;
        match import_call::<_, _, Manifest>(cx, job, "import_finalize", ()).await {
            Ok(_) => {}
            // Finalized by an earlier attempt whose reply was lost; Verifying compares the manifest.
            Err(Halt::Failed(FactoryError {
                kind: FactoryErrorKind::ImportRejected { error, .. },
                ..
            })) if error.kind == capsule::ErrorKind::ImportFinalized => {}
            Err(Halt::Failed(FactoryError {
                kind: FactoryErrorKind::ImportRejected { error, .. },
                ..
            })) if matches!(error.kind, capsule::ErrorKind::ManifestMismatch { .. }) => {
                let capsule::ErrorKind::ManifestMismatch { expected, actual } = error.kind else {
                    unreachable!()
                };
                return Err(manifest_mismatch(expected, actual).into());
            }
            Err(e) => return Err(e),
        }
        job.cursor.finalized = true;
        cx.save(job)?;
    }
    Ok(CreationState::Verifying)
}

/// Before an import that is about to fail unlocks the capsule: if everything was sent, asks whether
/// `import_finalize` took effect after all (a lost reply), so that a verified copy is not thrown away.
async fn detect_finalized<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<()> {
    if job.cursor.finalized || !job.cursor.connections_done || job.canister_id.is_none() {
        return Ok(());
    }
    if let Ok(status) = import_call::<_, _, ImportStatus>(cx, job, "import_status", ()).await {
        if status.finalized.is_some() && status.finalized == job.expected {
            job.cursor.finalized = true;
            cx.save(job)?;
        }
    }
    if current(cx.task) {
        Ok(())
    } else {
        Err(Halt::Stale)
    }
}

fn manifest_mismatch(expected: Box<Manifest>, actual: Box<Manifest>) -> FactoryError {
    let message = format!(
        "the personal canister's manifest {} does not match the export's {}",
        actual.root_hex, expected.root_hex
    );
    err(
        FactoryErrorKind::ManifestMismatch { expected, actual },
        message,
    )
}

// ---- Verifying and handoff ------------------------------------------------------------------------

async fn verify_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
    let id = canister_of(job)?;
    let user = job.user;
    cx.failpoint("verify.before").await?;
    if !job.handoff_done {
        // A lost reply to an earlier attempt's handoff shows in the history as the factory's own change.
        if let Control::Held { .. } = confirm(cx, job, true).await? {
            hand_over(cx, job, id, user).await?;
        }
        job.handoff_done = true;
        cx.save(job)?;
    }
    capsule::service::set_status(user, CapsuleStatus::Migrated { canister_id: id });
    Ok(CreationState::Completed)
}

/// Checks the finalized copy, sets the controllers to {user} and confirms the handoff in the history.
async fn hand_over<R: Runtime>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    id: Principal,
    user: Principal,
) -> Step<()> {
    // The module was the pinned one and only the factory had changed the canister: its account of the
    // manifest it verified at finalize is the installed code's (the owner may write from then on).
    let expected = job.expected.clone().expect("set in Exporting");
    let status: ImportStatus = import_call(cx, job, "import_status", ()).await?;
    match status.finalized {
        Some(actual) if actual == expected => {}
        Some(actual) => return Err(manifest_mismatch(Box::new(expected), Box::new(actual)).into()),
        None => {
            return Err(err(
                FactoryErrorKind::ImportRejected {
                    method: "import_status".into(),
                    error: Box::new(capsule::ErrorKind::ImportNotStarted.into()),
                },
                "the personal canister reports no finalized import",
            )
            .into())
        }
    }
    cx.failpoint("handoff.before").await?;
    // Again, right before the handoff: the canister may have changed while it answered.
    confirm(cx, job, true).await?;
    let sent = cx.rt.set_controllers(id, vec![user]).await;
    cx.fresh()?;
    cx.failpoint("handoff.after").await?;
    // Whatever the reply said, the history tells whether the handoff happened.
    match confirm(cx, job, true).await? {
        Control::HandedOver => Ok(()),
        Control::Held { .. } => {
            sent?;
            let info = cx.rt.canister_info(id).await;
            cx.fresh()?;
            let controllers = info.map(|i| i.controllers).unwrap_or_default();
            Err(err(
                FactoryErrorKind::HandoffUnconfirmed {
                    controllers: controllers.clone(),
                },
                format!("after handoff the controllers are {controllers:?}, not just the user"),
            )
            .into())
        }
    }
}
