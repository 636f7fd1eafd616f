#!/usr/bin/env bash
# Run one scenario file in isolation through the harness CLI.
#
#   scripts/scenario.sh <file> [--backend embedded|pocketic] [--variant NAME] [--update] [--junit PATH]
#
# --variant  one variant only (`base`, `fault=<name>@<stage>`, `upgrade=<canister>@<stage>`);
#            without it every variant of the file runs.
# --update   accept new/changed transcript snapshots (INSTA_UPDATE=always).
# Exit codes: 0 pass, 1 usage, 2 lint errors, 3 infrastructure error, 4 assertion/snapshot failure,
#             5 everything skipped (unmet `requires`, e.g. no PocketIC server).
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  exit 1
fi
file=$1
shift
if [ ! -f "$file" ]; then
  echo "scenario.sh: no such file: $file" >&2
  exit 1
fi

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend|--variant|--junit)
      [ $# -ge 2 ] || { echo "scenario.sh: $1 needs a value" >&2; exit 1; }
      args+=("$1" "$2")
      shift 2
      ;;
    --update) args+=(--update); shift ;;
    --no-snapshot) args+=(--no-snapshot); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "scenario.sh: unknown option $1" >&2; usage >&2; exit 1 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
cargo build --quiet -p harness --bin harness
set +e
"$target_dir/debug/harness" run "$file" ${args[@]+"${args[@]}"}
code=$?
set -e

case $code in
  0) verdict="passed" ;;
  2) verdict="lint errors" ;;
  3) verdict="infrastructure error" ;;
  4) verdict="assertion or snapshot failure" ;;
  5) verdict="skipped (unmet requires)" ;;
  *) verdict="exit $code" ;;
esac
echo
echo "scenario.sh: $file: $verdict"
echo "  per-trial artifacts: target/scenarios/<scenario>__<backend>__<variant>/ (transcript.json, failure.txt)"
echo "  transcript snapshots: harness/tests/snapshots/ (review: cargo insta review)"
echo "  canister wasm builds: target/wasm/artifacts/"
exit $code
