//! The Internet Computer as the driver's `Runtime`: every call the factory makes, in one place.

use super::api::FactoryResult;
use super::runtime::{
    CallErr, CanisterFacts, ChangeFact, ChangeWhat, NewCanister, Runtime, StatusFacts,
};
use candid::{CandidType, Principal};
use ic_cdk::call::{Call, CallFailed};
use ic_management_canister_types::*;
use serde::de::DeserializeOwned;

/// The IC itself.
pub struct IcRuntime;

/// Canister history keeps this many recent changes.
const HISTORY_KEPT: u64 = 20;

async fn raw(call: Call<'_, '_>, method: &str) -> Result<Vec<u8>, CallErr> {
    match call.await {
        Ok(response) => Ok(response.into_bytes()),
        Err(CallFailed::CallRejected(r)) => Err(CallErr {
            method: method.into(),
            code: r.raw_reject_code(),
            message: r.reject_message().to_string(),
        }),
        Err(other) => Err(CallErr {
            method: method.into(),
            code: 2,
            message: other.to_string(),
        }),
    }
}

/// A management canister call; its replies are trusted and decoded without quotas.
async fn run<R: CandidType + DeserializeOwned>(
    call: Call<'_, '_>,
    method: &str,
) -> Result<R, CallErr> {
    let bytes = raw(call, method).await?;
    candid::decode_one(&bytes).map_err(|e| CallErr {
        method: method.into(),
        code: 0,
        message: format!("undecodable reply: {e}"),
    })
}

fn mgmt(method: &str) -> Call<'_, '_> {
    Call::bounded_wait(Principal::management_canister(), method)
}

fn change_fact(c: Change) -> ChangeFact {
    let by = match c.origin {
        ChangeOrigin::FromUser(u) => u.user_id,
        ChangeOrigin::FromCanister(c) => c.canister_id,
    };
    let what = match c.details {
        Some(ChangeDetails::Creation(_)) => ChangeWhat::Created,
        Some(ChangeDetails::ControllersChange(r)) => ChangeWhat::Controllers(r.controllers),
        Some(ChangeDetails::RenameCanister(_)) => ChangeWhat::Other,
        // A kind of change this build does not know may touch the code: judged like one that does.
        Some(ChangeDetails::CodeUninstall)
        | Some(ChangeDetails::CodeDeployment(_))
        | Some(ChangeDetails::LoadSnapshot(_))
        | None => ChangeWhat::Code,
    };
    ChangeFact { by, what }
}

impl Runtime for IcRuntime {
    fn now(&self) -> u64 {
        ic_cdk::api::time()
    }

    fn factory(&self) -> Principal {
        ic_cdk::api::canister_self()
    }

    fn liquid_balance(&self) -> u128 {
        ic_cdk::api::canister_liquid_cycle_balance()
    }

    async fn failpoint(&self, site: &str) -> FactoryResult<()> {
        super::failpoints::hit(site).await
    }

    /// Unbounded wait: a timeout would leave us not knowing whether the canister exists.
    fn footprint(&self) -> u64 {
        #[cfg(target_arch = "wasm32")]
        let heap = core::arch::wasm32::memory_size(0) as u64 * 65_536;
        #[cfg(not(target_arch = "wasm32"))]
        let heap = 0;
        heap + capsule::store::stable_bytes()
    }

    async fn create_canister(&self, new: NewCanister) -> Result<Principal, CallErr> {
        let cycles = new.cycles;
        let settings = CanisterSettings {
            controllers: Some(new.controllers),
            freezing_threshold: Some(new.freezing_threshold.into()),
            reserved_cycles_limit: Some(new.reserved_cycles_limit.into()),
            ..Default::default()
        };
        let args = CreateCanisterArgs {
            settings: Some(settings),
            sender_canister_version: None,
        };
        let call = Call::unbounded_wait(Principal::management_canister(), "create_canister")
            .with_arg(args)
            .with_cycles(cycles);
        run::<CreateCanisterResult>(call, "create_canister")
            .await
            .map(|r| r.canister_id)
    }

    /// Unbounded wait, like create_canister: the cycles are either refunded or deposited, never unknown.
    async fn deposit_cycles(&self, canister_id: Principal, cycles: u128) -> Result<(), CallErr> {
        let call = Call::unbounded_wait(Principal::management_canister(), "deposit_cycles")
            .with_arg(CanisterIdRecord { canister_id })
            .with_cycles(cycles);
        raw(call, "deposit_cycles").await.map(|_| ())
    }

