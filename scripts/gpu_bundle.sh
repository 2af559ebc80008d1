#!/usr/bin/env bash
# Builds what the GPU machine runs into bundle/ (git-ignored): that machine has
# CUDA but no Rust toolchain. Then: run(command="bash bundle/gpu_checks.sh",
# carry=["bundle"]). Needs python3 here (to read cargo's JSON messages).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bundle
mkdir -p bundle/tests bundle/benches

# Executables among cargo's JSON messages whose target kind is one of "$@"
# (test harnesses are kinds lib and test; examples, which want arguments, are not).
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
cargo test --release --no-run --message-format=json | executables lib test | while read -r exe; do cp "$exe" bundle/tests/; done
cargo bench --no-run --message-format=json | executables bench | grep '/deps/' | while read -r exe; do
    # Bench executables are named <bench>-<hash>; only the harness=false ones are benches here.
    case "$(basename "$exe")" in matmul-*|conv-*|train_step-*|synth-*|loader-*|cuda_kernels-*) cp "$exe" bundle/benches/ ;; esac
done
# Without debug info the whole bundle is ~40 MB instead of ~680 MB: under the
# 64 MiB that a run may carry.
strip --strip-debug bundle/mtaffect bundle/tests/* bundle/benches/*
cp scripts/gpu_checks.sh scripts/torch_kernel_bench.py bundle/
# PTX for H100/H200 (sm_90), so the GPU host needs no NVRTC (libnvrtc is ~100 MB,
# too big to carry): gpu_checks.sh points MTAFFECT_KERNEL_CACHE here. Needs
# NVRTC on this machine (pip install nvidia-cuda-nvrtc; LD_LIBRARY_PATH).
MTAFFECT_KERNEL_CACHE="$PWD/bundle/kernel-cache" ./bundle/mtaffect info >/dev/null
du -sh bundle
