//! Every call the factory makes, in one place: the management canister and the personal canister.

use super::api::{FactoryError, FactoryErrorKind};
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Principal};
use ic_cdk::call::{Call, CallFailed};
use ic_management_canister_types::*;
use serde::de::DeserializeOwned;

/// A failed call: which method, the IC's reject code (0 when the reply did not decode), the message.
#[derive(Debug, Clone)]
pub struct CallErr {
    pub method: String,
    pub code: u32,
    pub message: String,
}

impl CallErr {
    /// Rejects that may go away by themselves: SYS_TRANSIENT, CANISTER_ERROR (a trap, a stopped or
    /// frozen callee) and SYS_UNKNOWN (a bounded-wait timeout; every step checks before repeating).
    pub fn transient(&self) -> bool {
        matches!(self.code, 2 | 5 | 6)
    }
}

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

async fn run<R: CandidType + DeserializeOwned>(
    call: Call<'_, '_>,
    method: &str,
) -> Result<R, CallErr> {
    match call.await {
        Ok(response) => response.candid::<R>().map_err(|e| CallErr {
            method: method.into(),
            code: 0,
            message: format!("undecodable reply: {e}"),
        }),
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

fn mgmt(method: &str) -> Call<'_, '_> {
    Call::bounded_wait(Principal::management_canister(), method)
}

/// Unbounded wait: a timeout would leave us not knowing whether the canister exists.
pub async fn create_canister(
    controllers: Vec<Principal>,
    cycles: u128,
) -> Result<Principal, CallErr> {
    let settings = CanisterSettings {
        controllers: Some(controllers),
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

pub async fn module_hash(canister_id: Principal) -> Result<Option<Vec<u8>>, CallErr> {
    let args = CanisterStatusArgs { canister_id };
    run::<CanisterStatusResult>(mgmt("canister_status").with_arg(args), "canister_status")
        .await
        .map(|s| s.module_hash)
}

pub async fn install(
    canister_id: Principal,
    mode: CanisterInstallMode,
    wasm: Vec<u8>,
    arg: Vec<u8>,
) -> Result<(), CallErr> {
    let args = InstallCodeArgs {
        mode,
        canister_id,
        wasm_module: wasm,
        arg,
        sender_canister_version: None,
    };
    run::<()>(mgmt("install_code").with_arg(args), "install_code").await
}

/// Uploads the module to the target's own chunk store in 1 MiB pieces, installs from there and clears it.
pub async fn install_chunked(
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

pub async fn set_controllers(
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

/// Controllers as the IC reports them to any canister (works after the factory lost control).
pub async fn controllers(canister_id: Principal) -> Result<Vec<Principal>, CallErr> {
    let args = CanisterInfoArgs {
        canister_id,
        num_requested_changes: None,
    };
    run::<CanisterInfoResult>(mgmt("canister_info").with_arg(args), "canister_info")
        .await
        .map(|i| i.controllers)
}

pub async fn stop_and_delete(canister_id: Principal) -> Result<(), CallErr> {
    run::<()>(
        mgmt("stop_canister").with_arg(StopCanisterArgs { canister_id }),
        "stop_canister",
    )
    .await?;
    run::<()>(
        mgmt("delete_canister").with_arg(DeleteCanisterArgs { canister_id }),
        "delete_canister",
    )
    .await
}

/// A bounded-wait call to a personal canister method.
pub async fn personal<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
    canister_id: Principal,
    method: &str,
    args: A,
) -> Result<R, CallErr> {
    run::<R>(
        Call::bounded_wait(canister_id, method).with_args(&args),
        method,
    )
    .await
}
