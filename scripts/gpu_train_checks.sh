#!/usr/bin/env bash
# Runs on the GPU machine over the carried bundle/ (after gpu_checks.sh):
# the training path on CUDA. Builds nothing. Sections, in the order given:
#   job         the default job (`mtaffect train`) on cuda, timed
#   torch       scripts/torch_bench.py, PyTorch eager (add "compile" for torch.compile)
#   compile     scripts/torch_bench.py, torch.compile only
#   sidebyside  scripts/side_by_side.py: mtaffect's training-step bench and PyTorch eager
#               and torch.compile in one table (side_by_side.md), within SIDE_BUDGET
#               seconds (default 380; configurations not started by then show as not run);
#               SIDE_ARGS adds side_by_side.py options (e.g. "--batches 256")
#   parity      SE-ResNet-18 trained PARITY_STEPS steps (default 300) by mtaffect on
#               cuda, then by PyTorch on cuda from the same initial weights and
#               batches, in f32, (PARITY_F64=1) in f64 and (PARITY_AUTOCAST=1) in f32
#               under bf16 autocast; PARITY_SETS adds --set overrides to the mtaffect
#               run (e.g. "model.backbone.stem=small" or 'train.precision="bf16"')
#   gan         a judge (the default job) and the GAN of configs/gan-synthetic.toml
#               for GAN_STEPS generator steps (default 10000) on cuda; each
#               evaluation's generator (weight average) and best.safetensors (the
#               one model selection kept, by the discriminator's own reading)
#               judged on 100 faces per expression; GAN_SETS adds --set overrides
#               (e.g. "gan.mode_seeking_weight=0")
#   temporal    the frame model (default job settings, 1500 steps), its features,
#               then Transformer / GRU / LSTM temporal models on cuda
#   profile     GPU time per kernel in one training step (benches/cuda_train_step.rs
#               with MTAFFECT's own event profiler), PROFILE_ARGS "depth,batch ..."
#               (default "18,256 50,256"; add ",bf16" for train.precision = "bf16")
#   tiles       the training-step bench with the launcher's conv tiles and then with
#               each bf16 fprop/dgrad block tile forced (MTAFFECT_CONV_TILE), for
#               TILE_ARGS "depth,batch,precision ..." (default "50,256,bf16 18,256,bf16")
#   levers      the training-step bench of every commit scripts/gpu_bundle_levers.sh
#               built (its bundle-levers/ moved to bundle/ on the device), in order,
#               for LEVER_ARGS "depth,batch,precision ..." (default "50,256,bf16
#               18,256,bf16"): the levers one at a time, in one table
#   dist        data-parallel training through NCCL (NCCL from the host's nvidia-nccl
#               wheel, linked as libnccl.so; libnccl is too big for the bundle): the
#               default job for 20 steps plain twice (the GPU's own run-to-run
#               agreement) and as a torchrun group of one; then the tiny ViT (no batch
#               norm, MSE valence/arousal, no dropout) as 1 process x batch 16 and as 2
#               ranks x 8 on the one GPU, each rank its own NCCL_HOSTID (socket
#               transport), compared to f32 tolerance (scripts/compare_metrics.py)
# e.g. bash bundle/gpu_train_checks.sh job parity
set -uo pipefail
out="${OUT:-/tmp/mtaffect-out}"
mkdir -p "$out"
# Off $OUT: the GPU host returns at most 8 files from $OUT, and these are inputs.
export MTAFFECT_KERNEL_CACHE=/tmp/mtaffect-kernel-cache
mkdir -p "$MTAFFECT_KERNEL_CACHE" && cp bundle/kernel-cache/*.ptx "$MTAFFECT_KERNEL_CACHE"/ 2>/dev/null
# The synthetic set is generated on first use; off the carried tree.
export MTAFFECT_DATA="${MTAFFECT_DATA:-/tmp/mtaffect-data}"
runs="$out/runs"
summary=()

for section in "$@"; do
    case "$section" in
    job)
        start=$SECONDS
        timeout 400 ./bundle/mtaffect train --device cuda --set run.runs_dir="$runs" --set run.name=default-cuda --quiet >"$out/job.log" 2>&1
        rc=$?
        summary+=("job   default on cuda: rc=$rc, $((SECONDS - start)) s wall (data generation included)")
        summary+=("$(grep -E '^finished|^P_MTL|^chance|^best' "$out/job.log")")
        ;;
    torch | compile)
        modes=eager
        [ "$section" = compile ] && modes=compile
        timeout 500 python3 scripts/torch_bench.py --device cuda --modes "$modes" >"$out/torch-bench-$modes.log" 2>&1
        summary+=("torch_bench $modes: rc=$?")
        summary+=("$(grep '^|' "$out/torch-bench-$modes.log")")
        ;;
    sidebyside)
        budget="${SIDE_BUDGET:-380}"
        timeout $((budget + 60)) python3 scripts/side_by_side.py --ours bundle/benches/cuda_train_step-* \
            --budget "$budget" --out "$out/side_by_side.md" ${SIDE_ARGS:-} >"$out/side_by_side.log" 2>&1
        summary+=("side_by_side: rc=$? (progress in side_by_side.log)")
        summary+=("$(cat "$out/side_by_side.md" 2>/dev/null || tail -3 "$out/side_by_side.log")")
        ;;
    parity)
        steps="${PARITY_STEPS:-300}"
        sets=()
        for kv in ${PARITY_SETS:-}; do sets+=(--set "$kv"); done
        timeout 300 ./bundle/mtaffect train --device cuda --set model.backbone.depth=18 --set model.backbone.width_mult=1.0 \
            --set model.dropout=0.0 --set train.steps="$steps" --set train.log_every=1 \
            --set train.eval_every="$steps" --set run.runs_dir="$runs" --set run.name=parity \
            "${sets[@]}" --quiet >"$out/parity-train.log" 2>&1
        summary+=("parity mtaffect train (${PARITY_SETS:-no extra sets}): rc=$?")
        timeout 200 ./bundle/dump_batches "$runs/parity/config.toml" "$steps" /tmp/parity-dump >"$out/parity-dump.log" 2>&1
        summary+=("parity dump: rc=$?")
        runs_torch=("float32 none")
        [ "${PARITY_F64:-0}" = 1 ] && runs_torch+=("float64 none")
        [ "${PARITY_AUTOCAST:-0}" = 1 ] && runs_torch+=("float32 bf16")
        for r in "${runs_torch[@]}"; do
            read -r dt ac <<<"$r"
            tag="$dt"; [ "$ac" = bf16 ] && tag="$dt-autocast-bf16"
            timeout 300 python3 scripts/torch_parity_run.py /tmp/parity-dump --metrics "$runs/parity/metrics.jsonl" \
                --device cuda --dtype "$dt" --autocast "$ac" --json "$out/parity-$tag.json" >"$out/parity-$tag.log" 2>&1
            summary+=("parity torch $tag: rc=$?")
            summary+=("$(tail -1 "$out/parity-$tag.log")")
        done
        rm -rf /tmp/parity-dump "$runs/parity"
        ;;
    profile)
        for args in ${PROFILE_ARGS:-"18,256" "50,256"}; do
            timeout 200 bundle/benches/cuda_train_step-* ${args//,/ } >"$out/profile-${args//,/-}.log" 2>&1
            summary+=("profile SE-ResNet ${args//,/ }: rc=$? (GPU time per kernel in one step)")
            summary+=("$(grep -E '^(train|host|kernel)' "$out/profile-${args//,/-}.log" | head -26)")
        done
        ;;
    tiles)
        for args in ${TILE_ARGS:-"50,256,bf16" "18,256,bf16"}; do
            for tile in auto narrow wide; do
                log="$out/tile-$tile-${args//,/-}.log"
                if [ $tile = auto ]; then unset MTAFFECT_CONV_TILE; else export MTAFFECT_CONV_TILE=$tile; fi
                timeout 120 bundle/benches/cuda_train_step-* ${args//,/ } >"$log" 2>&1
                summary+=("tile $tile (${args//,/ }): rc=$? $(grep -m1 '^train' "$log")")
            done
            unset MTAFFECT_CONV_TILE
        done
        ;;
    levers)
        for args in ${LEVER_ARGS:-"50,256,bf16" "18,256,bf16"}; do
            for dir in bundle/levers/*/; do
                name=$(basename "$dir")
                timeout 120 "$dir/cuda_train_step" ${args//,/ } >"$out/lever-$name-${args//,/-}.log" 2>&1
                summary+=("lever $name (${args//,/ }): rc=$? $(grep -m1 '^train' "$out/lever-$name-${args//,/-}.log")")
            done
        done
        ;;
    temporal)
        timeout 120 ./bundle/mtaffect train --device cuda --set train.steps=1500 --set train.eval_every=500 \
            --set 'schedule.decay={kind="cosine",total_steps=1400,min_lr=1e-5}' \
            --set run.runs_dir="$runs" --set run.name=frame-synth --quiet >"$out/temporal-frame.log" 2>&1
        summary+=("temporal: frame model rc=$? ($(grep '^best' "$out/temporal-frame.log"))")
        timeout 120 ./bundle/mtaffect features --checkpoint "$runs/frame-synth/best.safetensors" \
            --out "$runs/frame-synth/features" >"$out/temporal-features.log" 2>&1
        summary+=("temporal: features rc=$?")
        for enc in transformer gru lstm; do
            start=$SECONDS
            timeout 200 ./bundle/mtaffect temporal train --config configs/temporal-synthetic.toml \
                --set train.device=cuda --set model.encoder=$enc --set data.features="$runs/frame-synth/features" \
                --set run.runs_dir="$runs" --set run.name=t-$enc >"$out/temporal-$enc.log" 2>&1
            summary+=("temporal $enc on cuda: rc=$?, $((SECONDS - start)) s; $(grep -iE 'best|P_MTL' "$out/temporal-$enc.log" | tail -2 | tr '\n' ' ')")
        done
        ;;
    gan)
        steps="${GAN_STEPS:-10000}"
        timeout 120 ./bundle/mtaffect train --device cuda --set run.runs_dir="$runs" --set run.name=judge --quiet >"$out/gan-judge-train.log" 2>&1
        summary+=("gan judge trained: rc=$? ($(grep '^best' "$out/gan-judge-train.log"))")
        gsets=()
        for kv in ${GAN_SETS:-}; do gsets+=(--set "$kv"); done
        start=$SECONDS
        timeout 420 ./bundle/mtaffect gan train --config configs/gan-synthetic.toml --set train.device=cuda \
            --set train.steps="$steps" --set train.eval_every=$((steps / 8)) --set run.runs_dir="$runs" \
            --set run.name=gan "${gsets[@]}" --quiet >"$out/gan-train.log" 2>&1
        summary+=("gan train $steps steps (${GAN_SETS:-no extra sets}): rc=$?, $((SECONDS - start)) s")
        for ck in "$runs"/gan/step-*.safetensors "$runs"/gan/best.safetensors; do
            [ -f "$ck" ] || continue
            timeout 60 ./bundle/mtaffect gan judge --checkpoint "$ck" --judge "$runs/judge/best.safetensors" \
                --per-class 100 --out "$out/judge-$(basename "$ck" .safetensors).json" >"$out/judge-$(basename "$ck" .safetensors).log" 2>&1
            summary+=("gan judge $(basename "$ck"): rc=$? $(grep -i 'agreement' "$out/judge-$(basename "$ck" .safetensors).log" | head -2)")
        done
        # Model selection's own figures (never the judge's): step:discriminator agreement/diversity.
        summary+=("gan selection: $(grep '^best.safetensors' "$out/gan-train.log")")
        summary+=("gan selection per evaluation: $(grep '"select"' "$runs/gan/metrics.jsonl" 2>/dev/null |
            sed -E 's/.*"d_expr_agreement":([^,]+).*"diversity":([^,]+).*"step":([0-9]+).*/\3:\1\/\2/' | tr '\n' ' ')")
        cp "$runs"/gan/*.png "$out"/ 2>/dev/null
        grep '"val"' "$runs/gan/metrics.jsonl" | tail -2 >"$out/gan-val.txt" 2>/dev/null
        rm -f "$runs"/gan/*.safetensors "$runs"/judge/*.safetensors
        ;;
    dist)
        nccl_lib="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)"
        if [ -f "$nccl_lib/libnccl.so.2" ]; then
            mkdir -p /tmp/nccl-link && ln -sf "$nccl_lib/libnccl.so.2" /tmp/nccl-link/libnccl.so
            export LD_LIBRARY_PATH="/tmp/nccl-link:${LD_LIBRARY_PATH:-}"
        fi
        one=(--device cuda --quiet --set train.steps=20 --set train.eval_every=10 --set train.log_every=1)
        for name in plain-a plain-b; do
            timeout 300 ./bundle/mtaffect train "${one[@]}" --set run.runs_dir="$runs/dist-$name" >"$out/dist-$name.log" 2>&1
        done
        RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
            timeout 300 ./bundle/mtaffect train "${one[@]}" --set run.runs_dir="$runs/dist-group1" >"$out/dist-group1.log" 2>&1
        summary+=("dist  group of one: rc=$? $(grep '^parameters' "$out/dist-group1.log")")
        summary+=("dist  plain vs plain: $(python3 bundle/compare_metrics.py "$runs"/dist-plain-a/* "$runs"/dist-plain-b/* | tail -1)")
        summary+=("dist  plain vs group of one (NCCL): $(python3 bundle/compare_metrics.py "$runs"/dist-plain-a/* "$runs"/dist-group1/* | tail -1)")
        vit=(--config bundle/vit-synthetic-cpu.toml --device cuda:0 --quiet --set data.batch_size=16
            --set model.dropout=0.0 --set model.backbone.drop_path=0.0 --set 'loss.va_loss="mse"'
            --set train.steps=10 --set train.eval_every=5 --set train.log_every=1)
        timeout 300 ./bundle/mtaffect train "${vit[@]}" --set run.runs_dir="$runs/dist-vit1" >"$out/dist-vit1.log" 2>&1
        for r in 0 1; do
            NCCL_HOSTID="mtaffect-rank-$r" RANK=$r LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29512 \
                timeout 300 ./bundle/mtaffect train "${vit[@]}" --set run.runs_dir="$runs/dist-vit2" >"$out/dist-vit2-rank$r.log" 2>&1 &
        done
        wait
        summary+=("dist  2 ranks on one GPU: $(grep -h '^parameters\|^error' "$out"/dist-vit2-rank*.log | tr '\n' ' ')")
        summary+=("dist  1 x 16 vs 2 x 8: $(python3 bundle/compare_metrics.py --rtol 1e-5 "$runs"/dist-vit1/* "$runs"/dist-vit2/* | tail -1)")
        rm -f "$runs"/dist-*/*/*.safetensors
        ;;
    *) summary+=("unknown section $section") ;;
    esac
done

echo
echo "== training summary ($(date -u +%F), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1))"
printf '%s\n' "${summary[@]}"

# The GPU host returns at most 8 files from $OUT: everything this script left
# under $OUT goes back as one archive (tar -xzf gpu-train-checks-logs.tgz). So do not
# redirect this script's own output into $OUT; tee it to /tmp instead.
( cd "$out" && tar --exclude='*.tgz' -czf /tmp/gpu-train-checks-logs.tgz . \
    && find . -mindepth 1 ! -name '*.tgz' -delete && mv /tmp/gpu-train-checks-logs.tgz . )
