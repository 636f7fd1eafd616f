//! The factory's endpoint logic: validate everything, then act. Endpoints in `mod.rs` only pass the
//! caller and the time in.

use super::admission;
use super::api::*;
use super::driver;
use super::funding;
use super::repo::{self, Job};
use super::runtime::Runtime;
use super::timers;
use crate::admin::{self, Role};
use candid::Principal;
use sha2::{Digest, Sha256};

const NAME_MAX: usize = 64;
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 100;
const WASM_MAX: u64 = 16 * 1024 * 1024;
const WASM_PIECE_MAX: usize = 1024 * 1024;
/// The largest reserve setting (`min_reserve`, `alert_below`): more cycles than exist, so an admin can
/// set `min_reserve` to it as an emergency brake on creation.
pub const CYCLES_SETTING_MAX: u128 = 1_000_000_000_000_000_000_000_000;

fn error(kind: FactoryErrorKind, message: impl Into<String>) -> FactoryError {
    FactoryError::new(kind, message)
}

pub fn require_user(caller: Principal) -> FactoryResult<()> {
    if caller == Principal::anonymous() {
        return Err(error(
            FactoryErrorKind::AnonymousCaller,
            "sign in first: the anonymous principal has no capsule",
        ));
    }
    Ok(())
}

pub fn require_admin(caller: Principal) -> FactoryResult<()> {
    require_user(caller)?;
    if !admin::is_admin(caller) {
        return Err(error(
            FactoryErrorKind::NotAdmin,
            "only an admin may do this",
        ));
    }
    Ok(())
}

pub fn require_role(caller: Principal, role: Role) -> FactoryResult<()> {
    require_admin(caller)?;
    if !admin::has(caller, role) {
        return Err(error(
            FactoryErrorKind::RoleRequired { role },
            format!("this needs the {role:?} role"),
        ));
    }
    Ok(())
}

fn page_limit(limit: Option<u32>) -> FactoryResult<usize> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(n) if n == 0 || n as usize > PAGE_MAX => Err(FactoryError::invalid(
            "limit",
            format!("must be between 1 and {PAGE_MAX}"),
        )),
        Some(n) => Ok(n as usize),
    }
}

// ---- users ----------------------------------------------------------------------------------------

pub fn create(
    caller: Principal,
    now: u64,
    config: Option<CreatePersonalCanisterConfig>,
) -> FactoryResult<CreationStatus> {
    require_user(caller)?;
    let config = config.unwrap_or_default();
    if let Some(name) = &config.name {
        if name.len() > NAME_MAX {
            return Err(FactoryError::invalid(
                "name",
                format!("is {} bytes; the limit is {NAME_MAX}", name.len()),
            ));
        }
    }
    if config.subnet_id == Some(Principal::anonymous()) {
        return Err(FactoryError::invalid("subnet_id", "is not a subnet id"));
    }
    // Asking again is idempotent: the existing job's status, whatever else has changed since.
    if let Some(job) = repo::job(caller) {
        return Ok(job.user_status());
    }
    if !repo::state().enabled {
        return Err(error(
            FactoryErrorKind::CreationDisabled,
            "personal canister creation is disabled by the admins; try again later",
        ));
    }
    if !capsule::service::has_capsule(caller) {
        return Err(error(
            FactoryErrorKind::NoCapsule,
            "you have no capsule to move; create one first",
        ));
    }
    admission::admit(caller, now, repo::with(|r| r.active.len()))?;
    let job = Job::new(caller, config, now);
    repo::save_job(&job);
    repo::update_state(|s| s.attempted = s.attempted.saturating_add(1));
    timers::kick();
    Ok(job.user_status())
}

pub fn status(caller: Principal) -> FactoryResult<Option<CreationStatus>> {
    require_user(caller)?;
    Ok(repo::job(caller).map(|j| j.user_status()))
}

/// The personal canister the user should use, once the move has completed.
pub fn personal_canister_of(
    caller: Principal,
    user: Principal,
) -> FactoryResult<Option<Principal>> {
    require_user(caller)?;
    if caller != user && !admin::is_admin(caller) {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "only the user or an admin may look this up",
        ));
    }
    Ok(repo::job(user)
        .filter(|j| j.state == CreationState::Completed)
        .and_then(|j| j.canister_id))
}

