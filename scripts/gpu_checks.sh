#!/usr/bin/env bash
# Runs on the GPU machine from the repository root over the carried bundle/:
# builds nothing; checks, times, and prints a short table last.
set -uo pipefail
out="${OUT:-/tmp/mtaffect-out}"
mkdir -p "$out"
summary=()
# Prebuilt sm_90 PTX from gpu_bundle.sh (used when this host has no NVRTC),
# copied so that the carried bundle stays read-only.
# Off $OUT: the GPU host returns at most 8 files from $OUT, and these are inputs.
export MTAFFECT_KERNEL_CACHE=/tmp/mtaffect-kernel-cache
mkdir -p "$MTAFFECT_KERNEL_CACHE" && cp bundle/kernel-cache/*.ptx "$MTAFFECT_KERNEL_CACHE"/ 2>/dev/null

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
./bundle/mtaffect info | tee "$out/info.txt"

# The bundle holds the GPU-relevant tests only (gpu_bundle.sh says which).
# Fixtures are read from this copy of the tree, not from where they were built.
export MTAFFECT_ROOT="$PWD"
for t in bundle/tests/*; do
    name="$(basename "$t" | sed 's/-[0-9a-f]*$//')"
    # The parity and golden tests print their worst errors: let them. The GPU
    # tests are #[ignore]d (plain `cargo test` has no GPU): run them all here.
    args=(--nocapture --include-ignored)
    # A hung kernel (a grid barrier that never opens) must not eat the run.
    if timeout 180 "$t" "${args[@]}" >"$out/test-$name.log" 2>&1; then status=ok; else status="FAILED rc=$?"; fi
    passed="$(grep -Eo '[0-9]+ passed; [0-9]+ failed; [0-9]+ ignored' "$out/test-$name.log" | tail -1)"
    summary+=("test  $name: $status ($passed)")
done
mapfile -t parity < <(grep -h '^parity \|^golden \|skipped' "$out"/test-*.log 2>/dev/null)
for b in bundle/benches/*; do
    name="$(basename "$b" | sed 's/-[0-9a-f]*$//')"
    timeout 200 "$b" --bench >"$out/bench-$name.log" 2>&1 && status=ok || status="FAILED rc=$?"
    summary+=("bench $name: $status (see bench-$name.log)")
done

# cuBLAS / cuDNN yardsticks on the same GPU, when this machine has PyTorch.
if python3 -c 'import torch' 2>/dev/null; then
    timeout 120 python3 bundle/torch_kernel_bench.py >"$out/torch-kernels.log" 2>&1 || echo "torch bench FAILED" >>"$out/torch-kernels.log"
else
    echo "torch: not installed on this machine; no cuBLAS/cuDNN yardstick" >"$out/torch-kernels.log"
fi

echo
echo "== summary ($(date -u +%F), $(head -1 "$out/gpu.txt"))"
printf '%s\n' "${summary[@]}"
echo "-- parity (per op: checks, worst error)"
printf '%s\n' "${parity[@]}"
echo "-- kernels (benches/cuda_kernels.rs)"
grep -hE '^(copy|gemm|ccc|adam|batch|conv|bn|se|ce|bce|gru|lstm|attn|train)' "$out"/bench-cuda_*.log 2>/dev/null
echo "-- yardsticks (scripts/torch_kernel_bench.py)"
grep -E '^torch' "$out/torch-kernels.log" 2>/dev/null || cat "$out/torch-kernels.log"

# The GPU host returns at most 8 files from $OUT: everything this script left
# under $OUT goes back as one archive (tar -xzf gpu-checks-logs.tgz). So do not
# redirect this script's own output into $OUT; tee it to /tmp instead.
( cd "$out" && tar --exclude='*.tgz' -czf /tmp/gpu-checks-logs.tgz . \
    && find . -mindepth 1 ! -name '*.tgz' -delete && mv /tmp/gpu-checks-logs.tgz . )
