//! The trusted witness and the untrusted callee: what the management canister says about the job's
//! canister (`control`), and calls to the personal canister, whose replies are decoded with quotas.

use super::{err, Cx, Halt, Step};
use super::{DECODING_QUOTA, SKIPPING_QUOTA};
use crate::factory::api::*;
use crate::factory::control::{self, Control};
use crate::factory::funding;
use crate::factory::repo::{self, Custody, Job};
use crate::factory::runtime::Runtime;
use candid::utils::ArgumentEncoder;
use candid::CandidType;
use candid::Principal;
use serde::de::DeserializeOwned;

/// Confirms through the management canister that the chain of control is unbroken and, with
/// `check_module`, that the pinned module runs; records how far the history is verified.
pub(super) async fn confirm<R: Runtime>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    check_module: bool,
) -> Step<Control> {
    let id = canister_of(job)?;
    let info = cx.rt.canister_info(id).await;
    cx.fresh()?;
    let custody = job.custody();
    let pinned = custody
        .module_sha256
        .as_ref()
        .map(|h| h.as_slice())
        .filter(|_| check_module);
    let verdict = control::check(
        &info?,
        cx.rt.factory(),
        job.user,
        pinned,
        custody.changes_checked,
    )?;
    if let Control::Held { checked } = verdict {
        if checked != custody.changes_checked {
            job.custody = Some(Custody {
                changes_checked: checked,
                ..custody
            });
            cx.save(job)?;
        }
    }
    Ok(verdict)
}

/// A failed call to or about the job's canister: if the management canister shows someone else changed
/// the canister's code or controllers, that is the error; otherwise the call's own. (The module is not
/// compared: the failed call may have been the factory's own install.)
pub(super) async fn explain<R: Runtime>(cx: &Cx<'_, R>, job: &mut Job, e: FactoryError) -> Halt {
    match confirm(cx, job, false).await {
        Err(Halt::Failed(found)) if found.kind.is_tamper() => Halt::Failed(found),
        Err(Halt::Stale) => Halt::Stale,
        _ => Halt::Failed(e),
    }
}

/// Decodes a reply of the personal canister, which the user may have replaced, within quotas.
pub(super) fn decode_reply<T: CandidType + DeserializeOwned>(
    method: &str,
    bytes: &[u8],
) -> Result<T, FactoryError> {
    let mut config = candid::de::DecoderConfig::new();
    config.set_decoding_quota(DECODING_QUOTA);
    config.set_skipping_quota(SKIPPING_QUOTA);
    candid::utils::decode_one_with_config(bytes, &config).map_err(|e| {
        err(
            FactoryErrorKind::BadReply {
                method: method.into(),
                message: e.to_string(),
            },
            format!("{method} answered with an unacceptable reply: {e}"),
        )
    })
}

/// Calls the personal canister and decodes its reply with quotas.
pub(super) async fn personal<R: Runtime, A: ArgumentEncoder, T: CandidType + DeserializeOwned>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    method: &str,
    args: A,
) -> Step<T> {
    let id = canister_of(job)?;
    let arg = candid::encode_args(args).expect("encode arguments");
    let sent = arg.len() + method.len();
    let reply = cx.rt.call_personal(id, method, arg).await;
    let received = reply.as_ref().map_or(0, Vec::len);
    pay_transmission(job, funding::transmission_fee(1, (sent + received) as u128));
    cx.fresh()?;
    match reply {
        Ok(bytes) => Ok(decode_reply(method, &bytes)?),
        Err(e) => Err(explain(cx, job, e.into()).await),
    }
}

/// A call's fees come out of the reserve (the backend's balance paid them), into the job's costs.
fn pay_transmission(job: &mut Job, fee: u128) {
    repo::update_state(|s| {
        s.reserve = s.reserve.saturating_sub(fee);
        s.total_consumed = s.total_consumed.saturating_add(fee);
    });
    let funding = job.funding.get_or_insert_with(Default::default);
    funding.transmission_paid = funding.transmission_paid.saturating_add(fee);
    job.cycles_spent = job.cycles_spent.saturating_add(fee);
}

/// An import call: the personal canister's typed error becomes `ImportRejected`.
pub(super) async fn import_call<
    R: Runtime,
    A: ArgumentEncoder,
    T: CandidType + DeserializeOwned,
>(
    cx: &Cx<'_, R>,
    job: &mut Job,
    method: &str,
    args: A,
) -> Step<T> {
    let r: Result<T, capsule::Error> = personal(cx, job, method, args).await?;
    r.map_err(|e| {
        let message = format!("{method}: {}", e.message);
        Halt::Failed(err(
            FactoryErrorKind::ImportRejected {
                method: method.into(),
                error: Box::new(e),
            },
            message,
        ))
    })
}

pub(super) fn canister_of(job: &Job) -> Result<Principal, FactoryError> {
    job.canister_id
        .ok_or_else(|| err(FactoryErrorKind::CanisterMissing, "the job has no canister"))
}
