//! The stages, each "once": it reads the facts persisted so far, acts, and persists what it learned
//! before anything else. Every await is followed by `cx.fresh()`: the job must still be the task's.

use super::witness::{canister_of, confirm, explain, import_call, personal};
use super::{current, err, Cx, Halt, Step};
use super::{InFlight, BATCH_BYTES, BATCH_COUNT, CONNECTION_BATCH, PERSONAL_API_MAJOR};
use crate::factory::api::*;
use crate::factory::control::Control;
use crate::factory::funding::{self, CapsuleSize};
use crate::factory::repo::{self, BlobCursor, Custody, Job, JobFunding};
use crate::factory::runtime::{CallErr, NewCanister, Runtime, DESTINATION_INVALID};
use candid::Principal;
use capsule::transfer::{
    export, ConnectionBatch, ImportAck, ImportBegin, ImportPhase, ImportStatus, MemoryBatch,
};
use capsule::{CapsuleStatus, Manifest};
use ic_management_canister_types::CanisterInstallMode;

// ---- Exporting ------------------------------------------------------------------------------------

pub(super) async fn export_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
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

pub(super) async fn create_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
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
    let policy = st.funding();
    let plan = funding::plan(capsule_size(job, st.wasm_len), &policy);
    // The whole migration must be covered before it starts; only the first part is paid now.
    let spendable = funding::spendable(
        st.reserve,
        cx.rt.liquid_balance(),
        funding::floor(cx.rt.footprint()),
    );
    // Saturating: a min_reserve at the top of the range must refuse, not wrap into a small number.
    let required = st.min_reserve.saturating_add(plan.total());
    if spendable < required || required == u128::MAX {
        let required = candid::Nat::from(st.min_reserve) + candid::Nat::from(plan.total());
        return Err(err(
            FactoryErrorKind::ReserveInsufficient { reserve: spendable.into(), required: required.clone() },
            format!("the factory can spend {spendable} cycles but this migration needs {} ({} for the canister, {} runway, {} transmission, {} minimum reserve); an admin must top up the reserve", required.0, plan.initial, plan.runway, plan.transmission, st.min_reserve),
        ).into());
    }
    let cycles = plan.initial;
    // Earmark the cycles in the same message as the preflight, so concurrent jobs cannot overdraw.
    repo::update_state(|s| s.reserve -= cycles);
    job.create_in_flight = true;
    job.funding = Some(JobFunding {
        plan,
        ..job.funding.clone().unwrap_or_default()
    });
    cx.save(job)?;
    let user = job.user;
    let new = NewCanister {
        controllers: vec![cx.rt.factory(), user],
        cycles,
        freezing_threshold: policy.freezing_threshold_secs(),
        reserved_cycles_limit: policy.reserved_cycles_limit,
    };
    let created = {
        let _in_flight = InFlight::enter(user);
        cx.rt.create_canister(new).await
    };
    // The answer is a fact whatever happened to the job meanwhile: record it before anything else.
    record_created(user, &created, cx.rt.now(), cycles);
    cx.fresh()?;
    *job = repo::job(user).ok_or(Halt::Stale)?;
    let id = created?;
    crate::factory::service::check_reserve_alert(cx.rt);
    if job.canister_id != Some(id) {
        // The job already had another canister (set by a task this one outlived): this one stays in
        // the registry, known and marked Failed, for an admin to delete.
        return Err(Halt::Stale);
    }
    cx.failpoint("create.after").await?;
    Ok(CreationState::Installing)
}

/// What the capsule the job moves weighs, from the manifest taken at export.
fn capsule_size(job: &Job, wasm_bytes: u64) -> CapsuleSize {
    let m = job.expected.clone().unwrap_or_default();
    CapsuleSize {
        bytes: m.blob_bytes + m.inline_bytes,
        items: m.memories + m.connections,
        // Every blob's last chunk may be partial: at most one more than the bytes need.
        chunks: m.blob_bytes.div_ceil(capsule::limits::CHUNK_SIZE as u64) + m.blobs,
        wasm_bytes,
    }
}

/// Writes create_canister's outcome into the stored job and the registry, in the message of the reply.
pub(super) fn record_created(
    user: Principal,
    created: &Result<Principal, CallErr>,
    now: u64,
    cycles: u128,
) {
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
                    job.funding
                        .get_or_insert_with(Default::default)
                        .initial_paid = cycles;
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
                costs: None,
            });
            repo::update_state(|s| s.total_consumed = s.total_consumed.saturating_add(cycles));
            crate::factory::admission::record_canister(user);
        }
        // The IC refunds the attached cycles of a rejected call: give them back to the reserve.
        Err(_) => repo::update_state(|s| s.reserve = s.reserve.saturating_add(cycles)),
    }
    if let Some(job) = job {
        repo::save_job(&job);
    }
}

// ---- Installing -----------------------------------------------------------------------------------

