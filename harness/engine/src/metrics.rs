//! Per-execution metrics.

use candid::Principal;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecKind {
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    ReplicatedQuery,
    Query,
    ReplyCallback,
    RejectCallback,
    Cleanup,
    Heartbeat,
    GlobalTimer,
    LowMemory,
    InspectMessage,
    Start,
}

/// One message execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub round: u64,
    pub canister: Principal,
    /// Method name for updates/queries; for callbacks the method of the call they respond to.
    pub method: String,
    pub kind: ExecKind,
    pub instructions: u64,
    pub trapped: bool,
    /// Calls made (performed and committed) by this execution.
    pub messages_sent: u64,
    /// Bytes of method names + arguments of the calls made, plus the reply/reject payload produced.
    pub bytes_sent: u64,
    /// Bytes of the argument / response payload this execution received.
    pub bytes_received: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub executions: u64,
    pub traps: u64,
    pub instructions: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub records: Vec<ExecRecord>,
    pub per_canister: BTreeMap<Principal, Totals>,
    /// Number of distinct modules compiled (compile cache misses).
    pub modules_compiled: u64,
    /// Compile cache hits.
    pub compile_cache_hits: u64,
    /// Keep individual records (totals are always kept).
    pub keep_records: bool,
}

impl Metrics {
    pub fn record(&mut self, r: ExecRecord) {
        let t = self.per_canister.entry(r.canister).or_default();
        t.executions += 1;
        t.traps += r.trapped as u64;
        t.instructions += r.instructions;
        t.messages_sent += r.messages_sent;
        t.bytes_sent += r.bytes_sent;
        t.bytes_received += r.bytes_received;
        if self.keep_records {
            self.records.push(r);
        }
    }
    pub fn totals(&self, c: Principal) -> Totals {
        self.per_canister.get(&c).cloned().unwrap_or_default()
    }
    pub fn reset(&mut self) {
        self.records.clear();
        self.per_canister.clear();
    }
}
