//! Drives jobs with timers. A periodic tick leases runnable jobs (at most `max_concurrent_jobs` at once)
//! and runs each in its own timer task; a task walks its job through the stages, each step "once": it
//! reads the facts persisted so far, acts, and persists what it learned before anything else, so a
//! retry, a resumed task or an upgrade never repeats a side effect.

use super::api::*;
use super::failpoints::hit;
use super::ic;
use super::repo::{self, BlobCursor, Job};
use candid::Principal;
use capsule::transfer::{
    export, ConnectionBatch, ImportAck, ImportBegin, ImportStatus, MemoryBatch,
};
use capsule::{CapsuleStatus, Manifest};
use ic_management_canister_types::CanisterInstallMode;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

/// The personal canister API major version this factory imports into.
pub const PERSONAL_API_MAJOR: u32 = 1;

const TICK: Duration = Duration::from_secs(5);
/// A lease outlives any single call (bounded-wait calls time out within 300 s); a task that trapped
/// loses its lease after this long and the tick starts the job again from its persisted facts.
const LEASE_NANOS: u64 = 600 * 1_000_000_000;
const BACKOFF_BASE_NANOS: u64 = 2 * 1_000_000_000;
const BACKOFF_CAP_NANOS: u64 = 60 * 1_000_000_000;
/// Cycles kept for the factory's own operation on top of what a creation attaches.
const OPERATING_MARGIN: u128 = 100_000_000_000;
/// Import batches stay well under the 2 MiB message limit.
const BATCH_BYTES: usize = 1_800_000;
const BATCH_COUNT: usize = 500;
const CONNECTION_BATCH: usize = 500;

thread_local! {
    static LEASES: RefCell<BTreeMap<Principal, u64>> = const { RefCell::new(BTreeMap::new()) };
    static CREATES_IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
}

fn now() -> u64 {
    ic_cdk::api::time()
}

/// Arms the periodic tick and runs one right away (init and post_upgrade).
pub fn start() {
    ic_cdk_timers::set_timer_interval(TICK, || async { tick() });
    kick();
}

/// Runs a tick as soon as possible: after a job was queued or a task finished.
pub fn kick() {
    ic_cdk_timers::set_timer(Duration::ZERO, async { tick() });
}

/// Refuses an upgrade while create_canister is in flight: its reply would be lost with the heap, and
/// with it the id of a canister the factory paid for. Stop the canister first, or retry shortly.
pub fn guard_upgrade() {
    let n = CREATES_IN_FLIGHT.with(|c| c.get());
    if n > 0 {
        ic_cdk::trap(format!(
            "upgrade refused: {n} create_canister call(s) in flight; stop the backend first (stop_canister waits for them) or retry in a moment"
        ));
    }
}

pub fn active_leases() -> usize {
    LEASES.with(|l| l.borrow().len())
}

fn tick() {
    let now = now();
    let cap = repo::state().max_concurrent_jobs as usize;
    let leased: Vec<Principal> = LEASES.with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|_, until| *until > now);
        l.keys().copied().collect()
    });
    let free = cap.saturating_sub(leased.len());
    if free == 0 {
        return;
    }
    let runnable: Vec<Principal> = repo::active_jobs()
        .into_iter()
        .filter(|j| j.next_attempt_at <= now && !leased.contains(&j.user))
        .map(|j| j.user)
        .take(free)
        .collect();
    for user in runnable {
        LEASES.with(|l| l.borrow_mut().insert(user, now + LEASE_NANOS));
        ic_cdk_timers::set_timer(Duration::ZERO, run(user));
    }
}

/// Walks one job through its stages until it completes, fails, or waits for a retry.
async fn run(user: Principal) {
    while let Some(mut job) = repo::job(user) {
        if !job.state.is_active() || job.next_attempt_at > now() {
            break;
        }
        let stage = job.state;
        match step(&mut job).await {
            Ok(next) => advance(&mut job, next),
            Err(err) => {
                let transient = matches!(&err.kind, FactoryErrorKind::CallRejected { code, .. } if matches!(code, 2 | 5 | 6));
                let max = repo::state().max_step_attempts;
                if transient && job.attempts + 1 < max {
                    job.attempts += 1;
                    job.last_error = Some(err.at(stage));
                    let backoff =
                        (BACKOFF_BASE_NANOS << job.attempts.min(16)).min(BACKOFF_CAP_NANOS);
                    job.next_attempt_at = now() + backoff;
                    job.updated_at = now();
                    repo::save_job(&job);
                    ic_cdk::println!(
                        "job {user}: {} failed (attempt {}), retrying: {}",
                        stage.name(),
                        job.attempts,
                        job.last_error
                            .as_ref()
                            .map(|e| e.message.as_str())
                            .unwrap_or("")
                    );
                } else {
                    fail(&mut job, err.at(stage));
                }
                break;
            }
        }
    }
    LEASES.with(|l| l.borrow_mut().remove(&user));
    kick();
}

