#!/usr/bin/env bash
# Fails if a canister wasm exports any failpoint method (they exist only with cargo feature `failpoints`).
set -euo pipefail
wasm="${1:?usage: check-no-failpoints.sh <file.wasm>}"
if grep -a -o 'canister_[a-z_]* failpoint[a-z_]*' "$wasm" | sort -u | grep .; then
  echo "FAIL: $wasm exports failpoint methods" >&2
  exit 1
fi
echo "ok: $wasm exports no failpoint method"
