//! The factory's stable state: configuration with reserve and counters, one job per user, the
//! registry of created canisters, low-reserve alerts, and the personal WASM store.

use super::api::*;
use super::funding::{FundingPlan, FundingPolicy};
use candid::{CandidType, Deserialize, Principal};
use capsule::store::{memory, Region, VMem};
use capsule::{candid_storable, Manifest};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Cell, StableBTreeMap, Storable};
use serde_bytes::ByteBuf;
use std::borrow::Cow;
use std::cell::RefCell;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactoryState {
    pub enabled: bool,
    pub min_reserve: u128,
    pub alert_below: u128,
    pub max_concurrent_jobs: u32,
    pub max_step_attempts: u32,
    pub chunked_install_threshold: u64,
    pub reserve: u128,
    pub total_consumed: u128,
    /// The cause of the alert standing now (`None`: the reserve is not low).
    pub alert_cause: Option<AlertCause>,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retries: u64,
    pub failed_by_stage: Vec<(CreationState, u64)>,
    pub wasm_sha256: Option<ByteBuf>,
    pub wasm_len: u64,
    pub next_alert: u64,
    /// The emergency brake: no job spends anything while it is on (`None` in state stored before it).
    pub paused: Option<bool>,
    /// How personal canisters are funded and set up (`None`: the defaults).
    pub funding: Option<FundingPolicy>,
}
candid_storable!(FactoryState);

impl FactoryState {
    pub fn is_paused(&self) -> bool {
        self.paused == Some(true)
    }

    pub fn funding(&self) -> FundingPolicy {
        self.funding.unwrap_or_default()
    }
}

impl Default for FactoryState {
    fn default() -> Self {
        FactoryState {
            enabled: true,
            min_reserve: 1_000_000_000_000,
            alert_below: 10_000_000_000_000,
            max_concurrent_jobs: 10,
            max_step_attempts: 5,
            chunked_install_threshold: 1_900_000,
            reserve: 0,
            total_consumed: 0,
            alert_cause: None,
            attempted: 0,
            succeeded: 0,
            failed: 0,
            retries: 0,
            failed_by_stage: vec![],
            wasm_sha256: None,
            wasm_len: 0,
            next_alert: 0,
            paused: None,
            funding: None,
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobCursor {
    pub memory_id: u64,
    pub next_chunk: u32,
}

/// How far the import has got; every field is written right after the personal canister acked it.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportCursor {
    pub begun: bool,
    pub memory_after: Option<u64>,
    pub memory_seq: u64,
    pub blob: Option<BlobCursor>,
    pub memories_done: bool,
    pub connection_after: Option<Principal>,
    pub connection_seq: u64,
    pub connections_done: bool,
    pub finalized: bool,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub user: Principal,
    pub state: CreationState,
    pub config: CreatePersonalCanisterConfig,
    pub canister_id: Option<Principal>,
    /// Set just before create_canister is sent, cleared when its answer is recorded.
    pub create_in_flight: bool,
    /// Every cycle the job took out of the reserve (the sum of `funding`'s payments).
    pub cycles_spent: u128,
    pub expected: Option<Manifest>,
    /// The module the factory installed and how much of the canister's history it has verified.
    pub custody: Option<Custody>,
    pub cursor: ImportCursor,
    pub handoff_done: bool,
    pub attempts: u32,
    pub retries: u32,
    pub last_error: Option<FactoryError>,
    pub next_attempt_at: u64,
    pub progress: Progress,
    pub created_at: u64,
    pub updated_at: u64,
    /// The migration's price and what is paid of it (`None` before Creating).
    pub funding: Option<JobFunding>,
}
candid_storable!(Job);

/// A job's funding: the plan priced at creation and each part as it is paid.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFunding {
    pub plan: FundingPlan,
    /// Attached to create_canister (0 until it was sent, and again if it was refused).
    pub initial_paid: u128,
    /// Deposited after the handoff.
    pub runway_paid: u128,
    /// Fees of the import calls so far.
    pub transmission_paid: u128,
}

impl JobFunding {
    pub fn costs(&self) -> JobCosts {
        JobCosts {
            initial: self.initial_paid.into(),
            runway: self.runway_paid.into(),
            transmission: self.transmission_paid.into(),
            footprint: self.plan.footprint,
        }
    }
}

/// What the factory vouches for in the job's canister, as confirmed through the management canister.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Custody {
    /// The module the factory installed, pinned before `install_code` is sent.
    pub module_sha256: Option<ByteBuf>,
    /// `canister_info.total_num_changes` up to which every change is known to be the factory's own.
    pub changes_checked: u64,
}

