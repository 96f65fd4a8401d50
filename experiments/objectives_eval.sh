#!/usr/bin/env bash
# Evaluate every run of experiments/objectives.sh on the fair comparison (evaluate.py's loss section:
# every validation window, the first character given to both models, paired standard errors) against
# the autoregressive reference of the same seed and scale, plus sample quality of every sampler at one budget (evaluate.py's samples section);
# then print the tables of docs/results.md (experiments/summarize_objectives.py).
#
#   bash experiments/objectives_eval.sh
#   SAMPLER_ARGS="--forward_budget=128 --temperature=0.8" bash experiments/objectives_eval.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/objectives}
SAMPLER_ARGS=${SAMPLER_ARGS:-"--forward_budget=64"}
mkdir -p "$RUN_DIR/eval"

for run in "$RUN_DIR"/*-x*-s*/; do
    name=$(basename "$run")
    kind=${name%%-x*}
    [[ $kind == ar ]] && continue
    rest=${name#*-x}  # <scale>-s<seed>
    reference="$RUN_DIR/ar-x$rest"
    out="$RUN_DIR/eval/$name.json"
    [[ -f $out ]] && continue
    grep -q "^done" "$RUN_DIR/logs/$name.log" 2>/dev/null || { echo "skipping $name: not finished"; continue; }
    grep -q "^done" "$RUN_DIR/logs/ar-x$rest.log" 2>/dev/null || { echo "skipping $name: ar-x$rest not finished"; continue; }
    # shellcheck disable=SC2086  # SAMPLER_ARGS are words on purpose
    python evaluate.py --out_dir="$run" --reference_out_dir="$reference" --sections=loss,samples \
        --elbo_draws=4 --num_samples=64 $SAMPLER_ARGS --output_file="$out" > "$RUN_DIR/eval/$name.log" 2>&1
    echo "evaluated $name"
done
python experiments/summarize_objectives.py "$RUN_DIR"
