#!/usr/bin/env bash
# Checks every kernel's logic on the CPU (no GPU needed): concatenates
# shim.h, kernels/common.cuh and kernels/*.cu into one C++ header, builds
# check_kernels.cpp with g++ (C++20) and runs it. Exits non-zero on a mismatch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
{
    cat "$here/shim.h"
    for f in "$root"/kernels/common.cuh "$root"/kernels/*.cu; do sed 's/extern "C"//' "$f"; done
} >"$tmp/kernels_emu.h"
g++ -std=c++20 -O1 -pthread -w -I"$tmp" "$here/check_kernels.cpp" -o "$tmp/check_kernels"
"$tmp/check_kernels"
