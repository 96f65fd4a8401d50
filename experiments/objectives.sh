#!/usr/bin/env bash
# The masked-diffusion training objective at equal steps, against the autoregressive reference
# (docs/results.md, "Diffusion vs autoregression" and "The training objective"):
#
#   ar            config/train_autoregressive.py                 next-character prediction (the reference)
#   stages        config/train_shakespeare_char_quick.py         the quick config's stage mix, mean loss
#   uniform       ... unmasking_stages=[{'type': 'uniform'}]     MDLM's stratified t ~ U(0, 1], mean loss
#   uniform_elbo  ... and loss_weighting='elbo'                  the same with the continuous-time ELBO weighting
#   stages_bf16   the stage mix under bfloat16 autocast          speed and loss of bf16 on the CPU
#
# Each for every seed in $SEEDS (seed and data_seed both: initialisation and data stream differ), at
# the quick config's budget times $SCALE (1, 2, 4: the gap-with-compute table). Training only; the
# fair evaluation of every run is experiments/objectives_eval.sh.
#
#   bash experiments/objectives.sh                          # 3 seeds x 5 runs at 800 iterations (CPU: ~1.5 h)
#   SCALE=4 SEEDS=1337 RUNS="ar stages" bash experiments/objectives.sh
#   RUN_DIR=out-experiments/objectives-lr4e-3 EXTRA="--learning_rate=4e-3 --min_lr=4e-4" bash experiments/objectives.sh
#                                                           # the same runs with other settings, in a folder of their own
set -euo pipefail
set -f  # the stage lists in the overrides hold [ ] : never globs
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/objectives}
SEEDS=${SEEDS:-"1337 1338 1339"}
RUNS=${RUNS:-"ar stages uniform uniform_elbo stages_bf16"}
SCALE=${SCALE:-1}
EXTRA=${EXTRA:-}  # more train.py overrides for every run (words; they come last, so they win)
ITERS=$((800 * SCALE))
mkdir -p "$RUN_DIR/logs"

overrides() {  # the config and the overrides of one run kind
    case $1 in
        ar) echo config/train_autoregressive.py ;;
        stages) echo config/train_shakespeare_char_quick.py ;;
        uniform) echo "config/train_shakespeare_char_quick.py --unmasking_stages=[{'type':'uniform'}]" ;;
        uniform_elbo) echo "config/train_shakespeare_char_quick.py --unmasking_stages=[{'type':'uniform'}] --loss_weighting=elbo" ;;
        stages_bf16) echo "config/train_shakespeare_char_quick.py --dtype=bfloat16" ;;
        *) echo "unknown run kind $1" >&2; exit 2 ;;
    esac
}

for seed in $SEEDS; do
    for kind in $RUNS; do
        name="$kind-x$SCALE-s$seed"
        if [[ -f "$RUN_DIR/$name/ckpt.pt" ]] && grep -q "^done" "$RUN_DIR/logs/$name.log" 2>/dev/null; then
            echo "=== $name: done already"; continue
        fi
        start=$SECONDS
        # shellcheck disable=SC2046,SC2086  # the overrides are words on purpose
        python train.py $(overrides "$kind") --out_dir="$RUN_DIR/$name" --data_dir="$RUN_DIR/data/$name" \
            --seed="$seed" --data_seed="$seed" --max_iters="$ITERS" --lr_decay_iters="$ITERS" \
            --init_from=scratch $EXTRA > "$RUN_DIR/logs/$name.log" 2>&1
        echo "$name $((SECONDS - start))" | tee -a "$RUN_DIR/wall_seconds.txt"
    done
done
