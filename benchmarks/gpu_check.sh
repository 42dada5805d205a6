#!/usr/bin/env bash
# The checks that need a GPU, in one call, writing every figure to a folder:
#
#   bash benchmarks/gpu_check.sh [OUT] [all|bench|train]      # OUT default results/gpu_check
#
# 1. bench: benchmarks/bench_train_step.py --device cuda: one training task of trx_ssv2_full,
#    strm_ssv2_full and mastaf_hmdb at full size (random backbone weights), one pass /
#    chunked / checkpointed, fp32 and bf16: seconds per task, peak memory, projected schedule
#    and evaluation times, bf16 logit drift  -> OUT/train_step.{txt,json}
# 2. train: a short CUDA training of each paper preset on the synthetic dataset (generated in
#    OUT/fsvid_home on first use; 4 tasks, 2 per step, random backbone weights), in fp32 and
#    bf16: 2 tasks, then resumed from last.pt to 4; TRX once more with
#    model.checkpoint_backbone=true; the fp32 TRX run evaluated with each video's features once
#    and per task (--no-cache), which must give the same accuracy; with 2+ GPUs TRX again
#    under torchrun --nproc_per_node=2 (DDP over NCCL)  -> OUT/runs/*, OUT/train.log,
#    OUT/summary.txt
#
# Python: $PYTHON (default python) with this repository importable (run from its root).
set -euo pipefail

OUT=${1:-results/gpu_check}
WHAT=${2:-all}
PY=${PYTHON:-python}
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
export FSVID_HOME=${FSVID_HOME:-$OUT/fsvid_home}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.txt"
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
  uptime
} > "$OUT/environment.txt" 2>&1
echo "gpu_check $(date -u +%FT%TZ): $GPUS GPU(s), output in $OUT" | tee "$SUMMARY"
[ "$GPUS" -ge 1 ] || { echo "no CUDA device: nothing to check" | tee -a "$SUMMARY"; exit 1; }

if [ "$WHAT" = all ] || [ "$WHAT" = bench ]; then
  $PY benchmarks/bench_train_step.py --device cuda --tasks 3 --json "$OUT/train_step.json" | tee "$OUT/train_step.txt"
  echo "bench: done, OUT/train_step.txt" >> "$SUMMARY"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = train ]; then
  SYNTHETIC=(data.dataset=synthetic data.root=null data.split_dir=null 'data.split_id="01"' data.workers=4
             model.backbone_weights=null train.device=cuda train.tasks_per_step=2 train.checkpoint_every=2
             train.val_every=2 train.val_tasks=4 eval.tasks=20)
  fsvid() { $PY -m fsvid.cli "$@"; }
  train_twice() {  # preset, run name, extra overrides...: 2 tasks, then resumed to 4
    local preset=$1 name=$2; shift 2
    local run="$OUT/runs/$name" started=$SECONDS
    fsvid train --config "$preset" "${SYNTHETIC[@]}" "$@" train.tasks=2 output_dir="$run" -q || return 1
    fsvid train --config "$preset" "${SYNTHETIC[@]}" "$@" train.tasks=4 output_dir="$run" -q || return 1
    local state
    state=$($PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(s.get('status'), s.get('tasks'))" \
            "$run/summary.json") || return 1
    echo "train $name: 2 tasks, then resumed to 4: summary $state, $((SECONDS - started)) s" | tee -a "$SUMMARY"
  }
  check() {  # preset, run name, overrides...: one training check, its failure noted, the others still run
    train_twice "$@" || echo "train $2: FAILED (see train.log)" | tee -a "$SUMMARY"
  }
  {
    for preset in trx_ssv2_full strm_ssv2_full mastaf_hmdb; do
      check "$preset" "${preset}_fp32" train.amp=none
      check "$preset" "${preset}_bf16" train.amp=bf16
    done
    check trx_ssv2_full trx_checkpointed train.amp=none model.checkpoint_backbone=true
    run="$OUT/runs/trx_ssv2_full_fp32"
    started=$SECONDS; fsvid evaluate "$run" --tasks 20 -q > "$OUT/eval_once.txt" || true; once=$((SECONDS - started))
    started=$SECONDS; fsvid evaluate "$run" --tasks 20 --no-cache -q > "$OUT/eval_per_task.txt" || true
    per_task=$((SECONDS - started))
    echo "evaluate trx fp32, 20 tasks: features once ${once} s: $(head -1 "$OUT/eval_once.txt");" \
         "per task ${per_task} s: $(head -1 "$OUT/eval_per_task.txt")" | tee -a "$SUMMARY"
    if [ "$GPUS" -ge 2 ]; then
      started=$SECONDS
      if $PY -m torch.distributed.run --standalone --nproc_per_node=2 -m fsvid.cli train --config trx_ssv2_full \
          "${SYNTHETIC[@]}" train.amp=bf16 train.tasks=4 output_dir="$OUT/runs/trx_ddp2" -q; then
        echo "train trx_ddp2: torchrun 2 processes (NCCL), 4 tasks, $((SECONDS - started)) s" | tee -a "$SUMMARY"
      else
        echo "train trx_ddp2: FAILED (see train.log)" | tee -a "$SUMMARY"
      fi
    else
      echo "one GPU: the torchrun check over NCCL needs 2" | tee -a "$SUMMARY"
    fi
  } 2>&1 | tee "$OUT/train.log"
fi
echo "gpu_check finished $(date -u +%FT%TZ)" | tee -a "$SUMMARY"