/// Starts a failed job again, keeping its canister. Only an admin (`by_admin`) may retry a job whose
/// create_canister outcome is unknown, after checking for an untracked canister; nobody may retry a job
/// whose canister was tampered with (an admin cleans it up instead).
pub fn retry(user: Principal, now: u64, by_admin: bool) -> FactoryResult<CreationStatus> {
    let Some(mut job) = repo::job(user) else {
        return Err(error(
            FactoryErrorKind::JobNotFound,
            "there is no creation to retry",
        ));
    };
    if job.state != CreationState::Failed {
        return Err(error(
            FactoryErrorKind::JobNotFailed { state: job.state },
            format!("the creation is {}, not Failed", job.state.name()),
        ));
    }
    require_quiet(&job, now)?;
    admission::check_retry(job.retries, by_admin)?;
    let last = job.last_error.as_ref().map(|e| &e.kind);
    if last.is_some_and(|k| k.is_tamper()) {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "the canister was changed by someone other than the factory before the handoff; it cannot be retried, an admin must clean the job up",
        ));
    }
    if matches!(last, Some(FactoryErrorKind::CreateOutcomeUnknown)) && !by_admin {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "a canister may have been created for you without the factory learning its id; an admin must check before this can be retried",
        ));
    }
    if !repo::state().enabled {
        return Err(error(
            FactoryErrorKind::CreationDisabled,
            "personal canister creation is disabled by the admins; try again later",
        ));
    }
    if job.cursor.finalized {
        // The copy is complete and verified, and the capsule stayed locked: only the handoff remains.
        job.state = CreationState::Verifying;
    } else {
        // The capsule may have changed while unlocked: export again. Installing asks the canister
        // whether it must be reinstalled before importing.
        job.cursor = Default::default();
        job.expected = None;
        job.create_in_flight = false;
        job.state = CreationState::Exporting;
    }
    repo::take_over(user);
    job.attempts = 0;
    job.retries += 1;
    job.next_attempt_at = now;
    job.updated_at = now;
    repo::save_job(&job);
    repo::sync_registry(&job);
    repo::update_state(|s| s.retries = s.retries.saturating_add(1));
    timers::kick();
    Ok(if by_admin {
        job.status()
    } else {
        job.user_status()
    })
}

/// Refuses to touch a job while its create_canister call is in flight or a cleanup is deleting its canister.
fn require_quiet(job: &Job, now: u64) -> FactoryResult<()> {
    if driver::create_in_flight(job.user) {
        return Err(error(
            FactoryErrorKind::CreateInFlight,
            "the factory is waiting for create_canister on this job; try again in a moment",
        ));
    }
    if repo::lease(job.user).is_cleaning(now) {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            "an admin cleanup is deleting this job's canister",
        ));
    }
    Ok(())
}

/// Fails an active job at once: its task, if any, stops at its next await.
pub fn cancel(by: Principal, user: Principal, now: u64) -> FactoryResult<CreationStatus> {
    let Some(mut job) = repo::job(user) else {
        return Err(error(FactoryErrorKind::JobNotFound, "no job for this user"));
    };
    if !job.state.is_active() {
        return Err(error(
            FactoryErrorKind::NotAllowed,
            format!(
                "the job is {}; only an active job can be cancelled",
                job.state.name()
            ),
        ));
    }
    require_quiet(&job, now)?;
    let stage = job.state;
    repo::take_over(user);
    let cancelled = error(
        FactoryErrorKind::Cancelled { by },
        format!("cancelled by admin {} at {}", by.to_text(), stage.name()),
    );
    driver::fail_job(&mut job, cancelled.at(stage), now);
    Ok(job.status())
}

// ---- admins: jobs, registry, stats ----------------------------------------------------------------

pub fn jobs(req: JobPageRequest) -> FactoryResult<JobPage> {
    let limit = page_limit(req.limit)?;
    let mut items: Vec<CreationStatus> = repo::with(|r| {
        let start = req.after.unwrap_or(Principal::from_slice(&[]));
        r.jobs
            .range(start..)
            .map(|e| e.value())
            .filter(|j| Some(j.user) != req.after && req.state.is_none_or(|s| s == j.state))
            .take(limit + 1)
            .map(|j| j.status())
            .collect()
    });
    let next = page_next(&mut items, limit, |s| s.user);
    Ok(JobPage { items, next })
}

