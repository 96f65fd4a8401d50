#!/usr/bin/env bash
# The README's main job as a new user runs it (train the quick config, then `python sample.py` with
# its defaults), timed, then the metrics of what sample.py's defaults write: evaluate.py's samples
# section at the default budget (30 forward passes), 64 samples x 3 seeds, mean ± SE across seeds
# (docs/results.md, "The first run").
#
#   bash experiments/first_run.sh
#   REFERENCE=out-experiments/objectives/ar-x1-s1337 bash experiments/first_run.sh   # reuse a reference
#
# Everything goes under $RUN_DIR (default out-experiments/first_run, git-ignored); the autoregressive
# reference that scores the samples is trained there too unless $REFERENCE names one.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/first_run}
REFERENCE=${REFERENCE:-$RUN_DIR/autoregressive}
mkdir -p "$RUN_DIR"

start=$SECONDS
python train.py config/train_shakespeare_char_quick.py --out_dir="$RUN_DIR/quick" --data_dir="$RUN_DIR/data" \
    > "$RUN_DIR/train.log" 2>&1
trained=$SECONDS
python sample.py --out_dir="$RUN_DIR/quick" > "$RUN_DIR/sample.txt" 2> "$RUN_DIR/sample.err"
echo "train $((trained - start)) s, sample $((SECONDS - trained)) s, together $((SECONDS - start)) s" | tee "$RUN_DIR/times.txt"
cat "$RUN_DIR/sample.txt"

if [[ ! -f $REFERENCE/ckpt.pt ]]; then
    python train.py config/train_autoregressive.py --out_dir="$REFERENCE" --data_dir="$RUN_DIR/data_ar" \
        > "$RUN_DIR/train_autoregressive.log" 2>&1
fi
for seed in 1337 1338 1339; do
    python evaluate.py --out_dir="$RUN_DIR/quick" --reference_out_dir="$REFERENCE" --sections=samples \
        --forward_budget=30 --num_samples=64 --seed="$seed" --output_file="$RUN_DIR/samples_$seed.json" \
        > "$RUN_DIR/samples_$seed.log" 2>&1
done
python - "$RUN_DIR" <<'EOF'
import glob, json, sys
sys.path.insert(0, 'experiments')
from summarize_objectives import samples_table  # the same table as the objectives runs', one copy
runs = [(i, json.load(open(p))) for i, p in enumerate(sorted(glob.glob(f"{sys.argv[1]}/samples_*.json")))]
samples_table({('quick', 1): runs})
EOF