pub(super) async fn install_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
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
    let status = cx.rt.canister_status(id).await;
    cx.fresh()?;
    let status = match status {
        Ok(s) => s,
        Err(e) => return Err(explain(cx, job, e.into()).await),
    };
    let mode = match status.module_hash {
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
        top_up_for_install(cx, job, id, status.cycles).await?;
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

/// Before an install (a retry's reinstall above all), tops the canister up to what the install needs:
/// the IC refuses an install the canister cannot prepay. Paid from the reserve into the first part.
async fn top_up_for_install<R: Runtime>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    id: Principal,
    cycles: u128,
) -> Step<()> {
    let funding = job.funding.clone().unwrap_or_default();
    let floor = funding::install_floor(&funding.plan, &repo::state().funding());
    let Some(top) = floor.checked_sub(cycles).filter(|t| *t > 0) else {
        return Ok(());
    };
    // The balance was read in an await: the user may have changed the canister since. Cycles go only
    // into a canister whose history is still the factory's.
    confirm(cx, job, false).await?;
    spend_reserve(top, "the top-up for the canister's install")?;
    let deposited = deposit(cx, job.user, id, top).await;
    if deposited.is_err() {
        refund_reserve(top);
    }
    cx.fresh()?;
    if let Err(e) = deposited {
        return Err(explain(cx, job, e.into()).await);
    }
    let funding = job.funding.get_or_insert_with(Default::default);
    funding.initial_paid = funding.initial_paid.saturating_add(top);
    job.cycles_spent = job.cycles_spent.saturating_add(top);
    cx.save(job)?;
    Ok(())
}

/// Whether the installed personal canister has received nothing yet, for this user, from this factory.
pub(super) async fn import_untouched<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<bool> {
    let s: ImportStatus = import_call(cx, job, "import_status", ()).await?;
    Ok(s.phase == ImportPhase::Ready
        && s.owner == Some(job.user)
        && s.importer == Some(cx.rt.factory()))
}

pub(super) async fn check_version<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<()> {
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

pub(super) async fn import_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
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
pub(super) async fn detect_finalized<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<()> {
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

pub(super) fn manifest_mismatch(expected: Box<Manifest>, actual: Box<Manifest>) -> FactoryError {
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

pub(super) async fn verify_once<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job) -> Step<CreationState> {
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
    deposit_runway(cx, job, id).await?;
    capsule::service::set_status(user, CapsuleStatus::Migrated { canister_id: id });
    Ok(CreationState::Completed)
}

/// The second funding part, once the user holds the canister alone (deposit_cycles needs no
/// controller): a user who tampered before the handoff never gets here. Paid at most once: marked
/// paid before the call, given back to the reserve if the IC refused it.
pub(super) async fn deposit_runway<R: Runtime>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    id: Principal,
) -> Step<()> {
    let funding = job.funding.clone().unwrap_or_default();
    let runway = funding.plan.runway;
    if funding.runway_paid > 0 || runway == 0 {
        return Ok(());
    }
    cx.failpoint("runway.before").await?;
    spend_reserve(runway, "the canister's runway")?;
    set_runway_paid(job, runway);
    cx.save(job)?;
    let deposited = deposit(cx, job.user, id, runway).await;
    if deposited.is_err() {
        // Refused: the cycles came back with the reject.
        refund_reserve(runway);
    }
    cx.fresh()?;
    let Err(e) = deposited else {
        return Ok(());
    };
    set_runway_paid(job, 0);
    cx.save(job)?;
    if e.code == DESTINATION_INVALID {
        // The user deleted the canister they now own: nothing to fund, the migration is done.
        return Ok(());
    }
    Err(explain(cx, job, e.into()).await)
}

/// Takes `amount` out of the reserve for `what`, or says why it cannot.
fn spend_reserve(amount: u128, what: &str) -> Result<(), FactoryError> {
    let reserve = repo::state().reserve;
    if reserve < amount {
        return Err(err(
            FactoryErrorKind::ReserveInsufficient {
                reserve: reserve.into(),
                required: amount.into(),
            },
            format!("the reserve cannot pay {what} now; an admin must top it up"),
        ));
    }
    repo::update_state(|s| {
        s.reserve -= amount;
        s.total_consumed = s.total_consumed.saturating_add(amount);
    });
    Ok(())
}

/// Gives back cycles that a refused call returned.
fn refund_reserve(amount: u128) {
    repo::update_state(|s| {
        s.reserve = s.reserve.saturating_add(amount);
        s.total_consumed = s.total_consumed.saturating_sub(amount);
    });
}

/// `deposit_cycles`, marked in flight so that an upgrade waits for its reply (and its refund).
async fn deposit<R: Runtime>(
    cx: &Cx<'_, R>,
    user: Principal,
    id: Principal,
    amount: u128,
) -> Result<(), CallErr> {
    let _in_flight = InFlight::enter(user);
    cx.rt.deposit_cycles(id, amount).await
}

fn set_runway_paid(job: &mut Job, runway: u128) {
    let funding = job.funding.get_or_insert_with(Default::default);
    job.cycles_spent = job.cycles_spent - funding.runway_paid + runway;
    funding.runway_paid = runway;
}

/// Checks the finalized copy, sets the controllers to {user} and confirms the handoff in the history.
pub(super) async fn hand_over<R: Runtime>(
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
