#!/usr/bin/env bash
# scripts/bench.sh NAME [ARGS...]: runs one benchmark (scrub, vault, train, tui, trust, privacy, surrogate) and prints,
# as its last line, one JSON object with name, ours, baseline, unit and ratio (ratio > 1:
# the appliance is better than the baseline measured in the same run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-}
[ -n "$name" ] || { echo "usage: scripts/bench.sh NAME (scrub, vault, train, tui, trust, privacy, surrogate)" >&2; exit 2; }
shift
script="$root/scripts/bench/$name.py"
[ -f "$script" ] || { echo "bench.sh: no benchmark named '$name'" >&2; exit 2; }
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$script" "$@"
