#!/usr/bin/env bash
# Runs the test suite. Ray listens on all interfaces and `ray stop` acts machine-wide, so the
# suite runs inside a private network + PID namespace: every socket stays on loopback and
# cleanup only ever sees the suite's own processes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
marker="not slow"
[ "${SPDNAS_TEST_ALL:-0}" = "1" ] && marker=""
args=(-m "$marker" "$@")
[ -z "$marker" ] && args=("$@")

inner="ip link set lo up && exec env RAY_AUTH_MODE=disabled SPDNAS_PRIVATE_NETNS=1 $PY -m pytest$(printf ' %q' "${args[@]}")"
if [ "$(id -u)" = "0" ]; then
  exec unshare --net --pid --fork --mount-proc bash -c "$inner"
elif unshare --user --map-root-user --net --pid --fork --mount-proc true 2>/dev/null; then
  exec unshare --user --map-root-user --net --pid --fork --mount-proc bash -c "$inner"
elif [ "${SPDNAS_TEST_NO_NAMESPACE:-0}" = "1" ]; then
  echo "WARNING: no private namespace: the Ray tests (marked ray) are SKIPPED, the rest run." >&2
  exec env RAY_AUTH_MODE=disabled "$PY" -m pytest "${args[@]}"
else
  echo "error: cannot create a private network namespace (need root or unprivileged user" >&2
  echo "namespaces). Set SPDNAS_TEST_NO_NAMESPACE=1 to run every test but the Ray ones." >&2
  exit 2
fi
