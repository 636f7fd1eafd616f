//! A scripted fake of the IC for the driver's tests: a management canister over fake canisters,
//! personal canisters that accept the import, and per-method scripts keyed by the call's occurrence.

use crate::factory::api::*;
use crate::factory::runtime::{
    CallErr, CanisterFacts, ChangeFact, ChangeWhat, NewCanister, Runtime, StatusFacts,
};
use candid::{Encode, Principal};
use capsule::transfer::{ApiVersion, ImportAck, ImportPhase, ImportStatus};
use capsule::Manifest;
use ic_management_canister_types::CanisterInstallMode;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub(super) const START: u64 = 1_700_000_000_000_000_000;
pub(super) const WASM: &[u8] = b"\0asm\x01\0\0\0personal";

pub(super) fn user() -> Principal {
    Principal::from_slice(&[1; 29])
}
pub(super) fn factory() -> Principal {
    Principal::from_slice(&[2; 10])
}
pub(super) fn admin() -> Principal {
    Principal::from_slice(&[3; 29])
}

/// The fake's answers complete at once: one poll runs a driver future to its end.
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake never suspends"),
    }
}

/// What a scripted call does instead of (or besides) its normal effect.
#[derive(Clone)]
pub(super) enum Act {
    /// Rejected with this code; nothing happens.
    Reject(u32),
    /// The call takes effect, but its reply is lost (SYS_UNKNOWN).
    LoseReply,
    /// The callee answers with these bytes.
    Reply(Vec<u8>),
    /// The call takes effect, then the factory's callback traps.
    Trap,
    /// Something happens while the call is in flight (the user, an admin, a newer task), then the
    /// call proceeds normally.
    Meanwhile(fn(&Fake)),
}

#[derive(Clone, Debug, Default)]
pub(super) struct FakeCanister {
    pub(super) controllers: Vec<Principal>,
    pub(super) module: Option<Vec<u8>>,
    pub(super) changes: Vec<ChangeFact>,
    pub(super) stopped: bool,
    pub(super) phase: Option<ImportPhase>,
    pub(super) expected: Option<Manifest>,
    pub(super) finalized: Option<Manifest>,
    pub(super) importer: Option<Principal>,
    pub(super) owner: Option<Principal>,
    pub(super) cycles: u128,
    pub(super) freezing_threshold: u64,
}

/// A scripted IC: a management canister over fake canisters, personal canisters that accept the
/// import, and per-method scripts keyed by the call's occurrence (1-based).
#[derive(Default)]
pub(super) struct Fake {
    pub(super) now: Cell<u64>,
    pub(super) canisters: RefCell<BTreeMap<Principal, FakeCanister>>,
    pub(super) deleted: RefCell<Vec<Principal>>,
    pub(super) script: RefCell<BTreeMap<(String, u32), Act>>,
    pub(super) seen: RefCell<BTreeMap<String, u32>>,
    pub(super) calls: RefCell<Vec<String>>,
    /// The factory's liquid balance.
    pub(super) balance: Cell<u128>,
}

impl Fake {
    pub(super) fn new() -> Self {
        let f = Fake::default();
        f.now.set(START);
        f.balance.set(1_000_000_000_000_000);
        f
    }

    pub(super) fn on(&self, method: &str, nth: u32, act: Act) -> &Self {
        self.script.borrow_mut().insert((method.into(), nth), act);
        self
    }

    /// Counts the call and returns its scripted act; `Meanwhile` runs here.
    pub(super) fn enter(&self, method: &str) -> Option<Act> {
        self.calls.borrow_mut().push(method.into());
        let n = {
            let mut seen = self.seen.borrow_mut();
            let n = seen.entry(method.into()).or_default();
            *n += 1;
            *n
        };
        let act = self.script.borrow_mut().remove(&(method.to_string(), n));
        if let Some(Act::Meanwhile(f)) = act {
            f(self);
            return None;
        }
        act
    }

    /// Applies a call's effect unless the script rejects it; then loses its reply or traps if told to.
    pub(super) fn call<T>(
        &self,
        method: &str,
        effect: impl FnOnce(&Fake) -> Result<T, CallErr>,
    ) -> Result<T, CallErr> {
        let act = self.enter(method);
        if let Some(Act::Reject(code)) = act {
            return Err(reject(method, code));
        }
        let r = effect(self);
        match act {
            Some(Act::LoseReply) => Err(reject(method, 6)),
            Some(Act::Trap) => panic!("the factory's callback for {method} traps"),
            _ => r,
        }
    }

