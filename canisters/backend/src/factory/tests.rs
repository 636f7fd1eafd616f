//! The driver against a scripted fake of the IC: every step's lost replies and stale tasks, the user
//! tampering between two awaits, reply bombs, traps, and admin actions interleaving with a task.
//! Each test runs on its own thread, so the stable structures (thread-locals) start empty.

mod fake;

use super::api::*;
use super::driver::{self, Task, LEASE_NANOS};
use super::repo;
use super::runtime::Runtime;
use super::{cleanup, service};
use candid::{Encode, Principal};
use capsule::{CapsuleStatus, Manifest};
use fake::*;
use rstest::rstest;
use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;

// ---- set-up and driving ---------------------------------------------------------------------------

/// A user with a capsule of three memories and an activated personal wasm, and a funded reserve.
fn setup() -> Fake {
    capsule::service::capsule_create(
        user(),
        START,
        capsule::CapsuleInput {
            name: "A".into(),
            bio: "".into(),
        },
    )
    .unwrap();
    for i in 0..3 {
        capsule::service::memory_create(
            user(),
            START,
            capsule::MemoryInput {
                title: format!("m{i}"),
                description: String::new(),
                tags: vec![],
                kind: capsule::MemoryKind::Note,
                mime_type: "text/plain".into(),
                asset: capsule::AssetInput::Inline {
                    bytes: vec![i; 100].into(),
                },
            },
        )
        .unwrap();
    }
    let peer = Principal::from_slice(&[9; 29]);
    capsule::service::connection_add(user(), START, peer, "friend".into()).unwrap();
    service::wasm_put_chunk(0, WASM.to_vec().into()).unwrap();
    service::wasm_commit(sha(WASM).into()).unwrap();
    repo::update_state(|s| s.reserve = 100_000_000_000_000);
    service::create(user(), START, None).unwrap();
    Fake::new()
}

/// Leases the job to a new task, as a tick would.
fn lease(fake: &Fake) -> Option<Task> {
    driver::lease_runnable(fake.now()).into_iter().next()
}

/// Runs one task; `false` if its callback trapped.
fn run_task(fake: &Fake, task: Task) -> bool {
    std::panic::catch_unwind(AssertUnwindSafe(|| block_on(driver::run(fake, task)))).is_ok()
}

/// Ticks, advancing time, until the job settles (or 50 rounds pass).
fn drive(fake: &Fake) -> repo::Job {
    for _ in 0..50 {
        if let Some(task) = lease(fake) {
            run_task(fake, task);
        }
        let job = repo::job(user()).unwrap();
        if !job.state.is_active() {
            return job;
        }
        fake.now.set(fake.now.get() + LEASE_NANOS + 1);
    }
    repo::job(user()).unwrap()
}

fn kind(job: &repo::Job) -> FactoryErrorKind {
    job.last_error.clone().expect("an error").kind
}

fn manifest() -> Manifest {
    capsule::manifest::of(user()).unwrap()
}

// ---- the happy path and lost replies --------------------------------------------------------------

#[test]
fn a_job_completes_and_hands_the_canister_over() {
    let fake = setup();
    let before = manifest();
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    let id = job.canister_id.unwrap();
    assert_eq!(fake.canister(id).controllers, vec![user()]);
    assert_eq!(
        capsule::service::status_of(user()),
        CapsuleStatus::Migrated { canister_id: id }
    );
    assert_eq!(manifest(), before);
    assert_eq!(repo::state().succeeded, 1);
    assert_eq!(fake.count("create_canister"), 1);
    assert_eq!(fake.count("install_code"), 1);
}

/// A reply lost after its call took effect: the job still completes, once, with every side effect once.
#[rstest]
#[case::canister_status("canister_status")]
#[case::install_code("install_code")]
#[case::api_version("api_version")]
#[case::import_begin("import_begin")]
#[case::import_memories("import_memories")]
#[case::import_connections("import_connections")]
#[case::import_finalize("import_finalize")]
#[case::import_status("import_status")]
#[case::update_settings("update_settings")]
#[case::canister_info("canister_info")]
fn a_lost_reply_is_recognized(#[case] method: &str) {
    let fake = setup();
    fake.on(method, 1, Act::LoseReply);
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(repo::state().succeeded, 1);
    assert_eq!(fake.count("create_canister"), 1);
    assert_eq!(
        fake.canister(job.canister_id.unwrap()).controllers,
        vec![user()]
    );
    let factory_changes = fake.canister(job.canister_id.unwrap()).changes.len();
    // created, installed (a second install only if the first one's reply was lost), handed over
    assert!(factory_changes <= 4, "{factory_changes} changes");
}

