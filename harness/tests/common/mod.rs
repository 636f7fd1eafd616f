//! A toy project and a toy IC for testing the harness without the embedded engine: the toy IC runs a
//! small "notes" service written in Rust behind the same `Ic` trait.
#![allow(dead_code)]

use candid::{CandidType, Deserialize, Principal};
use harness::backend::{CallId, FaultAction, FaultRule, Ic, Install, LogLine, Reject, Unavailable};
use harness::builds::{Artifact, BuildSpec, CrateInfo, Workspace};
use harness::model::{BackendKind, Capability};
use harness::plan::Project;
use harness::runner::RunOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const TOY_DID: &str = r#"
type Err = variant { NotFound; Unauthorized; TooLarge : record { max : nat64 } };
type Note = record { id : nat64; title : text; owner : principal; size : nat64; created : nat64 };
service : (record { admins : vec principal; max_size : opt nat64 }) -> {
  put : (text, blob) -> (variant { Ok : record { id : nat64; size : nat64 }; Err : Err });
  get : (nat64) -> (variant { Ok : blob; Err : Err }) query;
  list : () -> (vec Note) query;
  count : () -> (nat64) query;
  version : () -> (text) query;
  failpoint_arm : (record { name : text; times : opt nat32 }) -> ();
}
"#;

/// A temporary workspace with one crate, `toy` (features: failpoints, extra).
pub fn project() -> (Project, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "harness-toy-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::create_dir_all(dir.join("toy"));
    std::fs::write(dir.join("toy").join("toy.did"), TOY_DID).unwrap();
    let mut crates = BTreeMap::new();
    crates.insert(
        "toy".to_string(),
        CrateInfo {
            name: "toy".into(),
            dir: dir.join("toy"),
            features: ["failpoints".to_string(), "extra".to_string()].into(),
        },
    );
    (
        Project {
            ws: Workspace {
                root: dir.clone(),
                crates,
            },
        },
        dir,
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn options(version: &'static str) -> RunOptions {
    RunOptions {
        snapshot: false,
        write_artifacts: false,
        build: Arc::new(move |spec: &BuildSpec| {
            let tag = format!("{version}:{}", spec.key());
            Ok(Arc::new(Artifact {
                spec: spec.clone(),
                path: PathBuf::new(),
                wasm: tag.into_bytes(),
                sha256: [0; 32],
            }))
        }),
        open: Arc::new(|kind, start, _seed| match kind {
            BackendKind::Embedded => Ok(Box::new(ToyIc::new(start)) as Box<dyn Ic>),
            BackendKind::Pocketic => Err(Unavailable("no PocketIC in the toy".into())),
        }),
    }
}

#[derive(Clone)]
struct Note {
    title: String,
    owner: Principal,
    data: Vec<u8>,
    created: u64,
}

#[derive(Default)]
struct Canister {
    notes: Vec<Note>,
    admins: Vec<Principal>,
    max: u64,
    wasm: Vec<u8>,
    running: bool,
    logs: Vec<LogLine>,
    cycles: u128,
    controllers: Vec<Principal>,
    failpoint: Option<(String, u32)>,
}

pub struct ToyIc {
    now: u64,
    canisters: Vec<Canister>,
    faults: Vec<Option<FaultRule>>,
    pending: Vec<(Principal, Principal, String, Vec<u8>)>,
}

#[derive(CandidType, Deserialize)]
struct Init {
    admins: Vec<Principal>,
    max_size: Option<u64>,
}
#[derive(CandidType)]
enum Err {
    NotFound,
    Unauthorized,
    TooLarge { max: u64 },
}
#[derive(CandidType)]
struct Created {
    id: u64,
    size: u64,
}
#[derive(CandidType)]
struct NoteOut {
    id: u64,
    title: String,
    owner: Principal,
    size: u64,
    created: u64,
}
#[derive(CandidType, Deserialize)]
struct Arm {
    name: String,
    times: Option<u32>,
}

fn idx(p: Principal) -> usize {
    let b = p.as_slice();
    b[b.len() - 3] as usize
}

fn cid(i: usize) -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0xf0, i as u8, 1, 1])
}

fn reject(code: u32, m: impl Into<String>) -> Reject {
    Reject {
        code,
        message: m.into(),
        error_code: None,
    }
}