fn page_next<T>(
    items: &mut Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> Principal,
) -> Option<Principal> {
    if items.len() > limit {
        items.pop();
        items.last().map(key)
    } else {
        None
    }
}

pub fn registry(req: RegistryPageRequest) -> FactoryResult<RegistryPage> {
    let limit = page_limit(req.limit)?;
    let mut items: Vec<RegistryEntry> = repo::with(|r| {
        let start = req.after.unwrap_or(Principal::from_slice(&[]));
        r.registry
            .range(start..)
            .map(|e| e.value().0)
            .filter(|e| {
                Some(e.canister_id) != req.after && req.status.is_none_or(|s| s == e.status)
            })
            .take(limit + 1)
            .collect()
    });
    let next = page_next(&mut items, limit, |e| e.canister_id);
    Ok(RegistryPage { items, next })
}

pub fn registry_by_user(user: Principal) -> Vec<RegistryEntry> {
    repo::with(|r| {
        r.registry
            .values()
            .map(|e| e.0)
            .filter(|e| e.created_by == user)
            .collect()
    })
}

pub fn stats() -> FactoryStats {
    let s = repo::state();
    let active = repo::with(|r| r.active.len());
    FactoryStats {
        attempted: s.attempted,
        succeeded: s.succeeded,
        failed: s.failed,
        failed_by_stage: s
            .failed_by_stage
            .iter()
            .map(|(stage, count)| StageCount {
                stage: *stage,
                count: *count,
            })
            .collect(),
        retries: s.retries,
        active_jobs: active,
        cycles_consumed: s.total_consumed.into(),
    }
}

// ---- admins: configuration and reserve ------------------------------------------------------------

pub fn config_view() -> FactoryConfigView {
    let s = repo::state();
    let f = s.funding();
    FactoryConfigView {
        enabled: s.enabled,
        runway_days: f.runway_days,
        freezing_threshold_days: f.freezing_threshold_days,
        reserved_cycles_limit: f.reserved_cycles_limit.into(),
        min_reserve: s.min_reserve.into(),
        alert_below: s.alert_below.into(),
        max_concurrent_jobs: s.max_concurrent_jobs,
        max_step_attempts: s.max_step_attempts,
        chunked_install_threshold: s.chunked_install_threshold,
    }
}

fn to_u128(field: &str, n: &candid::Nat) -> FactoryResult<u128> {
    u128::try_from(n.0.clone()).map_err(|_| FactoryError::invalid(field, "is too large"))
}