    pub(super) fn canister(&self, id: Principal) -> FakeCanister {
        self.canisters.borrow()[&id].clone()
    }

    pub(super) fn only_canister(&self) -> Principal {
        *self.canisters.borrow().keys().next().expect("a canister")
    }

    pub(super) fn with(&self, id: Principal, f: impl FnOnce(&mut FakeCanister)) {
        f(self.canisters.borrow_mut().get_mut(&id).expect("exists"))
    }

    pub(super) fn controlled(&self, id: Principal, by: Principal) -> Result<(), CallErr> {
        match self.canisters.borrow().get(&id) {
            None => Err(reject("mgmt", 3)),
            Some(c) if !c.controllers.contains(&by) => Err(reject("mgmt", 4)),
            Some(_) => Ok(()),
        }
    }

    /// The user, as a controller, calls the management canister.
    pub(super) fn user_sets_controllers(&self, id: Principal, controllers: Vec<Principal>) {
        self.with(id, |c| {
            c.controllers = controllers.clone();
            c.changes.push(ChangeFact {
                by: user(),
                what: ChangeWhat::Controllers(controllers),
            });
        });
    }

    /// The user installs a module with this hash.
    pub(super) fn user_installs(&self, id: Principal, module_hash: Vec<u8>) {
        self.with(id, |c| {
            c.module = Some(module_hash);
            c.changes.push(ChangeFact {
                by: user(),
                what: ChangeWhat::Code,
            });
        });
    }

    pub(super) fn count(&self, method: &str) -> usize {
        self.calls.borrow().iter().filter(|m| *m == method).count()
    }