// ---- one task per job -----------------------------------------------------------------------------

/// While a task awaits, a newer task takes the job (its lease expired): the old task writes nothing
/// more and stops; the new one completes the job, counted once.
#[rstest]
#[case::export("export.before")]
#[case::install("install_code")]
#[case::version("api_version")]
#[case::import("import_memories")]
#[case::connections("import_connections")]
#[case::finalize("import_finalize")]
#[case::info("canister_info")]
#[case::verify("import_status")]
#[case::handoff("update_settings")]
fn a_stale_task_stops_at_its_next_await(#[case] method: &str) {
    let fake = setup();
    let first = lease(&fake).unwrap();
    fake.on(
        method,
        1,
        Act::Meanwhile(|f| {
            // The lease is over and the tick hands the job to a new task.
            f.now.set(f.now.get() + LEASE_NANOS + 1);
            repo::update_lease(user(), |l| l.until = 0);
            let second = lease(f).expect("the job is leased again");
            SECOND.with(|s| s.set(Some(second)));
            TAKEN.with(|t| *t.borrow_mut() = repo::job(user()));
        }),
    );
    assert!(run_task(&fake, first));
    let second = SECOND.with(|s| s.get()).expect("taken over");
    assert_eq!(repo::lease(user()).epoch, second.epoch);
    assert_eq!(
        repo::job(user()),
        TAKEN.with(|t| t.borrow().clone()),
        "the stale task wrote nothing after the take-over"
    );
    assert!(run_task(&fake, second));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(repo::state().succeeded, 1);
    assert_eq!(repo::state().failed, 0);
}

/// While create_canister is in flight the task is alive however long it takes: no tick leases the job.
#[test]
fn a_job_awaiting_create_canister_is_not_leased_again() {
    let fake = setup();
    fake.on(
        "create_canister",
        1,
        Act::Meanwhile(|f| {
            f.now.set(f.now.get() + 10 * LEASE_NANOS);
            assert!(lease(f).is_none());
            assert!(matches!(
                service::cancel(admin(), user(), START),
                Err(FactoryError {
                    kind: FactoryErrorKind::CreateInFlight,
                    ..
                })
            ));
        }),
    );
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(fake.count("create_canister"), 1);
}

thread_local! {
    static SECOND: Cell<Option<Task>> = const { Cell::new(None) };
    static TAKEN: RefCell<Option<repo::Job>> = const { RefCell::new(None) };
}

#[test]
fn a_cancel_during_an_await_fails_the_job_and_the_task_stops() {
    let fake = setup();
    fake.on(
        "import_memories",
        1,
        Act::Meanwhile(|_| {
            service::cancel(admin(), user(), START).unwrap();
        }),
    );
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    assert_eq!(kind(&job), FactoryErrorKind::Cancelled { by: admin() });
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
    // The stale task sent nothing after its await.
    assert_eq!(
        fake.count("import_connections") + fake.count("import_finalize"),
        0
    );
    assert_eq!(repo::state().failed, 1);
}

#[test]
fn fail_never_overwrites_a_completed_job() {
    let fake = setup();
    let mut job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed);
    let id = job.canister_id.unwrap();
    driver::fail_job(
        &mut job,
        FactoryError::new(FactoryErrorKind::CanisterMissing, "late"),
        START,
    );
    assert_eq!(repo::job(user()).unwrap().state, CreationState::Completed);
    assert_eq!(
        capsule::service::status_of(user()),
        CapsuleStatus::Migrated { canister_id: id }
    );
    assert_eq!(repo::state().failed, 0);
}

// ---- the user as co-controller --------------------------------------------------------------------

