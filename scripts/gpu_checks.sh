#!/usr/bin/env bash
# Runs on the GPU machine from the repository root over the carried bundle/:
# builds nothing; checks, times, and prints a short table last.
set -uo pipefail
out="${OUT:-/tmp/mtaffect-out}"
mkdir -p "$out"
summary=()

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
./bundle/mtaffect info | tee "$out/info.txt"

for t in bundle/tests/*; do
    name="$(basename "$t" | sed 's/-[0-9a-f]*$//')"
    if "$t" >"$out/test-$name.log" 2>&1; then status=ok; else status=FAILED; fi
    passed="$(grep -Eo '[0-9]+ passed' "$out/test-$name.log" | tail -1)"
    summary+=("test  $name: $status ($passed)")
done
for b in bundle/benches/*; do
    name="$(basename "$b" | sed 's/-[0-9a-f]*$//')"
    "$b" --bench >"$out/bench-$name.log" 2>&1 && status=ok || status=FAILED
    summary+=("bench $name: $status (see bench-$name.log)")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