fn advance(job: &mut Job, next: CreationState) {
    ic_cdk::println!("job {}: {} -> {}", job.user, job.state.name(), next.name());
    job.state = next;
    job.attempts = 0;
    job.last_error = None;
    job.updated_at = now();
    repo::save_job(job);
    repo::sync_registry(job);
    if next == CreationState::Completed {
        repo::update_state(|s| s.succeeded += 1);
    }
}

/// Marks the job Failed, keeps its canister for a retry or a cleanup, and unlocks the capsule, which
/// the factory never modified.
pub fn fail(job: &mut Job, err: FactoryError) {
    ic_cdk::println!(
        "job {}: failed at {}: {}",
        job.user,
        err.stage.map(|s| s.name()).unwrap_or("?"),
        err.message
    );
    let stage = err.stage.unwrap_or(job.state);
    job.state = CreationState::Failed;
    job.last_error = Some(err);
    job.updated_at = now();
    repo::save_job(job);
    repo::sync_registry(job);
    repo::update_state(|s| {
        s.failed += 1;
        match s.failed_by_stage.iter_mut().find(|(st, _)| *st == stage) {
            Some((_, n)) => *n += 1,
            None => s.failed_by_stage.push((stage, 1)),
        }
    });
    // Once the import is finalized the copy is complete and verified and only the handoff remains: the
    // capsule stays locked so that a retry hands over exactly what was copied. Before that it unlocks.
    if !job.cursor.finalized {
        capsule::service::set_status(job.user, CapsuleStatus::Active);
    }
}

async fn step(job: &mut Job) -> FactoryResult<CreationState> {
    match job.state {
        CreationState::NotStarted => Ok(CreationState::Exporting),
        CreationState::Exporting => export_once(job).await,
        CreationState::Creating => create_once(job).await,
        CreationState::Installing => install_once(job).await,
        CreationState::Importing => import_once(job).await,
        CreationState::Verifying => verify_once(job).await,
        CreationState::Completed | CreationState::Failed => Ok(job.state),
    }
}

fn save(job: &mut Job) {
    job.updated_at = now();
    repo::save_job(job);
}

fn err(kind: FactoryErrorKind, message: impl Into<String>) -> FactoryError {
    FactoryError::new(kind, message)
}

// ---- Exporting ------------------------------------------------------------------------------------

async fn export_once(job: &mut Job) -> FactoryResult<CreationState> {
    hit("export.before").await?;
    let user = job.user;
    let Some(manifest) = capsule::manifest::of(user) else {
        return Err(err(
            FactoryErrorKind::NoCapsule,
            "the user has no capsule to move",
        ));
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
        save(job);
    }
    hit("export.after").await?;
    Ok(CreationState::Creating)
}

// ---- Creating -------------------------------------------------------------------------------------

async fn create_once(job: &mut Job) -> FactoryResult<CreationState> {
    if job.canister_id.is_some() {
        return Ok(CreationState::Installing);
    }
    if job.create_in_flight {
        return Err(err(
            FactoryErrorKind::CreateOutcomeUnknown,
            "the backend was upgraded while create_canister was in flight; check for an untracked canister, then retry",
        ));
    }
    hit("create.before").await?;
    let st = repo::state();
    let cycles = st.cycles_per_canister;
    let required = st.min_reserve + cycles;
    if st.reserve < required {
        return Err(err(
            FactoryErrorKind::ReserveInsufficient { reserve: st.reserve.into(), required: required.into() },
            format!("the cycles reserve holds {} but a creation needs {} ({} for the canister + {} minimum reserve); an admin must top it up", st.reserve, required, cycles, st.min_reserve),
        ));
    }
    let balance = ic_cdk::api::canister_liquid_cycle_balance();
    if balance < cycles + OPERATING_MARGIN {
        return Err(err(
            FactoryErrorKind::BalanceInsufficient {
                balance: balance.into(),
                required: (cycles + OPERATING_MARGIN).into(),
            },
            format!(
                "the backend's cycle balance {balance} cannot fund a canister of {cycles} cycles"
            ),
        ));
    }
    // Earmark the cycles in the same message as the preflight, so concurrent jobs cannot overdraw.
    repo::update_state(|s| s.reserve -= cycles);
    job.create_in_flight = true;
    save(job);
    CREATES_IN_FLIGHT.with(|c| c.set(c.get() + 1));
    let created = ic::create_canister(vec![ic_cdk::api::canister_self(), job.user], cycles).await;
    CREATES_IN_FLIGHT.with(|c| c.set(c.get() - 1));
    job.create_in_flight = false;
    let canister_id = match created {
        Ok(id) => id,
        Err(e) => {
            // The IC refunds the attached cycles of a rejected call: give them back to the reserve.
            repo::update_state(|s| s.reserve += cycles);
            save(job);
            return Err(e.into());
        }
    };
    // Persisted in the same message as the reply: the id is never lost.
    job.canister_id = Some(canister_id);
    job.cycles_spent += cycles;
    save(job);
    let t = now();
    repo::save_entry(RegistryEntry {
        canister_id,
        created_by: job.user,
        created_at: t,
        status: CreationState::Creating,
        cycles_consumed: cycles.into(),
        updated_at: t,
        deleted: false,
    });
    repo::update_state(|s| s.total_consumed += cycles);
    super::service::check_reserve_alert(t);
    hit("create.after").await?;
    Ok(CreationState::Installing)
}