impl ToyIc {
    pub fn new(start: u64) -> ToyIc {
        ToyIc {
            now: start,
            canisters: vec![],
            faults: vec![],
            pending: vec![],
        }
    }

    fn can(&mut self, c: Principal) -> Result<&mut Canister, Reject> {
        self.canisters
            .get_mut(idx(c))
            .ok_or_else(|| reject(3, format!("canister {c} not found")))
    }

    fn exec(
        &mut self,
        sender: Principal,
        c: Principal,
        method: &str,
        arg: &[u8],
        query: bool,
    ) -> Result<Vec<u8>, Reject> {
        for f in self.faults.iter().flatten() {
            if f.target == Some(c) && f.method.as_deref().map(|m| m == method).unwrap_or(true) {
                return Err(match &f.action {
                    FaultAction::Reject { code, message } => reject(*code, message.clone()),
                    FaultAction::Trap(m) => reject(5, format!("trapped: {m}")),
                    _ => reject(2, "held"),
                });
            }
        }
        let now = self.now;
        let can = self.can(c)?;
        if !can.running {
            return Err(reject(5, format!("canister {c} is stopped")));
        }
        if let Some((name, n)) = can.failpoint.clone() {
            if name == method && n > 0 {
                can.failpoint = Some((name, n - 1));
                return Err(reject(5, format!("failpoint {method} fired")));
            }
        }
        let enc = |r: candid::Result<Vec<u8>>| r.map_err(|e| reject(5, e.to_string()));
        match method {
            "put" if !query => {
                let (title, data): (String, serde_bytes::ByteBuf) =
                    candid::decode_args(arg).map_err(|e| reject(5, e.to_string()))?;
                let res: Result<Created, Err> = if sender == Principal::anonymous() {
                    Err(Err::Unauthorized)
                } else if data.len() as u64 > can.max {
                    Err(Err::TooLarge { max: can.max })
                } else {
                    can.notes.push(Note {
                        title: title.clone(),
                        owner: sender,
                        data: data.to_vec(),
                        created: now,
                    });
                    let id = can.notes.len() as u64 - 1;
                    let l = can.logs.len() as u64;
                    can.logs.push(LogLine {
                        idx: l,
                        time_nanos: now,
                        text: format!("put {title} by {sender}"),
                    });
                    Ok(Created {
                        id,
                        size: data.len() as u64,
                    })
                };
                enc(candid::encode_one(res))
            }
            "get" => {
                let id: u64 = candid::decode_one(arg).map_err(|e| reject(5, e.to_string()))?;
                let res: Result<serde_bytes::ByteBuf, Err> = match can.notes.get(id as usize) {
                    None => Err(Err::NotFound),
                    Some(n) if n.owner != sender => Err(Err::Unauthorized),
                    Some(n) => Ok(serde_bytes::ByteBuf::from(n.data.clone())),
                };
                enc(candid::encode_one(res))
            }
            "list" => {
                let out: Vec<NoteOut> = can
                    .notes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| NoteOut {
                        id: i as u64,
                        title: n.title.clone(),
                        owner: n.owner,
                        size: n.data.len() as u64,
                        created: n.created,
                    })
                    .collect();
                enc(candid::encode_one(out))
            }
            "count" => enc(candid::encode_one(can.notes.len() as u64)),
            "version" => enc(candid::encode_one(
                String::from_utf8_lossy(&can.wasm).to_string(),
            )),
            "failpoint_arm" if !query => {
                let a: Arm = candid::decode_one(arg).map_err(|e| reject(5, e.to_string()))?;
                if !can.admins.contains(&sender) {
                    return Err(reject(4, "only admins arm failpoints"));
                }
                can.failpoint = Some((a.name, a.times.unwrap_or(1)));
                enc(candid::encode_args(()))
            }
            _ => Err(reject(5, format!("no update method {method}"))),
        }
    }
}