/// One task per job: every lease, retry, cancel and cleanup takes a new epoch, and a task acts only while
/// the stored epoch is the one it was started with. Kept apart from the job, in a fixed 29-byte
/// encoding, so that the check after every await costs next to nothing; never removed, so a user's
/// epochs only grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    /// The lease is held until then (0: released); every save by its task renews it.
    pub until: u64,
    /// The stage a task entered and has not left: found on a new lease, the last task trapped in it.
    pub in_step: Option<CreationState>,
    /// How many tasks in a row trapped in `in_step`.
    pub traps: u32,
    /// An admin cleanup is deleting the job's canister until then: nothing else may touch the job. A
    /// time rather than a flag, so that a cleanup an upgrade cut short does not block the job forever.
    pub cleaning_until: u64,
}

impl Lease {
    pub fn is_leased(&self, now: u64) -> bool {
        self.until > now
    }

    pub fn is_cleaning(&self, now: u64) -> bool {
        self.cleaning_until > now
    }
}

const STAGES: [CreationState; 8] = [
    CreationState::NotStarted,
    CreationState::Exporting,
    CreationState::Creating,
    CreationState::Installing,
    CreationState::Importing,
    CreationState::Verifying,
    CreationState::Completed,
    CreationState::Failed,
];

impl Storable for Lease {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        let mut b = Vec::with_capacity(29);
        b.extend_from_slice(&self.epoch.to_le_bytes());
        b.extend_from_slice(&self.until.to_le_bytes());
        b.push(self.in_step.map_or(0, |s| {
            1 + STAGES.iter().position(|x| *x == s).unwrap_or(0) as u8
        }));
        b.extend_from_slice(&self.traps.to_le_bytes());
        b.extend_from_slice(&self.cleaning_until.to_le_bytes());
        Cow::Owned(b)
    }

    fn into_bytes(self) -> Vec<u8> {
        self.to_bytes().into_owned()
    }

    fn from_bytes(b: Cow<'_, [u8]>) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Lease {
            epoch: u64_at(0),
            until: u64_at(8),
            in_step: b[16].checked_sub(1).map(|i| STAGES[i as usize]),
            traps: u32::from_le_bytes(b[17..21].try_into().expect("4 bytes")),
            cleaning_until: u64_at(21),
        }
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: 29,
        is_fixed_size: true,
    };
}

impl Job {
    pub fn new(user: Principal, config: CreatePersonalCanisterConfig, now: u64) -> Self {
        Job {
            user,
            state: CreationState::NotStarted,
            config,
            canister_id: None,
            create_in_flight: false,
            cycles_spent: 0,
            expected: None,
            custody: None,
            cursor: ImportCursor::default(),
            handoff_done: false,
            attempts: 0,
            retries: 0,
            last_error: None,
            next_attempt_at: now,
            progress: Progress::default(),
            created_at: now,
            updated_at: now,
            funding: None,
        }
    }

    pub fn custody(&self) -> Custody {
        self.custody.clone().unwrap_or_default()
    }

    /// The status as its user may see it (`FactoryError::for_user`).
    pub fn user_status(&self) -> CreationStatus {
        let mut status = self.status();
        status.last_error = status.last_error.map(FactoryError::for_user);
        status
    }