#[rstest]
#[case::before_install("canister_status")]
#[case::before_import("api_version")]
#[case::mid_import("import_memories")]
#[case::before_finalize("import_finalize")]
#[case::before_handoff("import_status")]
fn the_user_removing_the_factory_fails_the_job(#[case] method: &str) {
    let fake = setup();
    fake.on(
        method,
        1,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.user_sets_controllers(id, vec![user()]);
        }),
    );
    let before = manifest();
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    assert!(
        matches!(kind(&job), FactoryErrorKind::ControlLost { by: Some(b), .. } if b == user()),
        "{:?}",
        kind(&job)
    );
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
    assert_eq!(manifest(), before);
    assert_eq!(
        repo::registry_entry(job.canister_id.unwrap())
            .unwrap()
            .status,
        CreationState::Failed
    );
    assert!(
        service::retry(user(), START, true).is_err(),
        "a tampered job is not retried"
    );
}

#[rstest]
#[case::before_install("canister_status")]
#[case::mid_import("import_memories")]
#[case::before_finalize("import_finalize")]
#[case::before_handoff("import_status")]
fn the_user_installing_own_code_fails_the_job(#[case] method: &str) {
    let fake = setup();
    fake.on(
        method,
        1,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.user_installs(id, sha(b"the user's module"));
        }),
    );
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    assert!(
        matches!(kind(&job), FactoryErrorKind::ModuleChanged { by: Some(b), .. } if b == user()),
        "{:?}",
        kind(&job)
    );
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
    assert_eq!(fake.count("update_settings"), 0, "nothing was handed over");
}

/// The user reinstalls the factory's very module (same hash): the history still names them.
#[test]
fn the_user_reinstalling_the_same_module_is_still_tampering() {
    let fake = setup();
    fake.on(
        "import_memories",
        1,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.user_installs(id, sha(WASM));
        }),
    );
    let job = drive(&fake);
    assert!(matches!(
        kind(&job),
        FactoryErrorKind::ModuleChanged { by: Some(_), .. }
    ));
}

/// The expected `api_version` record with an extra field: `vec null` of 2^32-1 elements, in a few bytes.
fn reply_bomb() -> Vec<u8> {
    #[derive(candid::CandidType)]
    struct Bomb {
        major: u32,
        minor: u32,
        junk: Vec<()>,
    }
    let one = Encode!(&Bomb {
        major: 1,
        minor: 0,
        junk: vec![()]
    })
    .unwrap();
    let two = Encode!(&Bomb {
        major: 1,
        minor: 0,
        junk: vec![(); 2]
    })
    .unwrap();
    let at = one
        .iter()
        .zip(&two)
        .position(|(a, b)| a != b)
        .expect("the length differs");
    [&one[..at], &[0xff, 0xff, 0xff, 0xff, 0x0f], &one[at + 1..]].concat()
}

#[test]
fn a_reply_bomb_fails_the_job_instead_of_looping() {
    let fake = setup();
    fake.on("api_version", 1, Act::Reply(reply_bomb()));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    assert!(
        matches!(kind(&job), FactoryErrorKind::BadReply { .. }),
        "{:?}",
        kind(&job)
    );
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
}

// ---- traps ----------------------------------------------------------------------------------------

#[test]
fn a_step_that_keeps_trapping_fails_the_job() {
    let fake = setup();
    for n in 1..=10 {
        fake.on("import_memories", n, Act::Trap);
    }
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    let max = repo::state().max_step_attempts;
    assert_eq!(
        kind(&job),
        FactoryErrorKind::StepTrapped {
            stage: CreationState::Importing,
            times: max
        }
    );
    assert_eq!(fake.count("import_memories") as u32, max);
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
}

#[test]
fn a_trap_in_the_create_callback_leaves_no_create_in_flight() {
    let fake = setup();
    fake.on("create_canister", 1, Act::Trap);
    let task = lease(&fake).unwrap();
    assert!(!run_task(&fake, task));
    assert!(
        !driver::create_in_flight(user()),
        "the in-flight mark left with the dropped task"
    );
    let job = drive(&fake);
    // The canister exists but its id was lost with the trap: only an admin may retry.
    assert_eq!(kind(&job), FactoryErrorKind::CreateOutcomeUnknown);
}

// ---- finalize, reinstall, cleanup -----------------------------------------------------------------

#[test]
fn a_lost_finalize_reply_keeps_the_verified_copy() {
    let fake = setup();
    fake.on("import_finalize", 1, Act::LoseReply);
    for n in 2..=10 {
        fake.on("import_finalize", n, Act::Reject(2));
    }
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    assert!(
        job.cursor.finalized,
        "import_status showed the import finalized"
    );
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Locked);
    let retried = service::retry(user(), fake.now(), false).unwrap();
    assert_eq!(retried.state, CreationState::Verifying);
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(
        fake.count("install_code"),
        1,
        "no reinstall over the verified copy"
    );
}

