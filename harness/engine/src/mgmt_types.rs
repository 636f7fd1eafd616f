//! Candid types of the management canister (`aaaaa-aa`), as a superset of what ic-management-canister-types
//! 0.8 / 0.11 decode (spec §5).

use crate::types::{EnvironmentVariable, LogVisibility};
use candid::{CandidType, Deserialize, Nat, Principal};
use serde_bytes::ByteBuf;

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct WireSettings {
    pub controllers: Option<Vec<Principal>>,
    pub compute_allocation: Option<Nat>,
    pub memory_allocation: Option<Nat>,
    pub freezing_threshold: Option<Nat>,
    pub reserved_cycles_limit: Option<Nat>,
    pub log_visibility: Option<LogVisibility>,
    pub wasm_memory_limit: Option<Nat>,
    pub wasm_memory_threshold: Option<Nat>,
    pub minimum_incoming_canister_call_cycles: Option<Nat>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct CreateCanisterArgs {
    pub settings: Option<WireSettings>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct ProvisionalCreateArgs {
    pub amount: Option<Nat>,
    pub settings: Option<WireSettings>,
    pub specified_id: Option<Principal>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ProvisionalTopUpArgs {
    pub canister_id: Principal,
    pub amount: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterIdRecord {
    pub canister_id: Principal,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UpdateSettingsArgs {
    pub canister_id: Principal,
    pub settings: WireSettings,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum WasmMemoryPersistence {
    #[serde(rename = "keep")]
    Keep,
    #[serde(rename = "replace")]
    Replace,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct UpgradeFlags {
    pub skip_pre_upgrade: Option<bool>,
    pub wasm_memory_persistence: Option<WasmMemoryPersistence>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub enum WireInstallMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade(Option<UpgradeFlags>),
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InstallCodeArgs {
    pub mode: WireInstallMode,
    pub canister_id: Principal,
    pub wasm_module: ByteBuf,
    pub arg: ByteBuf,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UploadChunkArgs {
    pub canister_id: Principal,
    pub chunk: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ChunkHash {
    pub hash: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InstallChunkedCodeArgs {
    pub mode: WireInstallMode,
    pub target_canister: Principal,
    pub store_canister: Option<Principal>,
    pub chunk_hashes_list: Vec<ChunkHash>,
    pub wasm_module_hash: ByteBuf,
    pub arg: ByteBuf,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UninstallCodeArgs {
    pub canister_id: Principal,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterInfoArgs {
    pub canister_id: Principal,
    pub num_requested_changes: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterMetadataArgs {
    pub canister_id: Principal,
    pub name: String,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterMetadataResult {
    pub value: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterIdResult {
    pub canister_id: Principal,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub enum StatusType {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct WireDefiniteSettings {
    pub controllers: Vec<Principal>,
    pub compute_allocation: Nat,
    pub memory_allocation: Nat,
    pub freezing_threshold: Nat,
    pub reserved_cycles_limit: Nat,
    pub log_visibility: LogVisibility,
    pub log_memory_limit: Nat,
    pub snapshot_visibility: LogVisibility,
    pub status_visibility: LogVisibility,
    pub wasm_memory_limit: Nat,
    pub wasm_memory_threshold: Nat,
    pub minimum_incoming_canister_call_cycles: Nat,
    pub environment_variables: Vec<EnvironmentVariable>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct MemoryMetrics {
    pub wasm_memory_size: Nat,
    pub stable_memory_size: Nat,
    pub global_memory_size: Nat,
    pub wasm_binary_size: Nat,
    pub custom_sections_size: Nat,
    pub canister_history_size: Nat,
    pub wasm_chunk_store_size: Nat,
    pub snapshots_size: Nat,
    pub log_memory_store_size: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct QueryStats {
    pub num_calls_total: Nat,
    pub num_instructions_total: Nat,
    pub request_payload_bytes_total: Nat,
    pub response_payload_bytes_total: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterStatusResult {
    pub status: StatusType,
    pub ready_for_migration: bool,
    pub version: u64,
    pub settings: WireDefiniteSettings,
    pub module_hash: Option<ByteBuf>,
    pub memory_size: Nat,
    pub memory_metrics: MemoryMetrics,
    pub cycles: Nat,
    pub reserved_cycles: Nat,
    pub idle_cycles_burned_per_day: Nat,
    pub query_stats: QueryStats,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FromUser {
    pub user_id: Principal,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FromCanister {
    pub canister_id: Principal,
    pub canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeOrigin {
    #[serde(rename = "from_user")]
    FromUser(FromUser),
    #[serde(rename = "from_canister")]
    FromCanister(FromCanister),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreationRecord {
    pub controllers: Vec<Principal>,
    pub environment_variables_hash: Option<ByteBuf>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CodeDeploymentMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CodeDeploymentRecord {
    pub mode: CodeDeploymentMode,
    pub module_hash: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ControllersChangeRecord {
    pub controllers: Vec<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeDetails {
    #[serde(rename = "creation")]
    Creation(CreationRecord),
    #[serde(rename = "code_uninstall")]
    CodeUninstall,
    #[serde(rename = "code_deployment")]
    CodeDeployment(CodeDeploymentRecord),
    #[serde(rename = "controllers_change")]
    ControllersChange(ControllersChangeRecord),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub timestamp_nanos: u64,
    pub canister_version: u64,
    pub origin: ChangeOrigin,
    pub details: ChangeDetails,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterInfoResult {
    pub total_num_changes: u64,
    pub recent_changes: Vec<Change>,
    pub module_hash: Option<ByteBuf>,
    pub controllers: Vec<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UploadChunkResult {
    pub hash: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterLogRecord {
    pub idx: u64,
    pub timestamp_nanos: u64,
    pub content: ByteBuf,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct FetchCanisterLogsResult {
    pub canister_log_records: Vec<CanisterLogRecord>,
}