// ---- Installing -----------------------------------------------------------------------------------

fn canister_of(job: &Job) -> FactoryResult<Principal> {
    job.canister_id
        .ok_or_else(|| err(FactoryErrorKind::CanisterMissing, "the job has no canister"))
}

async fn install_once(job: &mut Job) -> FactoryResult<CreationState> {
    let id = canister_of(job)?;
    let Some((wasm, sha)) = repo::active_wasm() else {
        return Err(err(
            FactoryErrorKind::NoPersonalWasm,
            "no personal canister WASM is active; an admin must upload one",
        ));
    };
    hit("install.before").await?;
    let installed = ic::module_hash(id).await?;
    let mode = match installed {
        None => Some(CanisterInstallMode::Install),
        Some(hash) if hash == sha && !job.needs_reinstall => None,
        Some(_) => Some(CanisterInstallMode::Reinstall),
    };
    if let Some(mode) = mode {
        let init = capsule::transfer::PersonalInit {
            owner: job.user,
            importer: Some(ic_cdk::api::canister_self()),
        };
        let arg = candid::encode_one(init).expect("encode init");
        if wasm.len() as u64 > repo::state().chunked_install_threshold {
            ic::install_chunked(id, mode, &wasm, sha.clone(), arg).await?;
        } else {
            ic::install(id, mode, wasm, arg).await?;
        }
        job.cursor = Default::default();
    }
    job.installed_module_hash = Some(sha.into());
    job.needs_reinstall = false;
    save(job);
    hit("install.after").await?;
    check_version(id).await?;
    Ok(CreationState::Importing)
}

async fn check_version(id: Principal) -> FactoryResult<()> {
    hit("version.before").await?;
    let v: capsule::transfer::ApiVersion = ic::personal(id, "api_version", ()).await?;
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
        ));
    }
    Ok(())
}

// ---- Importing ------------------------------------------------------------------------------------

fn rejected(method: &str, e: capsule::Error) -> FactoryError {
    let message = format!("{method}: {}", e.message);
    err(
        FactoryErrorKind::ImportRejected {
            method: method.into(),
            error: Box::new(e),
        },
        message,
    )
}

async fn import_call<
    A: candid::utils::ArgumentEncoder,
    R: candid::CandidType + serde::de::DeserializeOwned,
>(
    id: Principal,
    method: &str,
    args: A,
) -> FactoryResult<R> {
    let r: Result<R, capsule::Error> = ic::personal(id, method, args)
        .await
        .map_err(FactoryError::from)?;
    r.map_err(|e| rejected(method, e))
}