#[test]
fn a_retry_after_a_partial_import_reinstalls_because_the_canister_says_so() {
    let fake = setup();
    fake.on("import_finalize", 1, Act::Reject(4));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    service::retry(user(), fake.now(), false).unwrap();
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(fake.count("install_code"), 2);
}

#[test]
fn cleanup_racing_a_retry_leaves_a_coherent_state() {
    let fake = setup();
    fake.on("import_begin", 1, Act::Reject(4));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    let id = job.canister_id.unwrap();
    fake.on(
        "stop_canister",
        1,
        Act::Meanwhile(|_| {
            let retried = service::retry(user(), START, false);
            assert!(matches!(
                retried,
                Err(FactoryError {
                    kind: FactoryErrorKind::NotAllowed,
                    ..
                })
            ));
            assert!(service::cancel(admin(), user(), START).is_err());
        }),
    );
    block_on(cleanup::cleanup(&fake, user())).unwrap();
    assert!(repo::job(user()).is_none());
    assert!(repo::registry_entry(id).unwrap().deleted);
    assert_eq!(capsule::service::status_of(user()), CapsuleStatus::Active);
    // The user can start over, and the new job runs (the cleanup's mark is gone).
    service::create(user(), fake.now(), None).unwrap();
    assert_eq!(drive(&fake).state, CreationState::Completed);
}

#[test]
fn a_cleanup_cut_short_blocks_the_job_only_for_a_while() {
    let fake = setup();
    fake.on("import_begin", 1, Act::Reject(4));
    assert_eq!(drive(&fake).state, CreationState::Failed);
    // The cleanup's callback traps (or an upgrade ends it): it never clears its mark.
    fake.on("stop_canister", 1, Act::Trap);
    let cut = std::panic::catch_unwind(AssertUnwindSafe(|| {
        block_on(cleanup::cleanup(&fake, user()))
    }));
    assert!(cut.is_err());
    assert!(service::retry(user(), fake.now(), false).is_err());
    fake.now.set(fake.now() + 21 * 60 * 1_000_000_000);
    let retried = service::retry(user(), fake.now(), false).unwrap();
    assert_eq!(retried.state, CreationState::Exporting);
}

#[test]
fn cleanup_of_a_canister_already_gone_or_given_away_forgets_the_job() {
    let fake = setup();
    fake.on(
        "import_begin",
        1,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.user_sets_controllers(id, vec![user()]);
        }),
    );
    let job = drive(&fake);
    assert!(matches!(kind(&job), FactoryErrorKind::ControlLost { .. }));
    let id = job.canister_id.unwrap();
    block_on(cleanup::cleanup(&fake, user())).unwrap();
    assert!(repo::job(user()).is_none());
    assert!(
        !repo::registry_entry(id).unwrap().deleted,
        "released to the user, not deleted"
    );
    // The user keeps that canister: another one needs an admin's grant.
    assert!(matches!(
        service::create(user(), fake.now(), None),
        Err(FactoryError {
            kind: FactoryErrorKind::CanisterLimitReached { limit: 1 },
            ..
        })
    ));
    super::admission::grant(user()).unwrap();

    // And a canister deleted by someone else counts as deleted.
    service::create(user(), fake.now(), None).unwrap();
    fake.on("import_begin", 2, Act::Reject(4));
    let job = drive(&fake);
    let id = job.canister_id.unwrap();
    fake.canisters.borrow_mut().remove(&id);
    block_on(cleanup::cleanup(&fake, user())).unwrap();
    assert!(repo::registry_entry(id).unwrap().deleted);
    assert_eq!(
        super::admission::user(user()).canisters,
        1,
        "the released one still counts"
    );
}

// ---- funding --------------------------------------------------------------------------------------

const RESERVE: u128 = 100_000_000_000_000;

