#!/usr/bin/env bash
# Builds bundle-levers/ (git-ignored): the training-step bench of each given
# commit, in the order given (levers/NN-<commit>/cuda_train_step), their PTX
# in one kernel cache (files are named by the kernel source's hash, so the
# versions sit side by side) and this tree's gpu_train_checks.sh, so that
# one GPU run times the levers one at a time:
#   bash scripts/gpu_bundle_levers.sh 1b8d234 9021944 HEAD
#   mv bundle-levers bundle && bash bundle/gpu_train_checks.sh levers   # on the GPU host
# Separate from bundle/ so that each stays under the 64 MiB the GPU host
# accepts. Each commit is built in a temporary worktree with one shared target
# folder (the dependencies build once). Needs NVRTC here, as gpu_bundle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/bundle-levers"
target="$PWD/target/levers"
rm -rf "$out"
mkdir -p "$out/levers" "$out/kernel-cache"
cp scripts/gpu_train_checks.sh "$out/"
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
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        print(m["executable"])')
        dir="$out/levers/$(printf %02d $i)-$commit"
        mkdir -p "$dir"
        cp "$exe" "$dir/cuda_train_step"
        # All symbols off, not only debug info: ~3 MB per commit.
        strip --strip-all "$dir/cuda_train_step"
        MTAFFECT_KERNEL_CACHE="$out/kernel-cache" "$target/release/mtaffect" info >/dev/null
    )
    git worktree remove --force "$tree"
done
du -sh "$out"
