#!/usr/bin/env bash
# Prints the project's performance figures: the engine (compile, install, call latency, metering), the
# cost of one migration per capsule size, and the scenario suite's wall time.
# Usage: scripts/bench.sh [engine|migration|scenarios]...   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("$@"); [ ${#parts[@]} -gt 0 ] || parts=(engine migration scenarios)
scripts/build-canisters.sh >/dev/null
for part in "${parts[@]}"; do
  case "$part" in
    engine) cargo bench -p engine ;;
    migration) cargo run -q --profile bench -p bench --bin migration ;;
    scenarios) cargo run -q --profile bench -p harness -- bench ;;
    *) echo "unknown part: $part" >&2; exit 1 ;;
  esac
done
