#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the workspace (the integration tests run the
# real binaries), runs all unit and integration tests, and fails if no test ran.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
cargo build --workspace --locked 2>&1 | tail -n 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ]; then
  echo "test.sh: cargo test failed (exit $status)" >&2
  exit "$status"
fi
if [ "$passed" -eq 0 ]; then
  echo "test.sh: no tests ran; that is a failure" >&2
  exit 1
fi
