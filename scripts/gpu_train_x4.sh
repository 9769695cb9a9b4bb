#!/usr/bin/env bash
# Four x4 candidates for the bundled default model, trained side by side on one GPU for about
# 6.5 minutes each (issue 6). Run from the repository root; results (weights and logs) go to
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
  PYTHONUNBUFFERED=1 timeout 500 python scripts/train_default.py $COMMON --name "$name" "$@" >"$RUNS/$name.out" 2>&1
  echo "$name exit $?"
}
train A-2blk-init --n-blocks 2 --init $X4 --lr 1e-3 --warmup 300 &
train B-3blk-grow --n-blocks 3 --init $X4 --lr 1e-3 --warmup 300 &
train C-4blk-grow --n-blocks 4 --init $X4 --lr 1e-3 --warmup 300 &
train D-dim40-fresh --dim 40 --n-blocks 2 --lr 2e-3 --warmup 300 &
wait
for r in A-2blk-init B-3blk-grow C-4blk-grow D-dim40-fresh; do
  cp "$RUNS/$r/latest.safetensors" "$OUT/$r.safetensors" 2>/dev/null
  cp "$RUNS/$r/train.log" "$OUT/$r.log" 2>/dev/null || cp "$RUNS/$r.out" "$OUT/$r.log"
  echo "== $r"; grep -hE "auto steps|val step|done" "$RUNS/$r/train.log" | cut -c1-200 | tail -5
  grep -hE "Error|error" "$RUNS/$r.out" | tail -3
done
