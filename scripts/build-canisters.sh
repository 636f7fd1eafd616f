#!/usr/bin/env bash
# Builds the canisters for wasm32 in release and copies them to a stable path:
#   target/canisters/<crate>.wasm                  default features
#   target/canisters/<crate>+<features>.wasm       with --features (commas become '+')
#   target/canisters/<crate>-nodefault[+...].wasm  with --no-default-features
# and a gzipped copy of each (<name>.wasm.gz): the IC installs gzipped modules, and the backend is larger
# than the 2 MiB an install message may carry.
# Usage: scripts/build-canisters.sh [--features a,b] [--no-default-features] [crate ...]   (default: backend personal)
set -euo pipefail
cd "$(dirname "$0")/.."

features=""
no_default=""
crates=()
while [ $# -gt 0 ]; do
  case "$1" in
    --features) features="$2"; shift 2 ;;
    --no-default-features) no_default=1; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) crates+=("$1"); shift ;;
  esac
done
[ ${#crates[@]} -gt 0 ] || crates=(backend personal)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/wasm}"
out_dir="$PWD/target/canisters"
mkdir -p "$out_dir"

for crate in "${crates[@]}"; do
  args=(build --release --target wasm32-unknown-unknown -p "$crate")
  suffix=""
  if [ -n "$no_default" ]; then args+=(--no-default-features); suffix="-nodefault"; fi
  if [ -n "$features" ]; then args+=(--features "$features"); suffix="$suffix+${features//,/+}"; fi
  cargo "${args[@]}"
  src="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$crate.wasm"
  dst="$out_dir/$crate$suffix.wasm"
  cp "$src" "$dst"
  gzip -9 -n -c "$dst" > "$dst.gz"
  printf '%-48s %10d bytes (gzipped %d)\n' "${dst#"$PWD"/}" "$(stat -c %s "$dst")" "$(stat -c %s "$dst.gz")"
done
