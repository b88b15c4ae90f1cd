#!/usr/bin/env bash
# Fills vendor_wheels/ with every wheel named by vendor_wheels/requirements.lock, hash-checked,
# for Linux x86-64 CPython 3.11, on a machine that can reach the package index. Carry the
# repository (with vendor_wheels/) to the isolated machine and run scripts/install.sh there.
#
# The CPU build of torch is not on the public index: it is found through pip's find-links
# (PIP_FIND_LINKS, or TORCH_CPU_WHEELS=DIR naming a folder holding torch-2.13.0+cpu).
#
# scripts/vendor.sh --cuda fills vendor_wheels/cuda/ from vendor_wheels/requirements-cuda.lock
# instead (the CUDA build of torch and its nvidia-* wheels: several GB).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--cuda" ]; then
  lock=${APPLIANCE_LOCK:-$root/vendor_wheels/requirements-cuda.lock}
  dest=${APPLIANCE_WHEELS:-$root/vendor_wheels/cuda}
else
  lock=${APPLIANCE_LOCK:-$root/vendor_wheels/requirements.lock}
  dest=${APPLIANCE_WHEELS:-$root/vendor_wheels}
fi
python=${PYTHON:-python3}
links=()
# Every manylinux tag an x86-64 glibc 2.28 machine accepts (pip does not expand them itself).
platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for minor in $(seq 5 28); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
[ -n "${TORCH_CPU_WHEELS:-}" ] && links=(--find-links "$TORCH_CPU_WHEELS")
mkdir -p "$dest"
"$python" -m pip download --disable-pip-version-check --require-hashes --only-binary=:all: \
  --no-deps "${platforms[@]}" --python-version 3.11 --implementation cp \
  --abi cp311 --abi abi3 --abi none "${links[@]}" -r "$lock" -d "$dest"
count=$(find "$dest" -maxdepth 1 -name '*.whl' | wc -l)
echo "vendor.sh: $count wheels in $dest ($(du -sh "$dest" | cut -f1))"
