#!/usr/bin/env bash
# Builds what the GPU machine runs into bundle/ (git-ignored): that machine has
# CUDA but no Rust toolchain. Then, there: bash bundle/gpu_checks.sh (with
# bundle/ copied alongside the tree). Needs python3 here (to read cargo's JSON
# messages).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bundle
mkdir -p bundle/tests bundle/benches

# Executables among cargo's JSON messages whose target kind is one of "$@"
# (integration tests are kind test, benches kind bench; examples are neither).
executables() {
    python3 -c '
import json, sys
kinds = sys.argv[1:]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"][0] in kinds:
        print(m["executable"])' "$@"
}

cargo build --release --bin mtaffect
cp target/release/mtaffect bundle/
# Only what means something on a GPU host: the CPU tests and benches run in CI
# on every change, and leaving them out keeps the bundle far under 64 MiB and
# the GPU checks short.
cargo test --release --no-run --message-format=json | executables test | while read -r exe; do
    case "$(basename "$exe")" in cuda_*|golden-*|golden_*|kernels_compile-*|nccl_load-*) cp "$exe" bundle/tests/ ;; esac
done
cargo bench --no-run --message-format=json | executables bench | grep '/deps/' | while read -r exe; do
    # Bench executables are named <bench>-<hash>.
    case "$(basename "$exe")" in cuda_*) cp "$exe" bundle/benches/ ;; esac
done
# The parity run's batch dumper (examples are kind "example").
cargo build --release --example dump_batches
cp target/release/examples/dump_batches bundle/
# Without debug info the executables are a tenth of their size.
strip --strip-debug bundle/mtaffect bundle/dump_batches bundle/tests/* bundle/benches/*
cp scripts/gpu_checks.sh scripts/gpu_train_checks.sh scripts/torch_kernel_bench.py \
    scripts/compare_metrics.py configs/vit-synthetic-cpu.toml bundle/
# The GPU host gets the tree without .git: scripts/side_by_side.py names this commit.
git describe --always --dirty >bundle/commit.txt
# PTX for H100/H200 (sm_90), so the GPU host needs no NVRTC (libnvrtc is ~100 MB,
# too big to ship in the bundle): gpu_checks.sh points MTAFFECT_KERNEL_CACHE here. Needs
# NVRTC on this machine (pip install nvidia-cuda-nvrtc; LD_LIBRARY_PATH).
MTAFFECT_KERNEL_CACHE="$PWD/bundle/kernel-cache" ./bundle/mtaffect info >/dev/null
du -sh bundle