    pub fn status(&self) -> CreationStatus {
        CreationStatus {
            user: self.user,
            state: self.state,
            canister_id: self.canister_id,
            cycles_consumed: self.cycles_spent.into(),
            attempts: self.attempts,
            retries: self.retries,
            last_error: self.last_error.clone(),
            progress: self.progress.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            costs: self.funding.as_ref().map(JobFunding::costs),
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry(pub RegistryEntry);
candid_storable!(StoredEntry);

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert(pub ReserveAlert);
candid_storable!(StoredAlert);

pub struct Repo {
    pub state: Cell<FactoryState, VMem>,
    pub jobs: StableBTreeMap<Principal, Job, VMem>,
    /// Users whose job is not Completed or Failed: what the driver scans.
    pub active: StableBTreeMap<Principal, (), VMem>,
    pub registry: StableBTreeMap<Principal, StoredEntry, VMem>,
    pub leases: StableBTreeMap<Principal, Lease, VMem>,
    pub alerts: StableBTreeMap<u64, StoredAlert, VMem>,
    /// The active personal WASM, in 1 MiB pieces.
    pub wasm: StableBTreeMap<u32, Vec<u8>, VMem>,
    /// An upload in progress, committed into `wasm` by `personal_wasm_commit`.
    pub wasm_staged: StableBTreeMap<u32, Vec<u8>, VMem>,
}

thread_local! {
    static REPO: RefCell<Repo> = RefCell::new(Repo {
        state: Cell::init(memory(Region::FactoryConfig), FactoryState::default()),
        jobs: StableBTreeMap::init(memory(Region::FactoryJobs)),
        active: StableBTreeMap::init(memory(Region::FactoryActiveJobs)),
        registry: StableBTreeMap::init(memory(Region::FactoryRegistry)),
        leases: StableBTreeMap::init(memory(Region::FactoryLeases)),
        alerts: StableBTreeMap::init(memory(Region::FactoryAlerts)),
        wasm: StableBTreeMap::init(memory(Region::FactoryWasm)),
        wasm_staged: StableBTreeMap::init(memory(Region::FactoryWasmChunks)),
    });
}

pub fn with<R>(f: impl FnOnce(&mut Repo) -> R) -> R {
    REPO.with(|r| f(&mut r.borrow_mut()))
}

pub fn state() -> FactoryState {
    with(|r| r.state.get().clone())
}

pub fn update_state(f: impl FnOnce(&mut FactoryState)) {
    with(|r| {
        let mut s = r.state.get().clone();
        f(&mut s);
        r.state.set(s);
    })
}

pub fn job(user: Principal) -> Option<Job> {
    with(|r| r.jobs.get(&user))
}

pub fn save_job(job: &Job) {
    with(|r| {
        r.jobs.insert(job.user, job.clone());
        if job.state.is_active() {
            r.active.insert(job.user, ());
        } else {
            r.active.remove(&job.user);
        }
    });
}

pub fn remove_job(user: Principal) {
    with(|r| {
        r.jobs.remove(&user);
        r.active.remove(&user);
    });
}

pub fn is_active(user: Principal) -> bool {
    with(|r| r.active.contains_key(&user))
}

pub fn active_users() -> Vec<Principal> {
    with(|r| r.active.keys().collect())
}

pub fn lease(user: Principal) -> Lease {
    with(|r| r.leases.get(&user).unwrap_or_default())
}

pub fn set_lease(user: Principal, lease: &Lease) {
    with(|r| r.leases.insert(user, lease.clone()));
}

pub fn update_lease(user: Principal, f: impl FnOnce(&mut Lease)) -> Lease {
    let mut lease = lease(user);
    f(&mut lease);
    set_lease(user, &lease);
    lease
}

/// Takes the job from whatever task holds it: that task stops at its next await. The new epoch.
pub fn take_over(user: Principal) -> u64 {
    update_lease(user, |l| {
        l.epoch += 1;
        l.until = 0;
        l.in_step = None;
    })
    .epoch
}

pub fn active_jobs() -> Vec<Job> {
    with(|r| r.active.keys().filter_map(|u| r.jobs.get(&u)).collect())
}

pub fn registry_entry(canister_id: Principal) -> Option<RegistryEntry> {
    with(|r| r.registry.get(&canister_id).map(|e| e.0))
}

pub fn save_entry(entry: RegistryEntry) {
    with(|r| r.registry.insert(entry.canister_id, StoredEntry(entry)));
}

/// Mirrors a job's state (and cycles) into its canister's registry entry.
pub fn sync_registry(job: &Job) {
    if let Some(id) = job.canister_id {
        if let Some(mut entry) = registry_entry(id) {
            entry.status = job.state;
            entry.cycles_consumed = job.cycles_spent.into();
            entry.costs = job.funding.as_ref().map(JobFunding::costs);
            entry.updated_at = job.updated_at;
            save_entry(entry);
        }
    }
}

pub fn active_wasm() -> Option<(Vec<u8>, Vec<u8>)> {
    with(|r| {
        let sha = r.state.get().wasm_sha256.clone()?;
        let mut bytes = Vec::with_capacity(r.state.get().wasm_len as usize);
        for piece in r.wasm.values() {
            bytes.extend_from_slice(&piece);
        }
        Some((bytes, sha.into_vec()))
    })
}

pub fn record_alert(
    now: u64,
    cause: AlertCause,
    reserve: u128,
    spendable: u128,
    alert_below: u128,
) {
    with(|r| {
        let mut s = r.state.get().clone();
        let seq = s.next_alert;
        s.next_alert += 1;
        r.state.set(s);
        r.alerts.insert(
            seq,
            StoredAlert(ReserveAlert {
                at: now,
                cause: Some(cause),
                reserve: reserve.into(),
                spendable: Some(spendable.into()),
                alert_below: alert_below.into(),
            }),
        );
    });
}
