//! The driver on the IC's timers: a periodic tick leases runnable jobs and runs each task in a timer
//! of its own. Without `wasm32` (the driver's unit tests) there are no timers and `kick` does nothing.

use super::driver;
#[cfg(target_arch = "wasm32")]
use super::ic::IcRuntime;
#[cfg(target_arch = "wasm32")]
use std::time::Duration;

#[cfg(target_arch = "wasm32")]
const TICK: Duration = Duration::from_secs(5);

/// Arms the periodic tick and runs one right away (init and post_upgrade). No task survives an
/// upgrade, so the leases of the old ones are released first.
pub fn start() {
    driver::release_all_leases();
    #[cfg(target_arch = "wasm32")]
    ic_cdk_timers::set_timer_interval(TICK, || async { tick() });
    kick();
}

/// Runs a tick as soon as possible: after a job was queued or a task finished.
pub fn kick() {
    #[cfg(target_arch = "wasm32")]
    ic_cdk_timers::set_timer(Duration::ZERO, async { tick() });
}

#[cfg(target_arch = "wasm32")]
fn tick() {
    super::service::check_reserve_alert(&IcRuntime);
    for task in driver::lease_runnable(ic_cdk::api::time()) {
        ic_cdk_timers::set_timer(Duration::ZERO, async move {
            driver::run(&IcRuntime, task).await;
            kick();
        });
    }
}

/// Refuses an upgrade while create_canister or deposit_cycles is in flight: its reply would be lost
/// with the heap, and with it the id of a canister the factory paid for (or the refund of a deposit).
/// Stop the canister first, or retry shortly.
pub fn guard_upgrade() {
    let n = driver::creates_in_flight();
    if n > 0 {
        ic_cdk::trap(format!(
            "upgrade refused: {n} create_canister or deposit_cycles call(s) in flight; stop the backend first (stop_canister waits for them) or retry in a moment"
        ));
    }
}
