#!/usr/bin/env bash
# Evaluate each ablation as soon as its training (scripts/ablations/train_all.sh) has finished,
# nice'd, one evaluation at a time (Table 6 first: the order of priority; then whatever model is
# ready, so that the evaluations overlap the trainings without idling).
set -euo pipefail
cd "$(dirname "$0")/../.."
wait_for() { until [ -f "runs/ablations/$1/summary.json" ]; do sleep 20; done; }
E="nice -n 15 python scripts/ablations/evaluate_all.py"
if [ -z "${SKIP_TABLE6:-}" ]; then
  wait_for joint4; $E table6 --checkpoint runs/ablations/joint4 --num-samples 16 --steps 32
fi
until [ -f docs/assets/ablations/table6_joint4.json ]; do sleep 20; done
wait_for joint4; $E table4 --runs joint4 --num-samples 32 --steps 64
wait_for text;   $E table5 --num-samples 32 --steps 64
for r in joint0 joint8; do wait_for $r; $E table4 --runs $r --num-samples 32 --steps 64; done
echo "== evaluations done $(date -u +%H:%M:%S)"
