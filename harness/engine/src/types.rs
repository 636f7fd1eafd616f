//! Public data types of the engine's host API.

use candid::{CandidType, Deserialize, Principal};

/// Reject codes of the IC (interface spec "Reject codes").
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
    SysUnknown = 6,
}

impl RejectCode {
    pub fn from_u32(c: u32) -> Option<RejectCode> {
        Some(match c {
            1 => RejectCode::SysFatal,
            2 => RejectCode::SysTransient,
            3 => RejectCode::DestinationInvalid,
            4 => RejectCode::CanisterReject,
            5 => RejectCode::CanisterError,
            6 => RejectCode::SysUnknown,
            _ => return None,
        })
    }
}

/// A reject as seen by a caller: the reject code, message and (for system-generated rejects) the IC error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
    pub error_code: Option<String>,
}

impl Reject {
    /// A system reject with an IC error code such as "IC0503"; the reject code is the code's first digit.
    pub fn ic(error_code: u32, message: impl Into<String>) -> Reject {
        let code = RejectCode::from_u32(error_code / 100).unwrap_or(RejectCode::SysFatal);
        Reject {
            code,
            message: message.into(),
            error_code: Some(format!("IC{error_code:04}")),
        }
    }
    /// A reject produced by a canister calling `msg_reject`.
    pub fn canister(message: impl Into<String>) -> Reject {
        Reject {
            code: RejectCode::CanisterReject,
            message: message.into(),
            error_code: Some("IC0406".into()),
        }
    }
    pub fn new(code: RejectCode, message: impl Into<String>) -> Reject {
        Reject {
            code,
            message: message.into(),
            error_code: None,
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reject code {} ", self.code as u32)?;
        if let Some(e) = &self.error_code {
            write!(f, "({e}) ")?;
        }
        write!(f, "{}", self.message)
    }
}
impl std::error::Error for Reject {}

/// Errors of the engine itself (not IC rejects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// `run_until_idle` did not reach an idle state within the round budget.
    NotIdle { rounds: u32, pending: usize },
    /// A message id that the engine never issued.
    UnknownMessage,
}
impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::NotIdle { rounds, pending } => {
                write!(
                    f,
                    "not idle after {rounds} rounds ({pending} messages pending)"
                )
            }
            EngineError::UnknownMessage => write!(f, "unknown message id"),
        }
    }
}
impl std::error::Error for EngineError {}

/// Identifies a submitted ingress message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMode {
    Install,
    Reinstall,
    Upgrade { skip_pre_upgrade: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, CandidType, Deserialize)]
pub enum LogVisibility {
    #[serde(rename = "controllers")]
    Controllers,
    #[serde(rename = "public")]
    Public,
    #[serde(rename = "allowed_viewers")]
    AllowedViewers(Vec<Principal>),
}

#[derive(Clone, Debug, PartialEq, Eq, CandidType, Deserialize)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

/// Canister settings as given to create_canister / update_settings: `None` = default / unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanisterSettings {
    pub controllers: Option<Vec<Principal>>,
    pub compute_allocation: Option<u64>,
    pub memory_allocation: Option<u64>,
    pub freezing_threshold: Option<u64>,
    pub reserved_cycles_limit: Option<u128>,
    pub log_visibility: Option<LogVisibility>,
    pub wasm_memory_limit: Option<u64>,
    pub wasm_memory_threshold: Option<u64>,
    pub minimum_incoming_canister_call_cycles: Option<u128>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

/// Effective settings of a canister.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefiniteSettings {
    pub controllers: Vec<Principal>,
    pub compute_allocation: u64,
    pub memory_allocation: u64,
    pub freezing_threshold: u64,
    pub reserved_cycles_limit: u128,
    pub log_visibility: LogVisibility,
    pub log_memory_limit: u64,
    pub wasm_memory_limit: u64,
    pub wasm_memory_threshold: u64,
    pub minimum_incoming_canister_call_cycles: u128,
    pub environment_variables: Vec<EnvironmentVariable>,
}

impl Default for DefiniteSettings {
    fn default() -> Self {
        DefiniteSettings {
            controllers: vec![],
            compute_allocation: 0,
            memory_allocation: 0,
            freezing_threshold: 2_592_000,
            reserved_cycles_limit: 5_000_000_000_000,
            log_visibility: LogVisibility::Controllers,
            log_memory_limit: 4096,
            wasm_memory_limit: 3 * 1024 * 1024 * 1024,
            wasm_memory_threshold: 0,
            minimum_incoming_canister_call_cycles: 0,
            environment_variables: vec![],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopping,
    Stopped,
}

/// The same data the management canister's `canister_status` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanisterStatus {
    pub status: Status,
    pub version: u64,
    pub settings: DefiniteSettings,
    pub module_hash: Option<[u8; 32]>,
    pub memory_size: u64,
    pub wasm_memory_size: u64,
    pub stable_memory_size: u64,
    pub global_memory_size: u64,
    pub wasm_binary_size: u64,
    pub custom_sections_size: u64,
    pub canister_history_size: u64,
    pub wasm_chunk_store_size: u64,
    pub cycles: u128,
    pub idle_cycles_burned_per_day: u128,
}

/// One canister log record (debug_print or trap message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub idx: u64,
    pub timestamp_nanos: u64,
    pub content: Vec<u8>,
}

