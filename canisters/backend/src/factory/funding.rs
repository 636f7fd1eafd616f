//! What a personal canister costs, priced from the capsule it will hold and the IC's fee schedule, and
//! paid in two parts: at creation only what install and import need (with the freezing reserve at the
//! canister's final size), and the runway once the user holds the canister alone. A user who tampers
//! with the canister before the handoff gets the first part and nothing more.

use candid::{CandidType, Deserialize};

/// The IC's fees on a 13-node application subnet (cycles).
pub mod fees {
    pub const CANISTER_CREATION: u128 = 500_000_000_000;
    pub const UPDATE_MESSAGE_EXECUTION: u128 = 5_000_000;
    /// One cycle per instruction.
    pub const PER_INSTRUCTION: u128 = 1;
    pub const XNET_CALL: u128 = 260_000;
    pub const XNET_BYTE: u128 = 1_000;
    pub const GIB_STORAGE_PER_SECOND: u128 = 127_000;
}

const GIB: u128 = 1 << 30;
const DAY_SECS: u128 = 86_400;

/// Instructions the personal canister spends per imported byte (measured about 90 at 1 GiB; doubled).
const IMPORT_INSTRUCTIONS_PER_BYTE: u128 = 200;
/// Instructions per imported memory record and per connection, besides its bytes.
const IMPORT_INSTRUCTIONS_PER_ITEM: u128 = 1_000_000;
/// Installing the module (decoding it, running init) and the calls around the import.
const INSTALL_INSTRUCTIONS: u128 = 5_000_000_000;
/// What the install prepays for its instruction limit (300 B instructions), on top of the freezing
/// reserve: refunded after it ran, so it stays in the canister, but without it the install is refused.
const INSTALL_PREPAYMENT: u128 = 300_000_000_000 * fees::PER_INSTRUCTION;
/// Heap, maps and buckets a personal canister holds besides its data and module (every region of
/// the memory manager takes buckets of 8 MiB).
const BASE_FOOTPRINT: u128 = 128 << 20;
/// Stable structures' overhead on the capsule's bytes, in percent.
const STORAGE_OVERHEAD_PERCENT: u128 = 10;
/// Storage while the import runs (it takes minutes; a day leaves room for retries and backoff).
const IMPORT_WINDOW_SECS: u128 = DAY_SECS;
/// Margin on what install and import are estimated to burn, in percent.
const MARGIN_PERCENT: u128 = 25;
/// Margin on the install floor, in percent: the canister's real footprint and what it spent before a
/// reinstall are estimates, and an install it cannot prepay is refused.
const FLOOR_MARGIN_PERCENT: u128 = 50;
/// Bytes on the wire per memory record besides its asset (Candid framing, title, tags, ...).
const WIRE_BYTES_PER_ITEM: u128 = 5_000;
/// Import calls besides one per chunk and per batch: begin, status, version, finalize, manifest.
const FIXED_CALLS: u128 = 10;

/// Days of the backend's own idle burn that the reserve may never spend.
const FLOOR_DAYS: u128 = 90;
/// Cycles kept for the backend's own messages, on top of its idle burn.
const OPERATING_MARGIN: u128 = 100_000_000_000;

/// Storage cost per second of `bytes` of memory.
fn idle_per_second(bytes: u128) -> u128 {
    (bytes * fees::GIB_STORAGE_PER_SECOND).div_ceil(GIB)
}

/// What the backend keeps for itself: `FLOOR_DAYS` of its own storage at its current size, plus a
/// margin for its messages. Running costs come out of the same balance as the reserve.
pub fn floor(backend_footprint: u64) -> u128 {
    idle_per_second(u128::from(backend_footprint)) * FLOOR_DAYS * DAY_SECS + OPERATING_MARGIN
}

/// The reserve as it can really be spent: the book figure, but never more than the liquid balance
/// above the floor.
pub fn spendable(reserve: u128, liquid_balance: u128, floor: u128) -> u128 {
    reserve.min(liquid_balance.saturating_sub(floor))
}

