//! What the driver needs from the outside world, as one trait: the clock, its own id and balance, the
//! management canister and the personal canister. `ic::IcRuntime` is the Internet Computer; the driver's
//! unit tests use a scripted fake, so every step can be run against lost replies, stale tasks and traps.

use super::api::{FactoryError, FactoryErrorKind, FactoryResult};
use candid::Principal;
use ic_management_canister_types::CanisterInstallMode;

/// A failed call: which method, the IC's reject code, the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallErr {
    pub method: String,
    pub code: u32,
    pub message: String,
}

/// Reject code of a call whose destination does not exist (e.g. a deleted canister).
pub const DESTINATION_INVALID: u32 = 3;

impl From<CallErr> for FactoryError {
    fn from(e: CallErr) -> Self {
        let message = format!("{} was rejected (code {}): {}", e.method, e.code, e.message);
        FactoryError::new(
            FactoryErrorKind::CallRejected {
                method: e.method,
                code: e.code,
                message: e.message,
            },
            message,
        )
    }
}

/// What the management canister's `canister_info` says about a canister: the only witness the factory
/// trusts about a canister the user co-controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanisterFacts {
    pub module_hash: Option<Vec<u8>>,
    pub controllers: Vec<Principal>,
    /// Changes ever recorded; `changes` holds the most recent of them, oldest first.
    pub total_changes: u64,
    pub changes: Vec<ChangeFact>,
}

/// One entry of canister history: who made the change and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFact {
    pub by: Principal,
    pub what: ChangeWhat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeWhat {
    Created,
    /// A code deployment, uninstall or snapshot load: the module or the state may be anything now.
    Code,
    Controllers(Vec<Principal>),
    /// A change that touches neither code nor control (e.g. a rename).
    Other,
}

/// A canister to create: who controls it, the cycles it starts with and the settings the factory
/// gives every personal canister.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCanister {
    pub controllers: Vec<Principal>,
    pub cycles: u128,
    pub freezing_threshold: u64,
    pub reserved_cycles_limit: u128,
}

/// What `canister_status` says the factory needs to know before an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFacts {
    pub module_hash: Option<Vec<u8>>,
    pub cycles: u128,
}

/// The driver's outbound operations. Every call returns its reject as a `CallErr`; replies of the
/// personal canister come back as raw bytes, for the driver to decode with quotas.
#[allow(async_fn_in_trait)]
pub trait Runtime {
    fn now(&self) -> u64;
    /// The factory's own principal.
    fn factory(&self) -> Principal;
    /// Cycles the factory can spend right now.
    fn liquid_balance(&self) -> u128;
    /// Bytes of memory the factory's canister holds (heap and stable), which its idle burn follows.
    fn footprint(&self) -> u64;
    /// A named fault site (feature `failpoints`); `Ok` everywhere else.
    async fn failpoint(&self, site: &str) -> FactoryResult<()>;
    async fn create_canister(&self, new: NewCanister) -> Result<Principal, CallErr>;
    /// `deposit_cycles`: anyone may fund any canister, controller or not.
    async fn deposit_cycles(&self, id: Principal, cycles: u128) -> Result<(), CallErr>;
    /// `canister_status` (a controller-only call): the installed module and the balance.
    async fn canister_status(&self, id: Principal) -> Result<StatusFacts, CallErr>;
    /// `canister_info` with as much history as the IC keeps.
    async fn canister_info(&self, id: Principal) -> Result<CanisterFacts, CallErr>;
    /// `install_code`, or through the target's chunk store when `chunked` (modules near 2 MiB).
    async fn install(
        &self,
        id: Principal,
        mode: CanisterInstallMode,
        wasm: &[u8],
        wasm_sha256: &[u8],
        arg: Vec<u8>,
        chunked: bool,
    ) -> Result<(), CallErr>;
    async fn set_controllers(
        &self,
        id: Principal,
        controllers: Vec<Principal>,
    ) -> Result<(), CallErr>;
    async fn stop_canister(&self, id: Principal) -> Result<(), CallErr>;
    async fn delete_canister(&self, id: Principal) -> Result<(), CallErr>;
    /// A bounded-wait call to the personal canister with Candid-encoded arguments; the raw reply.
    async fn call_personal(
        &self,
        id: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, CallErr>;
}