impl LogRecord {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// Fees of a 13-node application subnet (spec §6.4). `free()` gives PocketIC's Free cost schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeConfig {
    pub canister_creation_fee: u128,
    pub update_message_execution_fee: u128,
    /// Cycles per 10 instructions.
    pub ten_update_instructions_execution_fee: u128,
    pub xnet_call_fee: u128,
    pub xnet_byte_transmission_fee: u128,
    pub ingress_message_reception_fee: u128,
    pub ingress_byte_reception_fee: u128,
    /// Storage fee per GiB per second.
    pub gib_storage_per_second_fee: u128,
    /// Whether storage is charged as time advances.
    pub charge_storage: bool,
}

impl Default for FeeConfig {
    fn default() -> Self {
        FeeConfig {
            canister_creation_fee: 500_000_000_000,
            update_message_execution_fee: 5_000_000,
            ten_update_instructions_execution_fee: 10,
            xnet_call_fee: 260_000,
            xnet_byte_transmission_fee: 1_000,
            ingress_message_reception_fee: 1_200_000,
            ingress_byte_reception_fee: 2_000,
            gib_storage_per_second_fee: 127_000,
            charge_storage: true,
        }
    }
}

impl FeeConfig {
    /// PocketIC's `Free` cost schedule: nothing is charged.
    pub fn free() -> Self {
        FeeConfig {
            canister_creation_fee: 0,
            update_message_execution_fee: 0,
            ten_update_instructions_execution_fee: 0,
            xnet_call_fee: 0,
            xnet_byte_transmission_fee: 0,
            ingress_message_reception_fee: 0,
            ingress_byte_reception_fee: 0,
            gib_storage_per_second_fee: 0,
            charge_storage: false,
        }
    }
}

/// Limits (spec §6.1–6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_instructions_per_message: u64,
    pub max_instructions_per_install: u64,
    pub max_instructions_per_query: u64,
    pub max_instructions_inspect: u64,
    pub max_ingress_payload: usize,
    pub max_inter_canister_payload: usize,
    pub max_response_payload: usize,
    pub max_query_response_payload: usize,
    pub max_call_timeout_seconds: u64,
    pub max_stable_memory_bytes: u64,
    pub max_wasm_module_bytes: usize,
    pub max_chunk_bytes: usize,
    pub max_chunks: usize,
    pub max_controllers: usize,
    /// Rounds `update_call` / `await_call` run before giving up (PocketIC: 100).
    pub max_rounds_per_await: u32,
    /// Executions per round before the rest is left for the next round.
    pub max_executions_per_round: u32,
    /// Max in-flight calls per canister pair.
    pub max_queue_per_pair: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instructions_per_message: 40_000_000_000,
            max_instructions_per_install: 300_000_000_000,
            max_instructions_per_query: 5_000_000_000,
            max_instructions_inspect: 200_000_000,
            max_ingress_payload: 2 * 1024 * 1024,
            max_inter_canister_payload: 10 * 1024 * 1024,
            max_response_payload: 2 * 1024 * 1024,
            max_query_response_payload: 3 * 1024 * 1024,
            max_call_timeout_seconds: 300,
            max_stable_memory_bytes: 500 * 1024 * 1024 * 1024,
            max_wasm_module_bytes: 100 * 1024 * 1024,
            max_chunk_bytes: 1024 * 1024,
            max_chunks: 100,
            max_controllers: 10,
            max_rounds_per_await: 100,
            max_executions_per_round: 10_000,
            max_queue_per_pair: 500,
        }
    }
}

/// PocketIC's genesis time (2021-05-06 19:17:10 UTC) in ns since the epoch.
pub const GENESIS_NANOS: u64 = 1_620_328_630_000_000_000;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Time of the fresh instance (PocketIC: genesis + 1 ns).
    pub start_time_nanos: u64,
    /// Seed for raw_rand and the subnet id.
    pub seed: [u8; 32],
    pub fees: FeeConfig,
    pub limits: Limits,
    /// Nodes of the simulated subnet (fees scale by nodes/13).
    pub subnet_size: u64,
    /// Keep at most this many log bytes per canister (IC: 4 KiB); 0 = unlimited.
    pub log_capacity_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            start_time_nanos: GENESIS_NANOS + 1,
            seed: [0x42; 32],
            fees: FeeConfig::default(),
            limits: Limits::default(),
            subnet_size: 13,
            log_capacity_bytes: 0,
        }
    }
}

/// Where a fault rule applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    Canister(Principal),
    /// Calls to `aaaaa-aa`; narrow with `method`.
    Management,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Reject {
        code: RejectCode,
        message: String,
    },
    /// The callee behaves as if it trapped: the caller gets reject code 5.
    Trap {
        message: String,
    },
    /// Hold the message until `release_held`.
    Hold,
    /// Deliver the message only after this many rounds.
    DelayRounds(u32),
    /// The message is lost: bounded-wait callers get code 6 at their deadline.
    Timeout,
    /// The callee executes the message but its reply is lost: a bounded-wait caller gets SYS_UNKNOWN
    /// (code 6) at its deadline, as when a response misses it; an unbounded caller gets code 6 at
    /// once, which the IC never does.
    LoseReply,
    /// The callee answers with these bytes without running: what a canister whose code someone
    /// replaced could answer (a malformed or oversized Candid reply, say).
    Reply {
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    pub target: FaultTarget,
    pub caller: Option<Principal>,
    pub method: Option<String>,
    /// 1-based occurrence among matching messages at which the rule starts firing.
    pub nth: Option<u32>,
    /// How many matches it fires for; None = every one from `nth` on.
    pub times: Option<u32>,
    pub action: FaultAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);