/// The settings the factory gives every personal canister, and how long the runway lasts.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FundingPolicy {
    /// Storage paid after the handoff, at the canister's size.
    pub runway_days: u32,
    /// The canister's `freezing_threshold`: it freezes (and keeps its data) while its balance would
    /// pay for less than this; the initial funding covers it at the final size.
    pub freezing_threshold_days: u32,
    /// The canister's `reserved_cycles_limit`.
    pub reserved_cycles_limit: u128,
}

impl Default for FundingPolicy {
    fn default() -> Self {
        FundingPolicy {
            runway_days: 180,
            freezing_threshold_days: 30,
            reserved_cycles_limit: 5_000_000_000_000,
        }
    }
}

impl FundingPolicy {
    pub fn freezing_threshold_secs(&self) -> u64 {
        u64::from(self.freezing_threshold_days) * DAY_SECS as u64
    }
}

/// What a capsule weighs, as the export's manifest tells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapsuleSize {
    /// Blob and inline bytes.
    pub bytes: u64,
    /// Memory records plus connections.
    pub items: u64,
    /// Chunks of every blob (one import message each).
    pub chunks: u64,
    /// The personal module's size.
    pub wasm_bytes: u64,
}

/// The price of one migration.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FundingPlan {
    /// Attached to create_canister: the creation fee, what an install needs in the canister (its
    /// prepayment and the freezing reserve at the final size, `install_floor`), and install and import
    /// with storage while they run, each with a margin.
    pub initial: u128,
    /// Deposited after the handoff: `runway_days` of storage at the final size.
    pub runway: u128,
    /// What the import calls will cost the backend itself (per call and per byte).
    pub transmission: u128,
    /// The canister's estimated size once the capsule is in (bytes).
    pub footprint: u64,
}

impl FundingPlan {
    /// Everything the job will take out of the reserve.
    pub fn total(&self) -> u128 {
        self.initial
            .saturating_add(self.runway)
            .saturating_add(self.transmission)
    }
}

/// What the canister must hold before an install is sent: the install's prepayment and the freezing
/// reserve at its final size, with a margin. A retry that reinstalls tops the canister up to this.
pub fn install_floor(plan: &FundingPlan, policy: &FundingPolicy) -> u128 {
    install_floor_of(plan.footprint, policy)
}

fn install_floor_of(footprint: u64, policy: &FundingPolicy) -> u128 {
    let freezing = idle_per_second(u128::from(footprint))
        * u128::from(policy.freezing_threshold_days)
        * DAY_SECS;
    (INSTALL_PREPAYMENT + freezing) * (100 + FLOOR_MARGIN_PERCENT) / 100
}

/// Prices the migration of a capsule of `size` under `policy`.
pub fn plan(size: CapsuleSize, policy: &FundingPolicy) -> FundingPlan {
    let bytes = u128::from(size.bytes);
    let items = u128::from(size.items);
    let footprint = bytes
        + bytes * STORAGE_OVERHEAD_PERCENT / 100
        + u128::from(size.wasm_bytes)
        + BASE_FOOTPRINT;
    let per_second = idle_per_second(footprint);
    let batches = items.div_ceil(100);
    let calls = u128::from(size.chunks) + batches + FIXED_CALLS;
    let instructions = INSTALL_INSTRUCTIONS
        + bytes * IMPORT_INSTRUCTIONS_PER_BYTE
        + items * IMPORT_INSTRUCTIONS_PER_ITEM;
    let execution = instructions * fees::PER_INSTRUCTION + calls * fees::UPDATE_MESSAGE_EXECUTION;
    let burn = (execution + per_second * IMPORT_WINDOW_SECS) * (100 + MARGIN_PERCENT) / 100;
    let footprint = footprint.min(u128::from(u64::MAX)) as u64;
    FundingPlan {
        initial: fees::CANISTER_CREATION + install_floor_of(footprint, policy) + burn,
        runway: per_second * u128::from(policy.runway_days) * DAY_SECS,
        transmission: transmission_fee(calls, bytes + items * WIRE_BYTES_PER_ITEM),
        footprint,
    }
}

