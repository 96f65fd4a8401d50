#!/usr/bin/env bash
# Every sampler and remasking score at equal forward passes per sample, read at the diversity of real
# text (issue 10 part 4; evaluate.py --sections=compare, docs/evaluation.md "Section compare").
#
# Trains what it needs, each only when its run is not done yet, all under $RUN_DIR (default
# out-experiments/compare, git-ignored), one after another:
#   unmasking         config/train_shakespeare_char_quick.py      the filler every variant starts from
#   autoregressive    config/train_autoregressive.py              the reference that scores the samples
#   remasking_b       config/train_remasking_all_positions.py     remasker B, random-typo corruption
#   remasking_states  config/train_remasking_sampler_states.py    remasker on the unmasking run's sampled drafts
#   merged            config/train_merged.py                      one network that fills and flags
# (the last two watch the unmasking run: their checkpoint_dir is pointed at $RUN_DIR/unmasking), then
# runs the one evaluate.py command on all of them: $RUN_DIR/compare.json, $RUN_DIR/compare_*.png,
# the printed tables in $RUN_DIR/logs/compare.log.
#
#   bash experiments/compare_samplers.sh            # the real run: each config's max_iters, then
#                                                   # budgets (16, 32, 64) x 4 temperatures x 3 seeds x 64 samples
#   SMOKE=1 bash experiments/compare_samplers.sh    # tiny trainings and budgets: checks the pipeline in minutes
#   DEVICE=cuda bash experiments/compare_samplers.sh   # train and evaluate on a GPU
#   PLOT=False ...                                  # no PNGs (default: plots when matplotlib is installed)
#   EVAL_ARGS="--compare_seeds=5" ...               # more evaluate.py overrides
#   EVAL_THREADS=2 ...                              # torch threads of the evaluation (default 1, below)
#
# The evaluation runs with one torch thread unless EVAL_THREADS says otherwise: its forward passes are
# small batches, and on a shared CPU a second thread waits more than it helps (a 64 x 128 batch of the
# quick model took 0.17 s with one thread and 0.59 s with two on the 2-core development machine under
# load). Training keeps torch's default.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/compare}  # out*/ is git-ignored
DEVICE=${DEVICE:-auto}
if [[ -z "${PLOT:-}" ]]; then
    PLOT=$(python -c "import matplotlib" 2>/dev/null && echo True || echo False)
fi
TRAIN_EXTRA=(--device="$DEVICE")
EVAL_EXTRA=()
if [[ -n "${SMOKE:-}" ]]; then
    RUN_DIR=${RUN_DIR%/}-smoke
    TRAIN_EXTRA+=(--max_iters=2 --lr_decay_iters=2 --warmup_iters=1 --eval_interval=1 --eval_iters=2
                  --batches_per_file=2)
    EVAL_EXTRA=("--compare_budgets=(2, 4, 6)" "--compare_temperatures=(0.8, 1.0)" --compare_seeds=2
                --compare_num_samples=4 --sequence_length=64 --detection_rows=16)
fi
mkdir -p "$RUN_DIR/logs"

train() {  # train <name> <config> [overrides...]: its own out_dir and queue under $RUN_DIR, unless done
    local name=$1 config=$2 start=$SECONDS
    shift 2
    if grep -q "^done" "$RUN_DIR/logs/train_$name.log" 2>/dev/null; then
        echo "=== $name: trained already ($RUN_DIR/$name)"
        return
    fi
    echo "=== train $name: $config"
    python train.py "$config" --out_dir="$RUN_DIR/$name" --data_dir="$RUN_DIR/data/$name" "$@" "${TRAIN_EXTRA[@]}" \
        2>&1 | tee "$RUN_DIR/logs/train_$name.log"
    echo "train $name: $((SECONDS - start)) s" | tee -a "$RUN_DIR/logs/times.txt"
}

train unmasking config/train_shakespeare_char_quick.py
train autoregressive config/train_autoregressive.py
train remasking_b config/train_remasking_all_positions.py
train remasking_states config/train_remasking_sampler_states.py --checkpoint_dir="$RUN_DIR/unmasking" --inference_device="$DEVICE"
train merged config/train_merged.py --checkpoint_dir="$RUN_DIR/unmasking" --inference_device="$DEVICE"

echo "=== compare"
start=$SECONDS
# shellcheck disable=SC2086  # EVAL_ARGS are words on purpose
OMP_NUM_THREADS=${EVAL_THREADS:-1} python evaluate.py --sections=compare --device="$DEVICE" \
    --out_dir="$RUN_DIR/unmasking" --reference_out_dir="$RUN_DIR/autoregressive" \
    --compare_remasking_checkpoints="('B=$RUN_DIR/remasking_b', 'states=$RUN_DIR/remasking_states')" \
    --compare_merged_checkpoint="$RUN_DIR/merged" \
    --plot="$PLOT" --compare_plot_dir="$RUN_DIR" --output_file="$RUN_DIR/compare.json" \
    "${EVAL_EXTRA[@]}" ${EVAL_ARGS:-} 2>&1 | tee "$RUN_DIR/logs/compare.log"
echo "compare: $((SECONDS - start)) s" | tee -a "$RUN_DIR/logs/times.txt"