    pub(super) fn personal_reply(
        &self,
        id: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, CallErr> {
        let c = self.canister(id);
        if c.module.as_deref() != Some(&sha(WASM)[..]) {
            return Err(reject(method, 5));
        }
        if c.stopped {
            return Err(reject(method, 5));
        }
        let ack = || {
            Encode!(&Ok::<_, capsule::Error>(ImportAck {
                duplicate: false,
                next: 1
            }))
            .unwrap()
        };
        Ok(match method {
            "api_version" => Encode!(&ApiVersion { major: 1, minor: 0 }).unwrap(),
            "import_status" => Encode!(&Ok::<_, capsule::Error>(ImportStatus {
                phase: c.phase.unwrap_or(ImportPhase::Ready),
                owner: c.owner,
                importer: c.importer,
                expected: c.expected.clone(),
                memory_batches: 0,
                connection_batches: 0,
                memories: 0,
                connections: 0,
                pending_blobs: 0,
                finalized: c.finalized.clone(),
            }))
            .unwrap(),
            "import_begin" => {
                let req = candid::decode_one::<capsule::transfer::ImportBegin>(arg).unwrap();
                self.with(id, |c| {
                    c.phase = Some(ImportPhase::Open);
                    c.expected = Some(req.expected);
                });
                Encode!(&Ok::<_, capsule::Error>(self.status_of(id))).unwrap()
            }
            "import_blob_chunk" | "import_memories" | "import_connections" => ack(),
            "import_finalize" => {
                if c.phase == Some(ImportPhase::Finalized) {
                    return Ok(Encode!(&Err::<Manifest, _>(capsule::Error::from(
                        capsule::ErrorKind::ImportFinalized
                    )))
                    .unwrap());
                }
                self.with(id, |c| {
                    c.phase = Some(ImportPhase::Finalized);
                    c.finalized = c.expected.clone();
                });
                Encode!(&Ok::<_, capsule::Error>(c.expected.clone().unwrap())).unwrap()
            }
            other => panic!("unexpected personal method {other}"),
        })
    }

    pub(super) fn status_of(&self, id: Principal) -> ImportStatus {
        let bytes = self.personal_reply(id, "import_status", &[]).unwrap();
        candid::decode_one::<Result<ImportStatus, capsule::Error>>(&bytes)
            .unwrap()
            .unwrap()
    }
}

pub(super) fn reject(method: &str, code: u32) -> CallErr {
    CallErr {
        method: method.into(),
        code,
        message: format!("rejected with {code}"),
    }
}

pub(super) fn sha(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

impl Runtime for Fake {
    fn now(&self) -> u64 {
        self.now.get()
    }
    fn factory(&self) -> Principal {
        factory()
    }
    fn liquid_balance(&self) -> u128 {
        self.balance.get()
    }
    async fn failpoint(&self, site: &str) -> FactoryResult<()> {
        self.call(site, |_| Ok(())).map_err(FactoryError::from)
    }
    fn footprint(&self) -> u64 {
        100 << 20
    }
    async fn create_canister(&self, new: NewCanister) -> Result<Principal, CallErr> {
        self.call("create_canister", |f| {
            let id = Principal::from_slice(&[100 + f.canisters.borrow().len() as u8; 10]);
            let changes = vec![ChangeFact {
                by: factory(),
                what: ChangeWhat::Created,
            }];
            f.canisters.borrow_mut().insert(
                id,
                FakeCanister {
                    controllers: new.controllers,
                    changes,
                    cycles: new.cycles,
                    freezing_threshold: new.freezing_threshold,
                    ..Default::default()
                },
            );
            Ok(id)
        })
    }
    async fn deposit_cycles(&self, id: Principal, cycles: u128) -> Result<(), CallErr> {
        self.call("deposit_cycles", |f| {
            let mut all = f.canisters.borrow_mut();
            let c = all
                .get_mut(&id)
                .ok_or_else(|| reject("deposit_cycles", 3))?;
            c.cycles += cycles;
            Ok(())
        })
    }
    async fn canister_status(&self, id: Principal) -> Result<StatusFacts, CallErr> {
        self.call("canister_status", |f| {
            f.controlled(id, factory())?;
            let c = f.canister(id);
            Ok(StatusFacts {
                module_hash: c.module,
                cycles: c.cycles,
            })
        })
    }
    async fn canister_info(&self, id: Principal) -> Result<CanisterFacts, CallErr> {
        self.call("canister_info", |f| {
            let c = f
                .canisters
                .borrow()
                .get(&id)
                .cloned()
                .ok_or_else(|| reject("canister_info", 3))?;
            let keep = c.changes.len().saturating_sub(20);
            Ok(CanisterFacts {
                module_hash: c.module.clone(),
                controllers: c.controllers.clone(),
                total_changes: c.changes.len() as u64,
                changes: c.changes[keep..].to_vec(),
            })
        })
    }
    async fn install(
        &self,
        id: Principal,
        _mode: CanisterInstallMode,
        wasm: &[u8],
        _sha: &[u8],
        _arg: Vec<u8>,
        _chunked: bool,
    ) -> Result<(), CallErr> {
        self.call("install_code", |f| {
            f.controlled(id, factory())?;
            f.with(id, |c| {
                c.module = Some(sha(wasm));
                c.phase = Some(ImportPhase::Ready);
                c.owner = Some(user());
                c.importer = Some(factory());
                c.expected = None;
                c.finalized = None;
                c.changes.push(ChangeFact {
                    by: factory(),
                    what: ChangeWhat::Code,
                });
            });
            Ok(())
        })
    }
    async fn set_controllers(
        &self,
        id: Principal,
        controllers: Vec<Principal>,
    ) -> Result<(), CallErr> {
        self.call("update_settings", |f| {
            f.controlled(id, factory())?;
            f.with(id, |c| {
                c.controllers = controllers.clone();
                c.changes.push(ChangeFact {
                    by: factory(),
                    what: ChangeWhat::Controllers(controllers),
                });
            });
            Ok(())
        })
    }
    async fn stop_canister(&self, id: Principal) -> Result<(), CallErr> {
        self.call("stop_canister", |f| {
            f.controlled(id, factory())?;
            f.with(id, |c| c.stopped = true);
            Ok(())
        })
    }
    async fn delete_canister(&self, id: Principal) -> Result<(), CallErr> {
        self.call("delete_canister", |f| {
            f.controlled(id, factory())?;
            f.canisters.borrow_mut().remove(&id);
            f.deleted.borrow_mut().push(id);
            Ok(())
        })
    }
    async fn call_personal(
        &self,
        id: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, CallErr> {
        let act = self.enter(method);
        match act {
            Some(Act::Reject(code)) => Err(reject(method, code)),
            Some(Act::Reply(bytes)) => Ok(bytes),
            Some(Act::LoseReply) => {
                self.personal_reply(id, method, &arg)?;
                Err(reject(method, 6))
            }
            Some(Act::Trap) => {
                self.personal_reply(id, method, &arg)?;
                panic!("the factory's callback for {method} traps")
            }
            _ => self.personal_reply(id, method, &arg),
        }
    }
}
