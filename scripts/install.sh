#!/usr/bin/env bash
# Creates .venv in the repository root and installs the appliance with every dependency
# from vendor_wheels/requirements.lock, hash-checked (--require-hashes --only-binary=:all:).
# With wheels in vendor_wheels/ it installs from them alone (--no-index, pip's own
# configuration ignored), so it works with no network at all; otherwise it installs from
# the configured package index.
#
# Environment: APPLIANCE_VENV (default .venv), APPLIANCE_LOCK (default
# vendor_wheels/requirements.lock), APPLIANCE_WHEELS (default vendor_wheels), PYTHON,
# APPLIANCE_INSTALL_SELF=0 (install only the locked dependencies).
#
# scripts/install.sh --cuda installs the GPU build instead: vendor_wheels/requirements-cuda.lock
# from vendor_wheels/cuda/ (filled by scripts/vendor.sh --cuda), the same way.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${APPLIANCE_VENV:-$root/.venv}
if [ "${1:-}" = "--cuda" ]; then
  lock=${APPLIANCE_LOCK:-$root/vendor_wheels/requirements-cuda.lock}
  wheels=${APPLIANCE_WHEELS:-$root/vendor_wheels/cuda}
else
  lock=${APPLIANCE_LOCK:-$root/vendor_wheels/requirements.lock}
  wheels=${APPLIANCE_WHEELS:-$root/vendor_wheels}
fi
python=${PYTHON:-python3}

die() { echo "install.sh: $*" >&2; exit 1; }
[ -f "$lock" ] || die "lock file $lock not found: run scripts/lock.sh on a connected machine"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$python is older than Python 3.11: set PYTHON to a 3.11 interpreter"

"$python" -m venv "$venv" || die "could not create the virtual environment $venv"
vpython="$venv/bin/python"

if compgen -G "$wheels/*.whl" >/dev/null; then
  echo "install.sh: offline install from $wheels (no index)"
  # --isolated: ignore pip's configuration files and PIP_* variables (no extra index, no
  # find-links) so that nothing but the vendored wheels can be used.
  pip=("$vpython" -m pip --isolated --disable-pip-version-check)
  src=(--no-index --find-links "$wheels")
else
  echo "install.sh: no wheels in $wheels; installing from the configured package index"
  pip=("$vpython" -m pip --disable-pip-version-check)
  src=()
fi

# --no-deps: the lock is the complete closure (scripts/lock.sh); pip installs exactly it.
"${pip[@]}" install --require-hashes --only-binary=:all: --no-deps "${src[@]}" -r "$lock" \
  || die "installing the locked dependencies failed (see pip's message above)"
if [ "${APPLIANCE_INSTALL_SELF:-1}" = "0" ]; then
  echo "install.sh: dependencies installed; the appliance itself was not (APPLIANCE_INSTALL_SELF=0)"
  exit 0
fi
# The appliance itself, from this checkout: its build backend (setuptools) comes from the lock.
"${pip[@]}" install --no-deps --no-index --no-build-isolation -e "$root" \
  || die "installing the appliance from $root failed"
"$venv/bin/appliance" --version
