//! The IC the runner talks to, behind one trait: the embedded engine (default) or PocketIC.

use crate::model::{BackendKind, Capability};
use candid::Principal;
use std::time::Duration;

/// A reject from the IC or a canister.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// 1 SysFatal, 2 SysTransient, 3 DestinationInvalid, 4 CanisterReject, 5 CanisterError, 6 SysUnknown.
    pub code: u32,
    pub message: String,
    pub error_code: Option<String>,
}

impl Reject {
    pub fn code_name(&self) -> &'static str {
        code_name(self.code)
    }
}

pub fn code_name(code: u32) -> &'static str {
    match code {
        1 => "SysFatal",
        2 => "SysTransient",
        3 => "DestinationInvalid",
        4 => "CanisterReject",
        5 => "CanisterError",
        6 => "SysUnknown",
        _ => "Unknown",
    }
}

pub fn code_of(name: crate::model::RejectCodeName) -> u32 {
    use crate::model::RejectCodeName::*;
    match name {
        SysFatal => 1,
        SysTransient => 2,
        DestinationInvalid => 3,
        CanisterReject => 4,
        CanisterError => 5,
        SysUnknown => 6,
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code_name(), self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    Install,
    Reinstall,
    Upgrade { skip_pre_upgrade: bool },
}

#[derive(Clone, Debug)]
pub struct LogLine {
    pub idx: u64,
    pub time_nanos: u64,
    pub text: String,
}

#[derive(Clone, Debug)]
pub enum FaultAction {
    Reject {
        code: u32,
        message: String,
    },
    Trap(String),
    Hold,
    DelayRounds(u32),
    Timeout,
    /// The callee runs but its reply is lost.
    LoseReply,
    /// The callee answers with these raw bytes.
    Reply(Vec<u8>),
}

/// An engine fault rule with names already resolved.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// `None`: the management canister.
    pub target: Option<Principal>,
    pub caller: Option<Principal>,
    pub method: Option<String>,
    pub nth: Option<u32>,
    pub times: Option<u32>,
    pub action: FaultAction,
}

/// Handle of a submitted call.
pub type CallId = u64;

