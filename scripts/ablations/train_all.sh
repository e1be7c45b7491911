#!/usr/bin/env bash
# The four short trainings behind docs/results.md "Ablations at small scale (Tables 4-6)".
# One tiny config (8 frames of 16x16 Moving MNIST, one digit of 10 px), the same steps, batch
# and seed; only what the ablation varies changes. Sequential (one training at a time), nice'd.
# Usage: bash scripts/ablations/train_all.sh [STEPS]   (runs/ablations/<name>)
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-400}
COMMON=(--preset mnist-small --frames 8 --image-size 16 --channels 16 --channel-mult 1 2
        --attn-resolutions 8 --head-dim 16 --emb-dim 64 --norm-groups 8 --dropout 0
        --mnist-digit-size 10 --mnist-digits 1 --batch-size 8 --learning-rate 1e-3 --warmup-steps 50
        --steps "$STEPS" --seed 0 --log-every 25 --checkpoint-every 100000 --keep-checkpoints 1
        --num-samples 8 --sample-steps 64 --no-progress --overwrite)
run() {  # name, extra flags
  local name=$1; shift
  echo "== $name $(date -u +%H:%M:%S)"
  nice -n 15 python cli.py train "${COMMON[@]}" --run-dir "runs/ablations/$name" "$@"
}
for job in ${JOBS:-joint4 text joint0 joint8}; do
  case $job in
    joint4) run joint4 --image-frames 4 ;;                        # Table 4 row 4, Table 6 model
    text)   run text --image-frames 4 --conditioning text --cond-dropout 0.1 ;;  # Table 5
    joint0) run joint0 --image-frames 0 ;;                        # Table 4 row 0
    joint8) run joint8 --image-frames 8 ;;                        # Table 4 row 8
  esac
done
echo "== done $(date -u +%H:%M:%S)"