/// The canister gets the first part at creation with the factory's settings, and the runway only after
/// the handoff; the reserve pays for exactly what was sent, transmission included.
#[test]
fn the_canister_is_funded_in_two_parts() {
    let fake = setup();
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    let funding = job.funding.clone().unwrap();
    let plan = funding.plan;
    assert!(plan.initial > 500_000_000_000 && plan.runway > 0);
    let c = fake.canister(job.canister_id.unwrap());
    assert_eq!(c.cycles, plan.initial + plan.runway);
    assert_eq!(c.freezing_threshold, 30 * 86_400);
    assert_eq!(funding.initial_paid, plan.initial);
    assert_eq!(funding.runway_paid, plan.runway);
    assert!(funding.transmission_paid > 0);
    assert_eq!(
        job.cycles_spent,
        plan.initial + plan.runway + funding.transmission_paid
    );
    assert_eq!(repo::state().reserve, RESERVE - job.cycles_spent);
    assert_eq!(repo::state().total_consumed, job.cycles_spent);
    let entry = repo::registry_entry(job.canister_id.unwrap()).unwrap();
    assert_eq!(entry.costs, Some(funding.costs()));
    // The canister was handed over before the runway was deposited.
    let calls = fake.calls.borrow();
    let handoff = calls.iter().position(|m| m == "update_settings").unwrap();
    let deposit = calls.iter().position(|m| m == "deposit_cycles").unwrap();
    assert!(handoff < deposit, "{calls:?}");
}

/// A user who tampers before the handoff keeps the first part and gets no runway.
#[test]
fn a_tampering_user_gets_only_the_first_part() {
    let fake = setup();
    fake.on(
        "import_finalize",
        1,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.user_installs(id, sha(b"the user's module"));
        }),
    );
    let job = drive(&fake);
    assert!(kind(&job).is_tamper(), "{:?}", kind(&job));
    let funding = job.funding.unwrap();
    assert_eq!(funding.runway_paid, 0);
    assert_eq!(fake.count("deposit_cycles"), 0);
    assert_eq!(
        fake.canister(job.canister_id.unwrap()).cycles,
        funding.plan.initial
    );
    assert_eq!(
        repo::state().reserve,
        RESERVE - funding.plan.initial - funding.transmission_paid
    );
}

/// A refused deposit is given back to the reserve and retried; it is never paid twice.
#[test]
fn a_refused_runway_deposit_is_refunded_and_retried() {
    let fake = setup();
    fake.on("deposit_cycles", 1, Act::Reject(2));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(fake.count("deposit_cycles"), 2);
    let plan = job.funding.clone().unwrap().plan;
    assert_eq!(
        fake.canister(job.canister_id.unwrap()).cycles,
        plan.initial + plan.runway
    );
    assert_eq!(repo::state().reserve, RESERVE - job.cycles_spent);
}

/// A retry's reinstall finds the canister too poor to prepay its install: the factory tops it up first,
/// from the reserve, and counts it in the first part.
#[test]
fn a_reinstall_is_topped_up_when_the_canister_cannot_prepay_it() {
    let fake = setup();
    fake.on("import_finalize", 1, Act::Reject(4));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    let id = job.canister_id.unwrap();
    fake.with(id, |c| c.cycles = 1_000);
    service::retry(user(), fake.now(), false).unwrap();
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    let funding = job.funding.unwrap();
    let floor = super::funding::install_floor(&funding.plan, &repo::state().funding());
    assert_eq!(funding.initial_paid, funding.plan.initial + floor - 1_000);
    assert_eq!(fake.count("deposit_cycles"), 2, "the top-up and the runway");
    assert_eq!(fake.canister(id).cycles, floor + funding.plan.runway);
    assert_eq!(repo::state().reserve, RESERVE - job.cycles_spent);
}

/// The user drains the canister and installs their own code while the factory reads its balance before a
/// reinstall: the history shows it before any top-up is paid, and no retry follows.
#[test]
fn a_user_who_drains_the_canister_before_a_reinstall_gets_no_top_up() {
    let fake = setup();
    fake.on("import_finalize", 1, Act::Reject(4));
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Failed);
    fake.on(
        "canister_status",
        2,
        Act::Meanwhile(|f| {
            let id = f.only_canister();
            f.with(id, |c| c.cycles = 0);
            f.user_installs(id, sha(b"the user's module"));
        }),
    );
    service::retry(user(), fake.now(), false).unwrap();
    let job = drive(&fake);
    assert!(kind(&job).is_tamper(), "{:?}", kind(&job));
    assert_eq!(fake.count("deposit_cycles"), 0);
    let funding = job.funding.unwrap();
    assert_eq!(funding.initial_paid, funding.plan.initial);
    assert_eq!(repo::state().reserve, RESERVE - job.cycles_spent);
}

