#!/usr/bin/env bash
# Train the models docs/results.md compares, one after another, then evaluate them.
# Every run, queue and report goes under $RUN_DIR (default out-experiments/, git-ignored), so
# nothing else in the repo is touched.
#
#   bash experiments/run_all.sh                 # the real run: each config's own max_iters (CPU: about an hour)
#   SMOKE=1 bash experiments/run_all.sh         # 2 iterations per model, tiny evaluations: checks the pipeline
#   PLOT=True bash experiments/run_all.sh       # also the sample-quality plot (needs: pip install matplotlib)
#
# Wall times of every step are printed and collected in $RUN_DIR/times.txt; logs in $RUN_DIR/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments}  # out*/ is git-ignored
PLOT=${PLOT:-False}
TRAIN_EXTRA=()
EVAL_EXTRA=()
if [[ -n "${SMOKE:-}" ]]; then
    RUN_DIR=${RUN_DIR%/}-smoke
    TRAIN_EXTRA=(--max_iters=2 --lr_decay_iters=2 --warmup_iters=1 --eval_interval=1 --eval_iters=2 --batches_per_file=2)
    EVAL_EXTRA=(--elbo_draws=1 --detection_rows=32 --num_samples=2 --forward_budget=4
                "--plot_iterations=(2, 4)")
fi
mkdir -p "$RUN_DIR/logs"
: > "$RUN_DIR/times.txt"

step() {  # step <name> <command...>: run, log, time
    local name=$1 start=$SECONDS
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$RUN_DIR/logs/$name.log"
    echo "$name: $((SECONDS - start)) s" | tee -a "$RUN_DIR/times.txt"
}

train() {  # train <name> <config> [overrides...]: out_dir and queue of its own under $RUN_DIR
    local name=$1 config=$2
    shift 2
    step "train_$name" python train.py "$config" --out_dir="$RUN_DIR/$name" --data_dir="$RUN_DIR/data/$name" \
        "$@" "${TRAIN_EXTRA[@]}"
}

evaluate() {  # evaluate <name> [overrides...]: the unmasking run and the reference are always the ones above
    local name=$1
    shift
    step "eval_$name" python evaluate.py --out_dir="$RUN_DIR/unmasking" --reference_out_dir="$RUN_DIR/autoregressive" \
        --output_file="$RUN_DIR/eval_$name.json" "$@" "${EVAL_EXTRA[@]}"
}

train unmasking config/train_shakespeare_char_quick.py
train autoregressive config/train_autoregressive.py
train remasking_b config/train_remasking_all_positions.py
train remasking_a config/train_remasking_corrupted_only.py
train remasking_predictions config/train_remasking_from_predictions.py --checkpoint_dir="$RUN_DIR/unmasking"

# the validation loss, NELBO and reference once; samples without a remasking model (unmasking confidence)
evaluate unmasking --sections=loss,samples --plot="$PLOT" --plot_file="$RUN_DIR/plot_confidence.png"
for remasker in remasking_b remasking_a remasking_predictions; do
    evaluate "$remasker" --sections=remasking,samples --remasking_out_dir="$RUN_DIR/$remasker" \
        --remasking_checkpoint_name=newest --plot="$PLOT" --plot_file="$RUN_DIR/plot_$remasker.png"
done
# the mistakes of a *sampling* unmasking model, denser: the B and predictions remaskers side by side
for remasker in remasking_b remasking_predictions; do
    evaluate "${remasker}_sampled" --sections=remasking --remasking_out_dir="$RUN_DIR/$remasker" \
        --remasking_checkpoint_name=newest --prediction_sampling=True --corruption_ratio=0.5
done

# threshold and mixed modes at lower thresholds (docs/results.md, "Extra runs")
for threshold in 0.1 0.02; do
    evaluate "remasking_b_threshold_$threshold" --sections=samples --remasking_out_dir="$RUN_DIR/remasking_b" \
        --remasking_checkpoint_name=newest --remasking_confidence_threshold="$threshold"
done

echo "=== wall times"
cat "$RUN_DIR/times.txt"