async fn import_once(job: &mut Job) -> FactoryResult<CreationState> {
    let id = canister_of(job)?;
    let user = job.user;
    // The installed code may have been replaced since Installing: check again before sending data.
    check_version(id).await?;
    if !job.cursor.begun {
        hit("import.begin").await?;
        let capsule = export::snapshot(user)
            .ok_or_else(|| err(FactoryErrorKind::NoCapsule, "the capsule disappeared"))?;
        let expected = job.expected.clone().expect("set in Exporting");
        let _: ImportStatus =
            import_call(id, "import_begin", (ImportBegin { capsule, expected },)).await?;
        job.cursor.begun = true;
        save(job);
    }
    while !job.cursor.memories_done {
        let page = export::memories_after(user, job.cursor.memory_after, BATCH_COUNT, BATCH_BYTES);
        let Some(last) = page.last().map(|m| m.id) else {
            job.cursor.memories_done = true;
            save(job);
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
                hit("import.chunk").await?;
                let chunk =
                    export::blob_chunk(user, m.id, index).expect("a frozen capsule's blob chunk");
                let sent = chunk.bytes.len() as u64;
                let _: ImportAck = import_call(id, "import_blob_chunk", (chunk,)).await?;
                job.cursor.blob = Some(BlobCursor {
                    memory_id: m.id,
                    next_chunk: index + 1,
                });
                job.progress.bytes_imported += sent;
                save(job);
            }
        }
        hit("import.batch").await?;
        let count = page.len() as u64;
        let inline: u64 = page
            .iter()
            .map(|m| match &m.asset {
                capsule::transfer::ExportAsset::Inline { bytes } => bytes.len() as u64,
                _ => 0,
            })
            .sum();
        let _: ImportAck = import_call(
            id,
            "import_memories",
            (MemoryBatch {
                seq: job.cursor.memory_seq,
                memories: page,
            },),
        )
        .await?;
        job.cursor.memory_after = Some(last);
        job.cursor.memory_seq += 1;
        job.cursor.blob = None;
        job.progress.memories_imported += count;
        job.progress.bytes_imported += inline;
        save(job);
    }
    while !job.cursor.connections_done {
        let page = export::connections_after(user, job.cursor.connection_after, CONNECTION_BATCH);
        let Some(last) = page.last().map(|c| c.peer) else {
            job.cursor.connections_done = true;
            save(job);
            break;
        };
        hit("import.connections").await?;
        let count = page.len() as u64;
        let _: ImportAck = import_call(
            id,
            "import_connections",
            (ConnectionBatch {
                seq: job.cursor.connection_seq,
                connections: page,
            },),
        )
        .await?;
        job.cursor.connection_after = Some(last);
        job.cursor.connection_seq += 1;
        job.progress.connections_imported += count;
        save(job);
    }
    if !job.cursor.finalized {
        hit("import.finalize").await?;
        if let Err(e) = import_call::<_, Manifest>(id, "import_finalize", ()).await {
            match &e.kind {
                FactoryErrorKind::ImportRejected { error, .. } => match &error.kind {
                    // Finalized by an earlier attempt whose reply was lost; Verifying compares the manifest.
                    capsule::ErrorKind::ImportFinalized => {}
                    capsule::ErrorKind::ManifestMismatch { expected, actual } => {
                        return Err(manifest_mismatch(expected.clone(), actual.clone()));
                    }
                    _ => return Err(e),
                },
                _ => return Err(e),
            }
        }
        job.cursor.finalized = true;
        save(job);
    }
    Ok(CreationState::Verifying)
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

async fn verify_once(job: &mut Job) -> FactoryResult<CreationState> {
    let id = canister_of(job)?;
    let user = job.user;
    hit("verify.before").await?;
    let expected = job.expected.clone().expect("set in Exporting");
    // The manifest the personal canister verified at finalize: the owner may already be writing there,
    // so the live manifest is not what the import is judged by.
    let status: ImportStatus = ic::personal(id, "import_status", ()).await?;
    match status.finalized {
        Some(actual) if actual == expected => {}
        Some(actual) => return Err(manifest_mismatch(Box::new(expected), Box::new(actual))),
        None => {
            return Err(err(
                FactoryErrorKind::ImportRejected {
                    method: "import_status".into(),
                    error: Box::new(capsule::ErrorKind::ImportNotStarted.into()),
                },
                "the personal canister reports no finalized import",
            ))
        }
    }
    if !job.handoff_done {
        let mut controllers = ic::controllers(id).await?;
        if controllers != vec![user] {
            hit("handoff.before").await?;
            ic::set_controllers(id, vec![user])
                .await
                .map_err(FactoryError::from)?;
            hit("handoff.after").await?;
            controllers = ic::controllers(id).await?;
        }
        if controllers != vec![user] {
            return Err(err(
                FactoryErrorKind::HandoffUnconfirmed {
                    controllers: controllers.clone(),
                },
                format!("after handoff the controllers are {controllers:?}, not just the user"),
            ));
        }
        job.handoff_done = true;
        save(job);
    }
    capsule::service::set_status(user, CapsuleStatus::Migrated { canister_id: id });
    Ok(CreationState::Completed)
}
