//! Candid types of the factory API.

use candid::{CandidType, Deserialize, Nat, Principal};
use capsule::Manifest;

/// The user's creation request. Fields the MVP does not know are ignored by Candid decoding.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CreatePersonalCanisterConfig {
    pub name: Option<String>,
    /// Recorded; the canister is created on the factory's own subnet.
    pub subnet_id: Option<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CreationState {
    NotStarted,
    Exporting,
    Creating,
    Installing,
    Importing,
    Verifying,
    Completed,
    Failed,
}

impl CreationState {
    pub fn is_active(self) -> bool {
        !matches!(self, CreationState::Completed | CreationState::Failed)
    }
    pub fn name(self) -> &'static str {
        match self {
            CreationState::NotStarted => "NotStarted",
            CreationState::Exporting => "Exporting",
            CreationState::Creating => "Creating",
            CreationState::Installing => "Installing",
            CreationState::Importing => "Importing",
            CreationState::Verifying => "Verifying",
            CreationState::Completed => "Completed",
            CreationState::Failed => "Failed",
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FactoryErrorKind {
    AnonymousCaller,
    NotAdmin,
    /// The caller is an admin without the role this method needs.
    RoleRequired {
        role: crate::admin::Role,
    },
    NotAllowed,
    NoCapsule,
    CreationDisabled,
    InvalidConfig {
        field: String,
        reason: String,
    },
    JobNotFound,
    JobNotFailed {
        state: CreationState,
    },
    JobActive {
        state: CreationState,
    },
    ReserveInsufficient {
        reserve: Nat,
        required: Nat,
    },
    BalanceInsufficient {
        balance: Nat,
        required: Nat,
    },
    /// What a user sees for `ReserveInsufficient` and `BalanceInsufficient`: the factory cannot pay
    /// for the migration now (the figures are in the admin views).
    FundingUnavailable,
    NoPersonalWasm,
    WasmHashMismatch {
        expected: String,
        actual: String,
    },
    WasmTooLarge {
        max: u64,
        actual: u64,
    },
    /// A call was rejected by the IC or its callee (transient ones are retried first).
    CallRejected {
        method: String,
        code: u32,
        message: String,
    },
    /// The personal canister answered an import call with a typed error.
    ImportRejected {
        method: String,
        error: Box<capsule::Error>,
    },
    VersionMismatch {
        expected_major: u32,
        actual_major: u32,
        actual_minor: u32,
    },
    ManifestMismatch {
        expected: Box<Manifest>,
        actual: Box<Manifest>,
    },
    HandoffUnconfirmed {
        controllers: Vec<Principal>,
    },
    /// The management canister shows the factory is no longer a controller of the canister it is
    /// migrating into (`by`: who changed the controllers, when the history names them).
    ControlLost {
        controllers: Vec<Principal>,
        by: Option<Principal>,
    },
    /// The management canister shows a module other than the one the factory installed, or a code
    /// change (install, upgrade, uninstall, snapshot load) by someone other than the factory.
    ModuleChanged {
        expected: Option<String>,
        actual: Option<String>,
        by: Option<Principal>,
    },
    /// More changes happened since the last check than canister history keeps: the chain of control
    /// cannot be proven.
    HistoryGap {
        checked: u64,
        total: u64,
    },
    /// A step trapped `times` times in a row (a trap rolls back the step, so it would run forever).
    StepTrapped {
        stage: CreationState,
        times: u32,
    },
    /// An admin cancelled the job.
    Cancelled {
        by: Principal,
    },
    /// The personal canister answered with bytes that do not decode, within the decoding quotas, as
    /// the expected reply.
    BadReply {
        method: String,
        message: String,
    },
    /// The factory's create_canister call for this job has not answered yet; try again in a moment.
    CreateInFlight,
    /// An amount would leave the range the factory can account for.
    Overflow {
        what: String,
    },
    /// The factory admits allowlisted users only, and the caller is not one.
    NotAllowlisted,
    /// The caller has or had as many personal canisters as a user may; an admin may grant another.
    CanisterLimitReached {
        limit: u32,
    },
    /// The factory admitted as many requests this hour as it admits per hour.
    RateLimited {
        limit_per_hour: u32,
        retry_after_secs: u64,
    },
    /// As many jobs are active as the factory takes at once.
    QueueFull {
        limit: u32,
    },
    /// The user retried this creation as often as users may; an admin may retry it.
    RetryLimitReached {
        limit: u32,
    },
    /// The backend was upgraded (skipping its in-flight guard) while create_canister was in flight: a
    /// canister may exist that the factory never learned of. An admin must check before retrying.
    CreateOutcomeUnknown,
    CanisterMissing,
    Failpoint {
        name: String,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactoryError {
    pub kind: FactoryErrorKind,
    pub message: String,
    /// The stage the error happened in, for job failures.
    pub stage: Option<CreationState>,
}

impl FactoryErrorKind {
    /// Rejects that may go away by themselves: SYS_TRANSIENT, CANISTER_ERROR (a trap, a stopped or
    /// frozen callee) and SYS_UNKNOWN (a bounded-wait timeout; every step checks before repeating).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FactoryErrorKind::CallRejected {
                code: 2 | 5 | 6,
                ..
            }
        )
    }

    /// What the management canister found wrong with a canister the user co-controls. Such a job is
    /// never retried: the canister is no longer what the factory made.
    pub fn is_tamper(&self) -> bool {
        matches!(
            self,
            FactoryErrorKind::ControlLost { .. }
                | FactoryErrorKind::ModuleChanged { .. }
                | FactoryErrorKind::HistoryGap { .. }
        )
    }
}

impl FactoryError {
    pub fn new(kind: FactoryErrorKind, message: impl Into<String>) -> Self {
        FactoryError {
            kind,
            message: message.into(),
            stage: None,
        }
    }
    /// A bad argument or configuration value: which field, and why.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let message = format!("{field}: {reason}");
        FactoryError::new(
            FactoryErrorKind::InvalidConfig {
                field: field.into(),
                reason,
            },
            message,
        )
    }
    pub fn at(mut self, stage: CreationState) -> Self {
        self.stage = Some(stage);
        self
    }

