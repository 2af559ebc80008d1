#!/usr/bin/env bash
# Adds to bundle/ (after scripts/gpu_bundle.sh) the training-step bench of
# each given commit, so that one device run can time the levers one at a
# time (bundle/gpu_train_checks.sh levers): bundle/levers/NN-<commit>, in
# the order given, and each commit's PTX in bundle/kernel-cache (cache files
# are named by the kernel source's hash, so the versions sit side by side).
# e.g. bash scripts/gpu_bundle_levers.sh 1b8d234 9021944 HEAD
# Builds each commit in a temporary worktree with one shared target folder
# (the dependencies are built once). Needs NVRTC here, as gpu_bundle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d bundle/kernel-cache ] || { echo "run scripts/gpu_bundle.sh first" >&2; exit 1; }
target="$PWD/target/levers"
rm -rf bundle/levers
mkdir -p bundle/levers
i=0
for rev in "$@"; do
    i=$((i + 1))
    commit=$(git rev-parse --short "$rev")
    tree=$(mktemp -d)
    git worktree add --detach -q "$tree" "$commit"
    (
        cd "$tree"
        export CARGO_TARGET_DIR="$target"
        cargo build --release --bin mtaffect --quiet
        exe=$(cargo bench --no-run --bench cuda_train_step --message-format=json 2>/dev/null |
            python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
        dir="$OLDPWD/bundle/levers/$(printf %02d $i)-$commit"
        mkdir -p "$dir"
        cp "$exe" "$dir/cuda_train_step"
        strip --strip-debug "$dir/cuda_train_step"
        MTAFFECT_KERNEL_CACHE="$OLDPWD/bundle/kernel-cache" "$target/release/mtaffect" info >/dev/null
    )
    git worktree remove --force "$tree"
done
du -sh bundle bundle/levers