/// The user's view of a funding shortage names no balance; the admin's keeps the figures.
#[test]
fn users_see_no_balances() {
    let fake = setup();
    repo::update_state(|s| s.reserve = 1_000);
    drive(&fake);
    let mine = service::status(user()).unwrap().unwrap();
    let e = mine.last_error.unwrap();
    assert_eq!(e.kind, FactoryErrorKind::FundingUnavailable);
    assert!(!e.message.contains("1000"), "{}", e.message);
    let admins = repo::job(user()).unwrap().status();
    assert!(matches!(
        admins.last_error.unwrap().kind,
        FactoryErrorKind::ReserveInsufficient { .. }
    ));
}

/// The spendable reserve is bounded by the real balance above the floor, and says so.
#[test]
fn an_unbacked_reserve_is_reported_and_alerted() {
    let fake = setup();
    repo::update_state(|s| {
        s.reserve = 18_000_000_000_000;
        s.alert_below = 10_000_000_000_000;
    });
    fake.balance.set(1_200_000_000_000);
    let status = service::reserve_status(&fake);
    assert!(status.unbacked && status.low, "{status:?}");
    assert!(status.spendable < 1_200_000_000_000u128);
    service::check_reserve_alert(&fake);
    let alerts = service::alerts();
    assert_eq!(alerts.last().unwrap().cause, Some(AlertCause::BalanceLow));
    // A job does not start on the book figure alone.
    let job = drive(&fake);
    assert!(matches!(
        kind(&job),
        FactoryErrorKind::ReserveInsufficient { .. }
    ));
    assert_eq!(fake.count("create_canister"), 0);
}

// ---- reserve arithmetic ---------------------------------------------------------------------------

#[test]
fn min_reserve_at_the_maximum_refuses_creation() {
    let fake = setup();
    service::configure(
        &fake,
        FactoryConfigUpdate {
            min_reserve: Some(service::CYCLES_SETTING_MAX.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let too_much = FactoryConfigUpdate {
        min_reserve: Some((service::CYCLES_SETTING_MAX + 1).into()),
        ..Default::default()
    };
    assert!(matches!(
        service::configure(&fake, too_much),
        Err(FactoryError {
            kind: FactoryErrorKind::InvalidConfig { .. },
            ..
        })
    ));
    let job = drive(&fake);
    assert!(matches!(
        kind(&job),
        FactoryErrorKind::ReserveInsufficient { .. }
    ));
    assert_eq!(fake.count("create_canister"), 0);
    assert_eq!(repo::state().reserve, RESERVE);
}

#[test]
fn min_reserve_at_u128_max_refuses_instead_of_wrapping() {
    let fake = setup();
    repo::update_state(|s| s.min_reserve = u128::MAX);
    let job = drive(&fake);
    assert!(matches!(
        kind(&job),
        FactoryErrorKind::ReserveInsufficient { .. }
    ));
    assert_eq!(fake.count("create_canister"), 0);
}

// ---- the emergency brake --------------------------------------------------------------------------

#[test]
fn a_pause_stops_the_task_at_its_next_await_and_resuming_completes() {
    let fake = setup();
    fake.on(
        "import_memories",
        1,
        Act::Meanwhile(|_| {
            service::set_paused(true);
        }),
    );
    let task = lease(&fake).unwrap();
    assert!(run_task(&fake, task));
    let job = repo::job(user()).unwrap();
    assert_eq!(job.state, CreationState::Importing);
    assert_eq!(repo::lease(user()).in_step, None, "a pause is not a trap");
    assert!(
        !repo::lease(user()).is_leased(fake.now()),
        "the lease was released"
    );
    assert_eq!(job.progress.memories_imported, 0);
    let calls = fake.calls.borrow().len();
    fake.now.set(fake.now() + 10 * LEASE_NANOS);
    assert!(lease(&fake).is_none(), "nothing is leased while paused");
    assert_eq!(fake.calls.borrow().len(), calls, "nothing was spent");
    service::set_paused(false);
    let job = drive(&fake);
    assert_eq!(job.state, CreationState::Completed, "{:?}", job.last_error);
    assert_eq!(job.attempts, 0);
    assert_eq!(repo::state().succeeded, 1);
}