    /// The error as its user may see it: the factory's balances and the IC's raw reject texts stay in
    /// the admin views.
    pub fn for_user(self) -> FactoryError {
        let (kind, message) = match self.kind {
            FactoryErrorKind::ReserveInsufficient { .. }
            | FactoryErrorKind::BalanceInsufficient { .. } => (
                FactoryErrorKind::FundingUnavailable,
                "the service cannot fund your canister right now; its admins are alerted and the move continues once they have topped it up".to_string(),
            ),
            FactoryErrorKind::CallRejected { method, code, .. } => (
                FactoryErrorKind::CallRejected {
                    method: method.clone(),
                    code,
                    message: String::new(),
                },
                format!("{method} was rejected (code {code})"),
            ),
            kind => (kind, self.message),
        };
        FactoryError {
            kind,
            message,
            stage: self.stage,
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub memories_total: u64,
    pub memories_imported: u64,
    pub bytes_total: u64,
    pub bytes_imported: u64,
    pub connections_total: u64,
    pub connections_imported: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreationStatus {
    pub user: Principal,
    pub state: CreationState,
    pub canister_id: Option<Principal>,
    pub cycles_consumed: Nat,
    pub attempts: u32,
    pub retries: u32,
    pub last_error: Option<FactoryError>,
    pub progress: Progress,
    pub created_at: u64,
    pub updated_at: u64,
    /// What the migration has cost so far, by purpose (`None` before the canister is priced).
    pub costs: Option<JobCosts>,
}

/// The cycles one migration took out of the reserve, by purpose.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobCosts {
    /// Attached to create_canister: the creation fee, install and import, the freezing reserve.
    pub initial: Nat,
    /// Deposited once the user holds the canister alone: storage for the runway.
    pub runway: Nat,
    /// What the backend paid to send the import calls.
    pub transmission: Nat,
    /// The canister's estimated size with the capsule in it (bytes), which the funding is priced on.
    pub footprint: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegistryEntry {
    pub canister_id: Principal,
    pub created_by: Principal,
    pub created_at: u64,
    pub status: CreationState,
    pub cycles_consumed: Nat,
    pub updated_at: u64,
    /// Set when an admin deleted the canister in a cleanup.
    pub deleted: bool,
    /// The job's costs, as far as it got (`None` in entries recorded before costs were kept).
    pub costs: Option<JobCosts>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReserveStatus {
    /// Cycles set aside for funding personal canisters: the book figure.
    pub reserve: Nat,
    /// What of it can really be spent: the reserve, but no more than the liquid balance above `floor`.
    pub spendable: Nat,
    /// The backend's balance minus what the IC holds back for its freezing threshold.
    pub liquid_balance: Nat,
    /// Kept for the backend's own running costs: its idle burn for 90 days plus a margin.
    pub floor: Nat,
    /// A creation must leave at least this much spendable.
    pub min_reserve: Nat,
    pub alert_below: Nat,
    pub total_consumed: Nat,
    /// `spendable` is below `alert_below`.
    pub low: bool,
    /// The balance does not back the book figure (`spendable` < `reserve`).
    pub unbacked: bool,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReserveAlert {
    pub at: u64,
    pub reserve: Nat,
    pub alert_below: Nat,
    /// The spendable figure then (`None` in alerts recorded before it existed).
    pub spendable: Option<Nat>,
    pub cause: Option<AlertCause>,
}

/// Why the reserve alert fired.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertCause {
    /// The reserve's book figure is below the alert level.
    ReserveLow,
    /// The reserve is not backed: the liquid balance above the floor is below the alert level.
    BalanceLow,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FactoryConfigUpdate {
    /// Days of storage at the canister's size deposited after the handoff.
    pub runway_days: Option<u32>,
    /// Every personal canister's `freezing_threshold`, in days.
    pub freezing_threshold_days: Option<u32>,
    /// Every personal canister's `reserved_cycles_limit`.
    pub reserved_cycles_limit: Option<Nat>,
    pub min_reserve: Option<Nat>,
    pub alert_below: Option<Nat>,
    pub max_concurrent_jobs: Option<u32>,
    pub max_step_attempts: Option<u32>,
    /// Modules larger than this are installed with chunked install.
    pub chunked_install_threshold: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactoryConfigView {
    pub enabled: bool,
    pub runway_days: u32,
    pub freezing_threshold_days: u32,
    pub reserved_cycles_limit: Nat,
    pub min_reserve: Nat,
    pub alert_below: Nat,
    pub max_concurrent_jobs: u32,
    pub max_step_attempts: u32,
    pub chunked_install_threshold: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StageCount {
    pub stage: CreationState,
    pub count: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FactoryStats {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failed_by_stage: Vec<StageCount>,
    pub retries: u64,
    pub active_jobs: u64,
    pub cycles_consumed: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WasmInfo {
    pub sha256: String,
    pub len: u64,
    pub staged_chunks: u32,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct JobPageRequest {
    pub state: Option<CreationState>,
    pub after: Option<Principal>,
    pub limit: Option<u32>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobPage {
    pub items: Vec<CreationStatus>,
    pub next: Option<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryPageRequest {
    pub status: Option<CreationState>,
    pub after: Option<Principal>,
    pub limit: Option<u32>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegistryPage {
    pub items: Vec<RegistryEntry>,
    pub next: Option<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FailpointAction {
    Trap,
    Error,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FailpointArm {
    /// A site name such as "create.before" (see `failpoints_list`).
    pub name: String,
    pub action: FailpointAction,
    /// Fire on the n-th hit from now (1 = the next one).
    pub nth: u32,
    /// How many hits it fires for from then on (default 1).
    pub times: Option<u32>,
}

/// The admission limits (admin-configurable; the defaults and their reasons are in the README).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Only allowlisted principals may request a canister.
    pub allowlist_only: bool,
    /// Canisters a user may hold (created for them and not deleted by a cleanup), unless granted more.
    pub max_canisters_per_user: u32,
    /// Requests admitted per clock hour, across all users: bounds how fast the reserve can drain.
    pub creations_per_hour: u32,
    /// Jobs that may be active (queued or running) at once; beyond it requests are refused as busy.
    pub max_active_jobs: u32,
    /// Retries a user may ask for on one job; after that only an admin may retry it.
    pub max_user_retries: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            allowlist_only: false,
            max_canisters_per_user: 1,
            creations_per_hour: 200,
            max_active_jobs: 1_000,
            max_user_retries: 3,
        }
    }
}

/// A change to some of the admission limits.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmissionUpdate {
    pub allowlist_only: Option<bool>,
    pub max_canisters_per_user: Option<u32>,
    pub creations_per_hour: Option<u32>,
    pub max_active_jobs: Option<u32>,
    pub max_user_retries: Option<u32>,
}

/// What the factory knows of one user's admission.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAdmission {
    pub allowlisted: bool,
    /// Canisters created for the user and not deleted by a cleanup.
    pub canisters: u32,
    /// Canisters an admin allowed beyond `max_canisters_per_user`.
    pub granted: u32,
}
pub type FactoryResult<T> = Result<T, FactoryError>;
