#!/usr/bin/env bash
# Runs the whole test suite: ruff, mypy, then pytest. Exit 0 only when all pass.
# Tests marked `slow` (minutes each) are left out unless APPLIANCE_SLOW=1; extra arguments
# go to pytest (e.g. scripts/test.sh -m slow, scripts/test.sh tests/policy -x).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "test.sh: $root/.venv is missing: run scripts/install.sh first" >&2; exit 1; }
cd "$root"
"$py" -m ruff check appliance tests scripts || { echo "test.sh: ruff found problems" >&2; exit 1; }
"$py" -m mypy || { echo "test.sh: mypy found problems" >&2; exit 1; }
select=(-m "not slow")
[ "${APPLIANCE_SLOW:-0}" = "1" ] && select=()
"$py" -m pytest -p no:cacheprovider "${select[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  if [ "${APPLIANCE_ALLOW_EMPTY:-0}" = "1" ]; then
    echo "test.sh: no tests selected"; exit 0
  fi
  echo "test.sh: pytest collected no tests, which is a failure for this suite" >&2
  exit 1
fi
exit "$rc"
