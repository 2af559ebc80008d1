#!/usr/bin/env bash
# Runs on the GPU machine over the carried bundle/ (after gpu_checks.sh):
# the training path on CUDA. Builds nothing. Sections, in the order given:
#   job         the default job (`mtaffect train`) on cuda, timed
#   torch       scripts/torch_bench.py, PyTorch eager (add "compile" for torch.compile)
#   compile     scripts/torch_bench.py, torch.compile only
#   parity      SE-ResNet-18 trained PARITY_STEPS steps (default 300) by mtaffect on
#               cuda, then by PyTorch on cuda from the same initial weights and batches
# e.g. bash bundle/gpu_train_checks.sh job parity
set -uo pipefail
out="${OUT:-/tmp/mtaffect-out}"
mkdir -p "$out"
export MTAFFECT_KERNEL_CACHE="$out/kernel-cache"
mkdir -p "$MTAFFECT_KERNEL_CACHE" && cp bundle/kernel-cache/*.ptx "$MTAFFECT_KERNEL_CACHE"/ 2>/dev/null
# The synthetic set is generated on first use; off the carried tree.
export MTAFFECT_DATA="${MTAFFECT_DATA:-/tmp/mtaffect-data}"
runs="$out/runs"
summary=()

for section in "$@"; do
    case "$section" in
    job)
        start=$(date +%s.%N)
        timeout 400 ./bundle/mtaffect train --device cuda --set run.runs_dir="$runs" --set run.name=default-cuda --quiet >"$out/job.log" 2>&1
        rc=$?
        wall=$(echo "$(date +%s.%N) - $start" | bc)
        summary+=("job   default on cuda: rc=$rc, ${wall}s wall (data generation included)")
        summary+=("$(grep -E 'val|trained|P_MTL|chance' "$out/job.log" | tail -4)")
        ;;
    torch | compile)
        modes=eager
        [ "$section" = compile ] && modes=compile
        timeout 500 python3 scripts/torch_bench.py --device cuda --modes "$modes" >"$out/torch-bench-$modes.log" 2>&1
        summary+=("torch_bench $modes: rc=$?")
        summary+=("$(grep '^|' "$out/torch-bench-$modes.log")")
        ;;
    parity)
        steps="${PARITY_STEPS:-300}"
        timeout 300 ./bundle/mtaffect train --device cuda --set model.depth=18 --set model.width_mult=1.0 \
            --set model.dropout=0.0 --set train.steps="$steps" --set train.log_every=1 \
            --set train.eval_every="$steps" --set run.runs_dir="$runs" --set run.name=parity \
            --quiet >"$out/parity-train.log" 2>&1
        summary+=("parity mtaffect train: rc=$?")
        timeout 200 ./bundle/dump_batches "$runs/parity/config.toml" "$steps" /tmp/parity-dump >"$out/parity-dump.log" 2>&1
        summary+=("parity dump: rc=$?")
        timeout 300 python3 scripts/torch_parity_run.py /tmp/parity-dump --metrics "$runs/parity/metrics.jsonl" \
            --device cuda --json "$out/parity.json" >"$out/parity.log" 2>&1
        summary+=("parity torch: rc=$?")
        summary+=("$(tail -4 "$out/parity.log")")
        ;;
    *) summary+=("unknown section $section") ;;
    esac
done

echo
echo "== training summary ($(date -u +%F), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1))"
printf '%s\n' "${summary[@]}"