pub trait Ic {
    fn kind(&self) -> BackendKind;
    fn supports(&self, cap: Capability) -> bool;
    /// Create a canister controlled by `controllers` (the first one is the sender).
    fn create_canister(
        &mut self,
        controllers: &[Principal],
        cycles: u128,
    ) -> Result<Principal, Reject>;
    fn install(
        &mut self,
        sender: Principal,
        canister: Principal,
        mode: Install,
        wasm: &[u8],
        arg: &[u8],
    ) -> Result<(), Reject>;
    fn update(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject>;
    fn query(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject>;
    fn submit(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallId, Reject>;
    fn await_call(&mut self, id: CallId) -> Result<Vec<u8>, Reject>;
    fn tick(&mut self);
    /// Run rounds until nothing is left to do; the number of rounds run.
    fn run_until_idle(&mut self, max_rounds: u32) -> Result<u32, String>;
    fn time_nanos(&self) -> u64;
    fn set_time_nanos(&mut self, t: u64);
    fn advance_time(&mut self, d: Duration);
    fn cycle_balance(&mut self, canister: Principal) -> Result<u128, Reject>;
    fn stop(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject>;
    fn start(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject>;
    fn logs(&mut self, canister: Principal) -> Vec<LogLine>;
    fn add_fault(&mut self, rule: FaultRule) -> Result<u64, String>;
    fn remove_fault(&mut self, id: u64);
    fn release_held(&mut self, id: u64) -> usize;
    /// Every canister that exists, in creation order (capability `inspect`).
    /// A position in the per-execution metrics, for `instructions_since` (engine only).
    fn metrics_mark(&self) -> usize {
        0
    }
    /// The instructions of each execution of `canister` since `mark`.
    fn instructions_since(&self, _mark: usize, _canister: Principal) -> Result<Vec<u64>, String> {
        Err(format!(
            "{} does not count instructions per execution",
            self.kind().name()
        ))
    }
    fn canister_ids(&mut self) -> Result<Vec<Principal>, String> {
        Err("listing every canister needs the embedded engine (capability `inspect`)".into())
    }
    /// Set a canister's cycle balance (capability `inspect`).
    fn set_cycles(&mut self, _canister: Principal, _cycles: u128) -> Result<(), String> {
        Err("setting a canister's cycles needs the embedded engine (capability `inspect`)".into())
    }
    /// Add cycles to a canister's balance; the new balance (capability `inspect`).
    fn add_cycles(&mut self, _canister: Principal, _cycles: u128) -> Result<u128, String> {
        Err("adding cycles needs the embedded engine (capability `inspect`)".into())
    }
}

/// Why a backend cannot run here (the trial is skipped with this reason).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Is the backend usable in this process? (Without starting anything.)
pub fn availability(kind: BackendKind) -> Result<(), Unavailable> {
    match kind {
        BackendKind::Embedded => {
            if cfg!(feature = "embedded") {
                Ok(())
            } else {
                Err(Unavailable("the embedded engine backend is not compiled in (cargo feature `embedded` of harness)".into()))
            }
        }
        BackendKind::Pocketic => {
            if !cfg!(feature = "pocketic") {
                return Err(Unavailable(
                    "the PocketIC backend is not compiled in (cargo feature `pocketic` of harness)"
                        .into(),
                ));
            }
            match std::env::var("POCKET_IC_BIN") {
                Ok(p) if std::path::Path::new(&p).is_file() => Ok(()),
                Ok(p) => Err(Unavailable(format!("POCKET_IC_BIN={p} is not a file"))),
                Err(_) => Err(Unavailable(
                    "no PocketIC server: set POCKET_IC_BIN to a pocket-ic server binary (the harness never downloads one)".into(),
                )),
            }
        }
    }
}

/// Capabilities a backend kind has, known without opening it: every engine-only capability is the
/// embedded engine's; PocketIC has none of them.
pub fn kind_supports(kind: BackendKind, cap: Capability) -> bool {
    let _ = cap;
    match kind {
        BackendKind::Embedded => true,
        BackendKind::Pocketic => false,
    }
}

/// Open a fresh IC of the given kind.
pub fn open(
    kind: BackendKind,
    start_time_nanos: u64,
    seed: u64,
) -> Result<Box<dyn Ic>, Unavailable> {
    availability(kind)?;
    let _ = (start_time_nanos, seed);
    match kind {
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => Ok(Box::new(embedded::Embedded::new(start_time_nanos, seed))),
        #[cfg(feature = "pocketic")]
        BackendKind::Pocketic => {
            pocketic::Pocket::new(start_time_nanos).map(|p| Box::new(p) as Box<dyn Ic>)
        }
        #[allow(unreachable_patterns)]
        _ => Err(Unavailable(format!(
            "backend {} is not compiled in",
            kind.name()
        ))),
    }
}

#[cfg(feature = "embedded")]
mod embedded {
    use super::*;
    use engine::{Engine, EngineConfig};

    pub struct Embedded {
        e: Engine,
        calls: Vec<engine::MessageId>,
        faults: Vec<engine::FaultId>,
    }

    fn rej(r: engine::Reject) -> Reject {
        Reject {
            code: r.code as u32,
            message: r.message,
            error_code: r.error_code,
        }
    }

    impl Embedded {
        pub fn new(start_time_nanos: u64, seed: u64) -> Embedded {
            use sha2::{Digest, Sha256};
            let seed: [u8; 32] = Sha256::digest(seed.to_le_bytes()).into();
            let cfg = EngineConfig {
                start_time_nanos,
                seed,
                ..EngineConfig::default()
            };
            Embedded {
                e: Engine::new(cfg),
                calls: vec![],
                faults: vec![],
            }
        }
    }

    impl Ic for Embedded {
        fn kind(&self) -> BackendKind {
            BackendKind::Embedded
        }
        fn supports(&self, _cap: Capability) -> bool {
            true
        }
        fn create_canister(
            &mut self,
            controllers: &[Principal],
            cycles: u128,
        ) -> Result<Principal, Reject> {
            let sender = controllers
                .first()
                .copied()
                .unwrap_or_else(Principal::anonymous);
            let settings = engine::CanisterSettings {
                controllers: Some(controllers.to_vec()),
                ..Default::default()
            };
            self.e
                .create_canister(sender, Some(settings), cycles)
                .map_err(rej)
        }
        fn install(
            &mut self,
            sender: Principal,
            canister: Principal,
            mode: Install,
            wasm: &[u8],
            arg: &[u8],
        ) -> Result<(), Reject> {
            let mode = match mode {
                Install::Install => engine::InstallMode::Install,
                Install::Reinstall => engine::InstallMode::Reinstall,
                Install::Upgrade { skip_pre_upgrade } => {
                    engine::InstallMode::Upgrade { skip_pre_upgrade }
                }
            };
            self.e
                .install_code(sender, canister, mode, wasm, arg)
                .map_err(rej)
        }
        fn update(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, Reject> {
            self.e
                .update_call(sender, canister, method, arg)
                .map_err(rej)
        }
        fn query(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, Reject> {
            self.e
                .query_call(sender, canister, method, arg)
                .map_err(rej)
        }
        fn submit(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<CallId, Reject> {
            let id = self
                .e
                .submit_call(sender, canister, method, arg)
                .map_err(rej)?;
            self.calls.push(id);
            Ok((self.calls.len() - 1) as u64)
        }
        fn await_call(&mut self, id: CallId) -> Result<Vec<u8>, Reject> {
            let mid = self.calls.get(id as usize).cloned().ok_or_else(|| Reject {
                code: 6,
                message: format!("no submitted call #{id}"),
                error_code: None,
            })?;
            self.e.await_call(mid).map_err(rej)
        }
        fn tick(&mut self) {
            self.e.tick()
        }
        fn run_until_idle(&mut self, max_rounds: u32) -> Result<u32, String> {
            self.e
                .run_until_idle(max_rounds)
                .map_err(|e| format!("{e:?}"))
        }
        fn time_nanos(&self) -> u64 {
            self.e.time_nanos()
        }
        fn set_time_nanos(&mut self, t: u64) {
            self.e.set_time_nanos(t)
        }
        fn advance_time(&mut self, d: Duration) {
            self.e.advance_time(d)
        }
        fn cycle_balance(&mut self, canister: Principal) -> Result<u128, Reject> {
            self.e.cycle_balance(canister).map_err(rej)
        }
        fn stop(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject> {
            self.e.stop_canister(sender, canister).map_err(rej)
        }
        fn start(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject> {
            self.e.start_canister(sender, canister).map_err(rej)
        }
        fn logs(&mut self, canister: Principal) -> Vec<LogLine> {
            self.e
                .canister_logs(canister)
                .into_iter()
                .map(|l| LogLine {
                    idx: l.idx,
                    time_nanos: l.timestamp_nanos,
                    text: String::from_utf8_lossy(&l.content).into_owned(),
                })
                .collect()
        }
        fn add_fault(&mut self, rule: FaultRule) -> Result<u64, String> {
            let action = match rule.action {
                FaultAction::Reject { code, message } => engine::FaultAction::Reject {
                    code: reject_code(code),
                    message,
                },
                FaultAction::Trap(message) => engine::FaultAction::Trap { message },
                FaultAction::Hold => engine::FaultAction::Hold,
                FaultAction::DelayRounds(n) => engine::FaultAction::DelayRounds(n),
                FaultAction::Timeout => engine::FaultAction::Timeout,
                FaultAction::Reply(bytes) => engine::FaultAction::Reply { bytes },
                FaultAction::LoseReply => engine::FaultAction::LoseReply,
            };
            let target = match rule.target {
                Some(p) => engine::FaultTarget::Canister(p),
                None => engine::FaultTarget::Management,
            };
            let id = self.e.add_fault(engine::FaultRule {
                target,
                caller: rule.caller,
                method: rule.method,
                nth: rule.nth,
                times: rule.times,
                action,
            });
            self.faults.push(id);
            Ok((self.faults.len() - 1) as u64)
        }
        fn remove_fault(&mut self, id: u64) {
            if let Some(f) = self.faults.get(id as usize).cloned() {
                self.e.remove_fault(f)
            }
        }
        fn release_held(&mut self, id: u64) -> usize {
            match self.faults.get(id as usize).cloned() {
                Some(f) => self.e.release_held(f),
                None => 0,
            }
        }
        fn metrics_mark(&self) -> usize {
            self.e.metrics().records.len()
        }
        fn instructions_since(&self, mark: usize, canister: Principal) -> Result<Vec<u64>, String> {
            let records = &self.e.metrics().records;
            Ok(records
                .get(mark..)
                .unwrap_or_default()
                .iter()
                .filter(|r| r.canister == canister)
                .map(|r| r.instructions)
                .collect())
        }
        fn canister_ids(&mut self) -> Result<Vec<Principal>, String> {
            Ok(self.e.canister_ids())
        }
        fn set_cycles(&mut self, canister: Principal, cycles: u128) -> Result<(), String> {
            self.e.set_cycles(canister, cycles).map_err(|r| r.message)
        }
        fn add_cycles(&mut self, canister: Principal, cycles: u128) -> Result<u128, String> {
            self.e.add_cycles(canister, cycles).map_err(|r| r.message)
        }
    }

    fn reject_code(code: u32) -> engine::RejectCode {
        match code {
            1 => engine::RejectCode::SysFatal,
            2 => engine::RejectCode::SysTransient,
            3 => engine::RejectCode::DestinationInvalid,
            4 => engine::RejectCode::CanisterReject,
            5 => engine::RejectCode::CanisterError,
            _ => engine::RejectCode::SysUnknown,
        }
    }
}

#[cfg(feature = "pocketic")]
mod pocketic {
    use super::*;
    use pocket_ic::{PocketIc, PocketIcBuilder, RejectResponse};

    pub struct Pocket {
        pic: PocketIc,
        calls: Vec<pocket_ic::common::rest::RawMessageId>,
    }

    fn rej(r: RejectResponse) -> Reject {
        Reject {
            code: r.reject_code as u32,
            message: r.reject_message,
            error_code: Some(format!("{:?}", r.error_code)),
        }
    }

    impl Pocket {
        pub fn new(start_time_nanos: u64) -> Result<Pocket, Unavailable> {
            let bin = std::env::var("POCKET_IC_BIN")
                .map_err(|_| Unavailable("POCKET_IC_BIN is not set".into()))?;
            let pic = std::panic::catch_unwind(|| {
                PocketIcBuilder::new()
                    .with_server_binary(bin.into())
                    .with_application_subnet()
                    .with_initial_time(pocket_ic::Time::from_nanos_since_unix_epoch(
                        start_time_nanos,
                    ))
                    .build()
            })
            .map_err(|_| Unavailable("the PocketIC server did not start".into()))?;
            Ok(Pocket { pic, calls: vec![] })
        }
    }

    impl Ic for Pocket {
        fn kind(&self) -> BackendKind {
            BackendKind::Pocketic
        }
        fn supports(&self, cap: Capability) -> bool {
            kind_supports(BackendKind::Pocketic, cap)
        }
        fn create_canister(
            &mut self,
            controllers: &[Principal],
            cycles: u128,
        ) -> Result<Principal, Reject> {
            let sender = controllers.first().copied();
            let settings = pocket_ic::CanisterSettings {
                controllers: Some(controllers.to_vec()),
                ..Default::default()
            };
            let id = self
                .pic
                .create_canister_with_settings(sender, Some(settings));
            self.pic.add_cycles(id, cycles);
            Ok(id)
        }
        fn install(
            &mut self,
            sender: Principal,
            canister: Principal,
            mode: Install,
            wasm: &[u8],
            arg: &[u8],
        ) -> Result<(), Reject> {
            match mode {
                Install::Install => {
                    self.pic
                        .install_canister(canister, wasm.to_vec(), arg.to_vec(), Some(sender));
                    Ok(())
                }
                Install::Reinstall => self
                    .pic
                    .reinstall_canister(canister, wasm.to_vec(), arg.to_vec(), Some(sender))
                    .map_err(rej),
                Install::Upgrade {
                    skip_pre_upgrade: false,
                } => self
                    .pic
                    .upgrade_canister(canister, wasm.to_vec(), arg.to_vec(), Some(sender))
                    .map_err(rej),
                Install::Upgrade {
                    skip_pre_upgrade: true,
                } => Err(Reject {
                    code: 6,
                    message:
                        "skip_pre_upgrade is not supported by the PocketIC backend of the harness"
                            .into(),
                    error_code: None,
                }),
            }
        }
        fn update(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, Reject> {
            self.pic
                .update_call(canister, sender, method, arg.to_vec())
                .map_err(rej)
        }
        fn query(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, Reject> {
            self.pic
                .query_call(canister, sender, method, arg.to_vec())
                .map_err(rej)
        }
        fn submit(
            &mut self,
            sender: Principal,
            canister: Principal,
            method: &str,
            arg: &[u8],
        ) -> Result<CallId, Reject> {
            let id = self
                .pic
                .submit_call(canister, sender, method, arg.to_vec())
                .map_err(rej)?;
            self.calls.push(id);
            Ok((self.calls.len() - 1) as u64)
        }
        fn await_call(&mut self, id: CallId) -> Result<Vec<u8>, Reject> {
            let mid = self.calls.get(id as usize).cloned().ok_or_else(|| Reject {
                code: 6,
                message: format!("no submitted call #{id}"),
                error_code: None,
            })?;
            self.pic.await_call(mid).map_err(rej)
        }
        fn tick(&mut self) {
            self.pic.tick()
        }
        fn run_until_idle(&mut self, max_rounds: u32) -> Result<u32, String> {
            // PocketIC has no "idle" query: a fixed number of rounds approximates it.
            let n = max_rounds.min(10);
            for _ in 0..n {
                self.pic.tick();
            }
            Ok(n)
        }
        fn time_nanos(&self) -> u64 {
            self.pic.get_time().as_nanos_since_unix_epoch()
        }
        fn set_time_nanos(&mut self, t: u64) {
            self.pic
                .set_time(pocket_ic::Time::from_nanos_since_unix_epoch(t))
        }
        fn advance_time(&mut self, d: Duration) {
            self.pic.advance_time(d)
        }
        fn cycle_balance(&mut self, canister: Principal) -> Result<u128, Reject> {
            Ok(self.pic.cycle_balance(canister))
        }
        fn stop(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject> {
            self.pic.stop_canister(canister, Some(sender)).map_err(rej)
        }
        fn start(&mut self, sender: Principal, canister: Principal) -> Result<(), Reject> {
            self.pic.start_canister(canister, Some(sender)).map_err(rej)
        }
        fn logs(&mut self, canister: Principal) -> Vec<LogLine> {
            let controllers = self.pic.get_controllers(canister);
            let sender = controllers
                .first()
                .copied()
                .unwrap_or_else(Principal::anonymous);
            self.pic
                .fetch_canister_logs(canister, sender)
                .map(|v| {
                    v.into_iter()
                        .map(|l| LogLine {
                            idx: l.idx,
                            time_nanos: l.timestamp_nanos,
                            text: String::from_utf8_lossy(&l.content).into_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        fn add_fault(&mut self, _rule: FaultRule) -> Result<u64, String> {
            Err("fault injection needs the embedded engine (capability `faults`)".into())
        }
        fn remove_fault(&mut self, _id: u64) {}
        fn release_held(&mut self, _id: u64) -> usize {
            0
        }
    }
}
