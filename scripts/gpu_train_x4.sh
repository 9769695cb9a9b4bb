#!/usr/bin/env bash
# x4 candidates for the bundled default model, trained side by side on one GPU for about $MIN
# minutes each (issue 6): STAGE=1 trains four, STAGE=2 three more from stage 1's output. Run from the repository root; results (weights and logs) go to
# ${OUT:-runs/gpu}. Each run's log records the --steps that --auto-steps-minutes chose, so a run
# is reproduced by passing that --steps instead.
set -u
OUT=${OUT:-runs/gpu}
RUNS=/tmp/esc-gpu-runs
MIN=${MIN:-6.5}
mkdir -p "$OUT" "$RUNS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
X4=esc_cli/weights/bundled/esc-default-x4.safetensors
COMMON="--scale 4 --device cuda --workers 3 --batch 32 --patch 48 --auto-steps-minutes $MIN
        --minutes $(python -c "print($MIN + 1.5)") --val-every 2000 --ckpt-every 1000 --runs $RUNS"
train() {  # name, extra args...
  local name=$1; shift
  PYTHONUNBUFFERED=1 timeout ${TMO:-500} python scripts/train_default.py $COMMON --name "$name" "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
STAGE=${STAGE:-1}
if [ "$STAGE" = 1 ]; then
  # Stage 1: the CPU-trained x4 fine-tuned, grown to 3 and 4 blocks, and a wider net from scratch.
  NAMES="A-2blk-init B-3blk-grow C-4blk-grow D-dim40-fresh"
  train A-2blk-init --n-blocks 2 --init $X4 --lr 1e-3 --warmup 300 &
  train B-3blk-grow --n-blocks 3 --init $X4 --lr 1e-3 --warmup 300 &
  train C-4blk-grow --n-blocks 4 --init $X4 --lr 1e-3 --warmup 300 &
  train D-dim40-fresh --dim 40 --n-blocks 2 --lr 2e-3 --warmup 300 &
else
  # Stage 2: a second cosine cycle at half the rate from stage 1's best two (weights in $STAGE1).
  STAGE1=${STAGE1:-runs/gpu1}
  NAMES="E-3blk-cont F-3blk-cont-b64 G-4blk-cont"
  train E-3blk-cont --n-blocks 3 --init $STAGE1/B-3blk-grow.safetensors --lr 5e-4 --warmup 100 --seed 1 &
  train F-3blk-cont-b64 --n-blocks 3 --init $STAGE1/B-3blk-grow.safetensors --lr 7e-4 --warmup 100 --seed 1 --batch 64 &
  train G-4blk-cont --n-blocks 4 --init $STAGE1/C-4blk-grow.safetensors --lr 5e-4 --warmup 100 --seed 1 &
fi
wait
for r in $NAMES; do
  cp "$RUNS/$r/latest.safetensors" "$OUT/$r.safetensors" 2>/dev/null
  cp "$RUNS/$r/train.log" "$OUT/$r.log" 2>/dev/null || cp "$RUNS/$r.out" "$OUT/$r.log"
  echo "== $r"; grep -hE "auto steps|val step|done" "$RUNS/$r/train.log" | cut -c1-200 | tail -5
  grep -hE "Error|error" "$RUNS/$r.out" | tail -3
done
