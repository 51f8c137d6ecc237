#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the workspace (the integration tests run the
# real binaries), runs all unit and integration tests on the newest etcd 3.7 (the default, built
# from etcd's Go modules), then the tests that start etcd again on the newest 3.6 and 3.5, then the
# adoption tests (a hand-made cluster adopted in place) on upstream 3.5.1 and Debian's 3.4.23, the
# old clusters people still run (the upgrades from them run in every pass: they pin their own
# binaries), and fails if any test failed or if no test ran.
#   ETCD_VERSIONS="3.7"   or "3.6", "3.5", "3.5.1", "3.4", or a list: run on those only
#                         (default "3.7 3.6 3.5 3.5.1 3.4")
#   ./test.sh --quick     only the tests that need no server and no outside tool: every unit,
#                         golden and property test of pki, etcdctl-lite and bootstrap (seconds
#                         once built) but the shellcheck ones; installs only what ./run.sh installs
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--quick" ]; then
  bash scripts/install-deps.sh --main
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  set +e
  # shellcheck is a test tool, not one ./run.sh installs: its tests run in the full run
  cargo test --workspace --exclude integration-tests --locked -- --skip shellcheck 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
  failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
  echo "${passed} passed, ${failed} failed"
  [ "$rc" -eq 0 ] && [ "$passed" -gt 0 ] || { echo "test.sh --quick: failed (exit $rc) or no tests ran" >&2; exit 1; }
  exit 0
elif [ -n "${1:-}" ]; then
  echo "test.sh: unknown argument $1 (--quick, or nothing for every test)" >&2
  exit 2
fi
bash scripts/install-deps.sh
# the tree is rustfmt-formatted (rustfmt.toml); clippy has nothing to say
cargo fmt --all --check || { echo "test.sh: not rustfmt-formatted: run cargo fmt --all" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -q -- -D warnings || { echo "test.sh: cargo clippy has warnings" >&2; exit 1; }
cargo build --workspace --locked 2>&1 | tail -n 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# the integration modules that start etcd (the rest does not depend on its version)
ETCD_MODULES=(adopt bootstrap_ crash_matrix etcd_tls etcdctl_lite interlocks lifecycle maintenance disaster_recovery never_formed point_in_time)
# tests that pin the etcd binaries they run: once, in the first pass
PINNED=(--skip lifecycle::rolling_upgrade_34 --skip lifecycle::patch_upgrade_351 --skip lifecycle::the_v2store_check --skip lifecycle::upgrade_road --skip adopt_versions::an_adopted_36_member --skip lifecycle::downgrade_37 --skip adopt_versions::an_adopted_37_cluster_is_downgraded --skip adopt_versions::an_adopted_36_cluster_is_upgraded --skip lifecycle::upgrade_and_defrag_on_a_terminal)
status=0
first=1
for v in ${ETCD_VERSIONS:-3.7 3.6 3.5 3.5.1 3.4}; do
  modules=("${ETCD_MODULES[@]}")
  case "$v" in
    3.7|3.6|3.5) bindir="$PWD/.etcd/go-$v" ;;
    3.5.1) bindir="$PWD/.etcd/v3.5.1"; modules=(adopt) ;;
    3.4) bindir="/usr/bin"; modules=(adopt) ;;
    *) echo "test.sh: unknown etcd version $v (use 3.7, 3.6, 3.5, 3.5.1 or 3.4)" >&2; exit 2 ;;
  esac
  found=$("$bindir/etcd" --version | sed -n 's/^etcd Version: //p')
  case "$found" in "$v"*) ;; *) echo "test.sh: $bindir/etcd is $found, not $v" >&2; exit 1 ;; esac
  echo "== etcd $found ($bindir) =="
  set +e
  if [ "$first" = 1 ]; then
    PATH="$bindir:$PATH" cargo test --workspace --locked 2>&1 | tee -a "$log"
  else
    PATH="$bindir:$PATH" cargo test --locked -p integration-tests --test it -- "${modules[@]}" "${PINNED[@]}" 2>&1 | tee -a "$log"
  fi
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || status=$rc
  first=0
done
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