/// What the backend pays to send `calls` calls carrying `bytes` in all.
pub fn transmission_fee(calls: u128, bytes: u128) -> u128 {
    calls * fees::XNET_CALL + bytes * fees::XNET_BYTE
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u128 = 1_000_000_000_000;

    fn size(bytes: u64, items: u64) -> CapsuleSize {
        CapsuleSize {
            bytes,
            items,
            chunks: bytes.div_ceil(1_835_008),
            wasm_bytes: 1_200_000,
        }
    }

    #[test]
    fn a_small_capsule_costs_little_more_than_creation_and_install() {
        let p = plan(size(50_000, 100), &FundingPolicy::default());
        let floor = fees::CANISTER_CREATION + install_floor(&p, &FundingPolicy::default());
        assert!(p.initial > floor);
        assert!(p.initial < floor + T / 50, "{p:?}");
        // Half a year of the canister's base footprint (module, heap, the maps' first buckets).
        assert!(p.runway < T / 3, "{p:?}");
        assert!(p.transmission < T / 100, "{p:?}");
    }

    #[test]
    fn the_price_grows_with_the_capsule() {
        let policy = FundingPolicy::default();
        let small = plan(size(1 << 20, 10), &policy);
        let big = plan(size(4 << 30, 100_000), &policy);
        assert!(big.initial > small.initial && big.runway > small.runway);
        // 4 GiB: the freezing reserve alone is about 30 days of 4.5 GiB of storage (1.5 T).
        assert!(big.initial > 3 * T && big.initial < 5 * T, "{big:?}");
        // Six months of 4.5 GiB.
        assert!(big.runway > 8 * T && big.runway < 10 * T, "{big:?}");
        // About 1,000 cycles per byte on the wire: 4.3 T for 4 GiB.
        assert!(
            big.transmission > 4 * T && big.transmission < 5 * T,
            "{big:?}"
        );
    }

    #[test]
    fn the_runway_and_the_freezing_reserve_follow_the_policy() {
        let s = size(1 << 30, 1_000);
        let short = plan(
            s,
            &FundingPolicy {
                runway_days: 30,
                ..FundingPolicy::default()
            },
        );
        let long = plan(
            s,
            &FundingPolicy {
                runway_days: 360,
                ..FundingPolicy::default()
            },
        );
        assert_eq!(long.runway, short.runway * 12);
        assert_eq!(long.initial, short.initial);
        let strict = plan(
            s,
            &FundingPolicy {
                freezing_threshold_days: 90,
                ..FundingPolicy::default()
            },
        );
        assert!(strict.initial > long.initial);
        assert_eq!(
            strict.total(),
            strict.initial + strict.runway + strict.transmission
        );
    }

    #[test]
    fn the_reserve_is_spendable_only_as_far_as_the_balance_backs_it() {
        let floor = floor(2 << 30);
        // 90 days of 2 GiB plus the margin.
        assert_eq!(floor, 254_000 * 90 * 86_400 + OPERATING_MARGIN);
        assert_eq!(spendable(18 * T, 100 * T, floor), 18 * T);
        assert_eq!(spendable(18 * T, 3 * T, floor), 3 * T - floor);
        assert_eq!(spendable(18 * T, floor / 2, floor), 0);
    }

    #[test]
    fn even_absurd_sizes_do_not_overflow() {
        let p = plan(
            CapsuleSize {
                bytes: u64::MAX,
                items: u64::MAX,
                chunks: u64::MAX,
                wasm_bytes: u64::MAX,
            },
            &FundingPolicy {
                runway_days: u32::MAX,
                freezing_threshold_days: u32::MAX,
                reserved_cycles_limit: u128::MAX,
            },
        );
        assert!(p.total() > 0);
    }
}