impl Ic for ToyIc {
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
        self.canisters.push(Canister {
            cycles,
            controllers: controllers.to_vec(),
            running: true,
            ..Default::default()
        });
        Ok(cid(self.canisters.len() - 1))
    }
    fn install(
        &mut self,
        sender: Principal,
        c: Principal,
        mode: Install,
        wasm: &[u8],
        arg: &[u8],
    ) -> Result<(), Reject> {
        let can = self.can(c)?;
        if !can.controllers.contains(&sender) {
            return Err(reject(5, "only controllers install"));
        }
        let init: Init = candid::decode_one(arg).map_err(|e| reject(5, e.to_string()))?;
        if mode
            != (Install::Upgrade {
                skip_pre_upgrade: false,
            })
        {
            can.notes.clear();
        }
        can.admins = init.admins;
        can.max = init.max_size.unwrap_or(1 << 20);
        can.wasm = wasm.to_vec();
        can.cycles -= 1_000_000;
        Ok(())
    }
    fn update(
        &mut self,
        sender: Principal,
        c: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject> {
        self.exec(sender, c, method, arg, false)
    }
    fn query(
        &mut self,
        sender: Principal,
        c: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Vec<u8>, Reject> {
        self.exec(sender, c, method, arg, true)
    }
    fn submit(
        &mut self,
        sender: Principal,
        c: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallId, Reject> {
        self.pending
            .push((sender, c, method.to_string(), arg.to_vec()));
        Ok(self.pending.len() as u64 - 1)
    }
    fn await_call(&mut self, id: CallId) -> Result<Vec<u8>, Reject> {
        let (s, c, m, a) = self.pending[id as usize].clone();
        self.exec(s, c, &m, &a, false)
    }
    fn tick(&mut self) {
        self.now += 1_000_000;
    }
    fn run_until_idle(&mut self, _max_rounds: u32) -> Result<u32, String> {
        Ok(0)
    }
    fn time_nanos(&self) -> u64 {
        self.now
    }
    fn set_time_nanos(&mut self, t: u64) {
        self.now = t
    }
    fn advance_time(&mut self, d: Duration) {
        self.now += d.as_nanos() as u64
    }
    fn cycle_balance(&mut self, c: Principal) -> Result<u128, Reject> {
        Ok(self.can(c)?.cycles)
    }
    fn stop(&mut self, _s: Principal, c: Principal) -> Result<(), Reject> {
        self.can(c)?.running = false;
        Ok(())
    }
    fn start(&mut self, _s: Principal, c: Principal) -> Result<(), Reject> {
        self.can(c)?.running = true;
        Ok(())
    }
    fn logs(&mut self, c: Principal) -> Vec<LogLine> {
        self.can(c).map(|x| x.logs.clone()).unwrap_or_default()
    }
    fn add_fault(&mut self, rule: FaultRule) -> Result<u64, String> {
        self.faults.push(Some(rule));
        Ok(self.faults.len() as u64 - 1)
    }
    fn remove_fault(&mut self, id: u64) {
        if let Some(f) = self.faults.get_mut(id as usize) {
            *f = None;
        }
    }
    fn release_held(&mut self, _id: u64) -> usize {
        0
    }
    fn canister_ids(&mut self) -> Result<Vec<Principal>, String> {
        Ok((0..self.canisters.len()).map(cid).collect())
    }
    fn set_cycles(&mut self, c: Principal, n: u128) -> Result<(), String> {
        self.can(c).map_err(|e| e.message)?.cycles = n;
        Ok(())
    }
    fn add_cycles(&mut self, c: Principal, n: u128) -> Result<u128, String> {
        let can = self.can(c).map_err(|e| e.message)?;
        can.cycles += n;
        Ok(can.cycles)
    }
}

/// Options whose IC starts with one canister nobody declared (as if another canister had created
/// it): a toy notes canister with `admin` as its admin, at index 0.
pub fn options_with_stray(version: &'static str) -> RunOptions {
    let mut o = options(version);
    o.open = Arc::new(|kind, start, _seed| match kind {
        BackendKind::Embedded => {
            let mut ic = ToyIc::new(start);
            let admin = harness::plan::identity_principal("admin");
            let id = ic
                .create_canister(&[admin], 7_000_000_000_000)
                .expect("stray");
            let arg = candid::encode_one(Init {
                admins: vec![admin],
                max_size: Some(16),
            })
            .expect("init");
            ic.install(admin, id, Install::Install, b"stray", &arg)
                .expect("install stray");
            Ok(Box::new(ic) as Box<dyn Ic>)
        }
        BackendKind::Pocketic => Err(Unavailable("no PocketIC in the toy".into())),
    });
    o
}