    async fn canister_status(&self, canister_id: Principal) -> Result<StatusFacts, CallErr> {
        let args = CanisterStatusArgs { canister_id };
        let s: CanisterStatusResult =
            run(mgmt("canister_status").with_arg(args), "canister_status").await?;
        Ok(StatusFacts {
            module_hash: s.module_hash,
            cycles: u128::try_from(s.cycles.0).unwrap_or(u128::MAX),
        })
    }

    /// Works for any canister, whoever controls it now.
    async fn canister_info(&self, canister_id: Principal) -> Result<CanisterFacts, CallErr> {
        let args = CanisterInfoArgs {
            canister_id,
            num_requested_changes: Some(HISTORY_KEPT),
        };
        let info = run::<CanisterInfoResult>(mgmt("canister_info").with_arg(args), "canister_info")
            .await?;
        Ok(CanisterFacts {
            module_hash: info.module_hash,
            controllers: info.controllers,
            total_changes: info.total_num_changes,
            changes: info.recent_changes.into_iter().map(change_fact).collect(),
        })
    }

    async fn install(
        &self,
        canister_id: Principal,
        mode: CanisterInstallMode,
        wasm: &[u8],
        wasm_sha256: &[u8],
        arg: Vec<u8>,
        chunked: bool,
    ) -> Result<(), CallErr> {
        if chunked {
            return install_chunked(canister_id, mode, wasm, wasm_sha256.to_vec(), arg).await;
        }
        let args = InstallCodeArgs {
            mode,
            canister_id,
            wasm_module: wasm.to_vec(),
            arg,
            sender_canister_version: None,
        };
        run::<()>(mgmt("install_code").with_arg(args), "install_code").await
    }

    async fn set_controllers(
        &self,
        canister_id: Principal,
        controllers: Vec<Principal>,
    ) -> Result<(), CallErr> {
        let settings = CanisterSettings {
            controllers: Some(controllers),
            ..Default::default()
        };
        let args = UpdateSettingsArgs {
            canister_id,
            settings,
            sender_canister_version: None,
        };
        run::<()>(mgmt("update_settings").with_arg(args), "update_settings").await
    }

    async fn stop_canister(&self, canister_id: Principal) -> Result<(), CallErr> {
        let args = StopCanisterArgs { canister_id };
        run::<()>(mgmt("stop_canister").with_arg(args), "stop_canister").await
    }

    async fn delete_canister(&self, canister_id: Principal) -> Result<(), CallErr> {
        let args = DeleteCanisterArgs { canister_id };
        run::<()>(mgmt("delete_canister").with_arg(args), "delete_canister").await
    }

    async fn call_personal(
        &self,
        canister_id: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, CallErr> {
        raw(
            Call::bounded_wait(canister_id, method).with_raw_args(&arg),
            method,
        )
        .await
    }
}

/// Uploads the module to the target's own chunk store in 1 MiB pieces, installs from there and clears it.
async fn install_chunked(
    canister_id: Principal,
    mode: CanisterInstallMode,
    wasm: &[u8],
    wasm_sha256: Vec<u8>,
    arg: Vec<u8>,
) -> Result<(), CallErr> {
    run::<()>(
        mgmt("clear_chunk_store").with_arg(ClearChunkStoreArgs { canister_id }),
        "clear_chunk_store",
    )
    .await?;
    let mut hashes = Vec::new();
    for piece in wasm.chunks(1024 * 1024) {
        let args = UploadChunkArgs {
            canister_id,
            chunk: piece.to_vec(),
        };
        hashes.push(
            run::<UploadChunkResult>(mgmt("upload_chunk").with_arg(args), "upload_chunk").await?,
        );
    }
    let args = InstallChunkedCodeArgs {
        mode,
        target_canister: canister_id,
        store_canister: None,
        chunk_hashes_list: hashes,
        wasm_module_hash: wasm_sha256,
        arg,
        sender_canister_version: None,
    };
    run::<()>(
        mgmt("install_chunked_code").with_arg(args),
        "install_chunked_code",
    )
    .await?;
    run::<()>(
        mgmt("clear_chunk_store").with_arg(ClearChunkStoreArgs { canister_id }),
        "clear_chunk_store",
    )
    .await
}