fn check_range(field: &str, value: Option<u32>, min: u32, max: u32) -> FactoryResult<()> {
    match value {
        Some(v) if v < min || v > max => Err(FactoryError::invalid(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

pub fn configure<R: Runtime>(
    rt: &R,
    update: FactoryConfigUpdate,
) -> FactoryResult<FactoryConfigView> {
    let cycles = |field: &str, n: &Option<candid::Nat>| -> FactoryResult<Option<u128>> {
        let Some(v) = n.as_ref().map(|n| to_u128(field, n)).transpose()? else {
            return Ok(None);
        };
        if v > CYCLES_SETTING_MAX {
            return Err(FactoryError::invalid(
                field,
                format!("must be at most {CYCLES_SETTING_MAX}"),
            ));
        }
        Ok(Some(v))
    };
    let min_reserve = cycles("min_reserve", &update.min_reserve)?;
    let alert_below = cycles("alert_below", &update.alert_below)?;
    let reserved_cycles_limit = cycles("reserved_cycles_limit", &update.reserved_cycles_limit)?;
    check_range("runway_days", update.runway_days, 0, 3_650)?;
    check_range(
        "freezing_threshold_days",
        update.freezing_threshold_days,
        1,
        365,
    )?;
    check_range("max_concurrent_jobs", update.max_concurrent_jobs, 1, 100)?;
    check_range("max_step_attempts", update.max_step_attempts, 1, 20)?;
    if update
        .chunked_install_threshold
        .is_some_and(|n| n > 1_900_000)
    {
        return Err(FactoryError::invalid(
            "chunked_install_threshold",
            "a single install message must stay under 2 MiB",
        ));
    }
    repo::update_state(|s| {
        let mut f = s.funding();
        f.runway_days = update.runway_days.unwrap_or(f.runway_days);
        f.freezing_threshold_days = update
            .freezing_threshold_days
            .unwrap_or(f.freezing_threshold_days);
        f.reserved_cycles_limit = reserved_cycles_limit.unwrap_or(f.reserved_cycles_limit);
        s.funding = Some(f);
        s.min_reserve = min_reserve.unwrap_or(s.min_reserve);
        s.alert_below = alert_below.unwrap_or(s.alert_below);
        s.max_concurrent_jobs = update.max_concurrent_jobs.unwrap_or(s.max_concurrent_jobs);
        s.max_step_attempts = update.max_step_attempts.unwrap_or(s.max_step_attempts);
        s.chunked_install_threshold = update
            .chunked_install_threshold
            .unwrap_or(s.chunked_install_threshold);
    });
    check_reserve_alert(rt);
    Ok(config_view())
}

/// The emergency brake: while paused no job spends anything (each task stops at its next await, the
/// tick leases nothing); new requests are still queued. Unpausing resumes every job from its facts.
pub fn set_paused(paused: bool) -> bool {
    repo::update_state(|s| s.paused = Some(paused));
    if !paused {
        timers::kick();
    }
    paused
}

pub fn set_enabled(enabled: bool) {
    repo::update_state(|s| s.enabled = enabled);
    if enabled {
        timers::kick();
    }
}

/// The reserve's book figure and what of it the balance really backs.
pub fn reserve_status<R: Runtime>(rt: &R) -> ReserveStatus {
    let s = repo::state();
    let liquid = rt.liquid_balance();
    let floor = funding::floor(rt.footprint());
    let spendable = funding::spendable(s.reserve, liquid, floor);
    ReserveStatus {
        reserve: s.reserve.into(),
        spendable: spendable.into(),
        liquid_balance: liquid.into(),
        floor: floor.into(),
        min_reserve: s.min_reserve.into(),
        alert_below: s.alert_below.into(),
        total_consumed: s.total_consumed.into(),
        low: spendable < s.alert_below,
        unbacked: spendable < s.reserve,
    }
}

/// Records (and logs) an alert when the spendable reserve falls below the alert level, and again when
/// the cause changes (the book figure is low, or the balance no longer backs it); re-arms above it.
pub fn check_reserve_alert<R: Runtime>(rt: &R) {
    let s = repo::state();
    let status = reserve_status(rt);
    let cause = match (status.low, status.unbacked) {
        (false, _) => None,
        (true, true) => Some(AlertCause::BalanceLow),
        (true, false) => Some(AlertCause::ReserveLow),
    };
    if cause == s.alert_cause {
        return;
    }
    repo::update_state(|s| s.alert_cause = cause);
    let Some(cause) = cause else {
        return;
    };
    let spendable = to_u128("spendable", &status.spendable).unwrap_or(u128::MAX);
    super::log(&format!(
        "ALERT ({cause:?}): the factory can spend {spendable} cycles (reserve {}, liquid balance {}, floor {}), below the alert level {}; top it up",
        s.reserve, status.liquid_balance, status.floor, s.alert_below
    ));
    repo::record_alert(rt.now(), cause, s.reserve, spendable, s.alert_below);
}

/// Adds the cycles attached to the call to the reserve (none are accepted if the sum would overflow).
pub fn top_up<R: Runtime>(rt: &R) -> FactoryResult<ReserveStatus> {
    let available = ic_cdk::api::msg_cycles_available();
    add_to_reserve(available)?;
    ic_cdk::api::msg_cycles_accept(available);
    check_reserve_alert(rt);
    Ok(reserve_status(rt))
}

fn add_to_reserve(amount: u128) -> FactoryResult<()> {
    let reserve = repo::state().reserve;
    let Some(sum) = reserve.checked_add(amount) else {
        return Err(error(
            FactoryErrorKind::Overflow {
                what: "reserve".into(),
            },
            format!("adding {amount} to the reserve of {reserve} would overflow"),
        ));
    };
    repo::update_state(|s| s.reserve = sum);
    Ok(())
}

/// Sets aside `amount` of the cycles the canister already holds (e.g. deposited with `deposit_cycles`):
/// only what its liquid balance holds above the floor and beyond the reserve.
pub fn allocate<R: Runtime>(rt: &R, amount: candid::Nat) -> FactoryResult<ReserveStatus> {
    let amount = to_u128("amount", &amount)?;
    let s = repo::state();
    let above_floor = rt
        .liquid_balance()
        .saturating_sub(funding::floor(rt.footprint()));
    let free = above_floor.saturating_sub(s.reserve);
    if amount > free {
        return Err(error(
            FactoryErrorKind::BalanceInsufficient {
                balance: free.into(),
                required: amount.into(),
            },
            format!("only {free} cycles of the liquid balance above the floor are not yet in the reserve"),
        ));
    }
    add_to_reserve(amount)?;
    check_reserve_alert(rt);
    Ok(reserve_status(rt))
}

pub fn alerts() -> Vec<ReserveAlert> {
    repo::with(|r| r.alerts.values().map(|a| a.0).collect())
}

// ---- admins: the personal WASM --------------------------------------------------------------------

pub fn wasm_put_chunk(index: u32, bytes: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    if bytes.len() > WASM_PIECE_MAX {
        return Err(FactoryError::invalid(
            "bytes",
            format!("a piece is at most {WASM_PIECE_MAX} bytes"),
        ));
    }
    let staged = repo::with(|r| r.wasm_staged.len());
    if index as u64 > staged {
        return Err(FactoryError::invalid(
            "index",
            format!("pieces go in order: expected {staged}"),
        ));
    }
    if staged as usize * WASM_PIECE_MAX >= WASM_MAX as usize && index as u64 == staged {
        return Err(error(
            FactoryErrorKind::WasmTooLarge {
                max: WASM_MAX,
                actual: (staged + 1) * WASM_PIECE_MAX as u64,
            },
            "the module is too large",
        ));
    }
    repo::with(|r| r.wasm_staged.insert(index, bytes.into_vec()));
    Ok(wasm_info())
}

/// Activates the staged module if its SHA-256 is the expected one; the staging area is cleared either way.
pub fn wasm_commit(expected_sha256: serde_bytes::ByteBuf) -> FactoryResult<WasmInfo> {
    let mut module = Vec::new();
    repo::with(|r| {
        for piece in r.wasm_staged.values() {
            module.extend_from_slice(&piece);
        }
    });
    if module.is_empty() {
        return Err(FactoryError::invalid("module", "no pieces are staged"));
    }
    let actual: [u8; 32] = Sha256::digest(&module).into();
    let clear_staged = || repo::with(|r| r.wasm_staged.clear_new());
    if actual.as_slice() != expected_sha256.as_slice() {
        clear_staged();
        return Err(error(
            FactoryErrorKind::WasmHashMismatch {
                expected: hex::encode(&expected_sha256),
                actual: hex::encode(actual),
            },
            "the staged module does not have the expected SHA-256; upload it again",
        ));
    }
    if !module.starts_with(b"\0asm") && !module.starts_with(&[0x1f, 0x8b]) {
        clear_staged();
        return Err(FactoryError::invalid(
            "module",
            "is neither wasm nor gzipped wasm",
        ));
    }
    repo::with(|r| {
        r.wasm.clear_new();
        for (i, piece) in module.chunks(WASM_PIECE_MAX).enumerate() {
            r.wasm.insert(i as u32, piece.to_vec());
        }
        r.wasm_staged.clear_new();
    });
    repo::update_state(|s| {
        s.wasm_sha256 = Some(serde_bytes::ByteBuf::from(actual.to_vec()));
        s.wasm_len = module.len() as u64;
    });
    Ok(wasm_info())
}

pub fn wasm_info() -> WasmInfo {
    let s = repo::state();
    WasmInfo {
        sha256: s.wasm_sha256.as_ref().map(hex::encode).unwrap_or_default(),
        len: s.wasm_len,
        staged_chunks: repo::with(|r| r.wasm_staged.len() as u32),
    }
}
