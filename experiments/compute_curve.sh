#!/usr/bin/env bash
# The compute curve (docs/results.md, "How the gap closes with compute"): the quick diffusion recipe
# and its autoregressive twin at 1x, 2x, 4x, 8x ... the quick config's 800 steps, from one long
# warmup-stable-decay run per kind and seed plus short decays branched from it (docs/training.md,
# "Branching a decay"). For seed:S in $SEED_SCALES the long run trains 800*S steps and decays over
# its last 20%; the scales S/2, S/4 ... 1 branch from its checkpoint at 80% of their own length.
# The two kinds train side by side, one thread each. Every run resumes where it stopped when the
# script is started again; finished runs are skipped.
#
#   bash experiments/compute_curve.sh                      # seeds 1337 to 8x and 1338 to 2x (CPU: about 1 h 45 min)
#   SEED_SCALES="1337:16" bash experiments/compute_curve.sh
#   bash experiments/compute_curve_eval.sh                 # then: evaluate every point, table and plot
#
# With CHECK=1 (the default) the diffusion lane also trains a dedicated 2x cosine run of the first
# seed, the reference that a 2x branch should match. Evaluations come every BASE_ITERS/5 steps, so
# every branch point (80% of a power of two times BASE_ITERS) has a checkpoint.
# A smoke test in a minute: RUN_DIR=/tmp/cc BASE_ITERS=20 SEED_SCALES="1:2" EXTRA="--n_layer=1 --eval_iters=2" bash ...
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/compute-curve}
SEED_SCALES=${SEED_SCALES:-"1337:8 1338:2"}
KINDS=${KINDS:-"diffusion ar"}
CHECK=${CHECK:-1}
THREADS=${THREADS:-1}   # torch threads per training; two trainings share the 2 cores
EXTRA=${EXTRA:-}        # more train.py overrides for every run (words; they come last, so they win)
BASE_ITERS=${BASE_ITERS:-800}  # the 1x budget: the quick config's steps
mkdir -p "$RUN_DIR/logs"

config_of() {
    case $1 in
        diffusion) echo config/train_shakespeare_char_quick.py ;;
        ar) echo config/train_autoregressive.py ;;
        *) echo "unknown kind $1" >&2; exit 2 ;;
    esac
}
checkpoint_kind_of() { [[ $1 == ar ]] && echo autoregressive || echo unmasking; }

train_run() {  # name, then train.py arguments; a run with a ckpt.pt resumes, a finished one is skipped
    local name=$1; shift
    local log="$RUN_DIR/logs/$name.log"
    if grep -q '^done' "$log" 2>/dev/null; then echo "=== $name: done already"; return; fi
    local start=(--init_from=scratch)
    [[ -f $RUN_DIR/$name/ckpt.pt ]] && start=(--init_from=resume)
    [[ ${start[0]} == --init_from=scratch && $* == *--branch_from=* ]] && start=(--init_from=branch)
    echo "=== $name: ${start[0]#--init_from=} ($(date +%H:%M:%S))"
    local began=$SECONDS
    # shellcheck disable=SC2086  # EXTRA is words on purpose
    OMP_NUM_THREADS=$THREADS python train.py "$@" --out_dir="$RUN_DIR/$name" --data_dir="$RUN_DIR/data/$name" \
        --eval_interval=$((BASE_ITERS / 5)) --log_interval=$((BASE_ITERS / 10)) "${start[@]}" $EXTRA >> "$log" 2>&1
    echo "$name $((SECONDS - began))" >> "$RUN_DIR/wall_seconds.txt"
}

lane() {  # every seed's long run and its branches, for one kind
    local kind=$1 config seed top long scale
    config=$(config_of "$kind")
    for pair in $SEED_SCALES; do
        seed=${pair%%:*}; top=${pair##*:}
        long="$kind-s$seed-x$top"
        train_run "$long" "$config" --seed="$seed" --data_seed="$seed" --lr_schedule=wsd --decay_fraction=0.2 \
            --max_iters=$((BASE_ITERS * top)) --always_save_checkpoint=True
        for ((scale = top / 2; scale >= 1; scale /= 2)); do
            train_run "$kind-s$seed-x$scale" "$config" --seed="$seed" --data_seed="$seed" --lr_schedule=wsd \
                --max_iters=$((BASE_ITERS * scale)) \
                --branch_from="$RUN_DIR/$long/ckpt_$(checkpoint_kind_of "$kind")_$((BASE_ITERS * scale * 4 / 5)).pt"
        done
    done
    if [[ $CHECK == 1 && $kind == diffusion ]]; then  # last, so the curve's points come first
        seed=${SEED_SCALES%%:*}
        train_run "$kind-s$seed-x2-cosine" "$config" --seed="$seed" --data_seed="$seed" \
            --max_iters=$((BASE_ITERS * 2)) --lr_decay_iters=$((BASE_ITERS * 2))
    fi
}

for kind in $KINDS; do
    lane "$kind" &
done
wait
echo "all runs done; evaluate with: bash experiments/compute_curve_eval.sh"
