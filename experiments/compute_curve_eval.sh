#!/usr/bin/env bash
# Evaluate the compute curve of experiments/compute_curve.sh (docs/results.md, "How the gap closes
# with compute"): evaluate.py's curve section scores every finished (seed, scale) pair with the fair
# protocol on the validation split and on as many windows of the training split, and samples the
# default sampler (confidence, choice temperature 4.5) at sample.py's 30 forward passes; it caches
# each point in $RUN_DIR/eval/, prints the table and the trend, and draws docs/compute_curve.png.
# Then the one-seed check: the dedicated 2x cosine run against the 2x branch of the same seed.
#
#   bash experiments/compute_curve_eval.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-out-experiments/compute-curve}
PLOT=${PLOT:-docs/compute_curve.png}
SAMPLES=${SAMPLES:-64}
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p "$RUN_DIR/eval"

python evaluate.py --sections=curve --curve_dir="$RUN_DIR" --elbo_draws=4 --forward_budget=30 \
    --num_samples="$SAMPLES" --plot=True --plot_file="$PLOT" --output_file="$RUN_DIR/eval/curve.json" \
    | tee "$RUN_DIR/eval/curve.txt"

for check in "$RUN_DIR"/diffusion-s*-x*-cosine/; do
    [[ -d $check ]] || continue
    name=$(basename "$check")
    rest=${name#diffusion-}; rest=${rest%-cosine}   # s<seed>-x<scale>
    out="$RUN_DIR/eval/$name.json"
    grep -q '^done' "$RUN_DIR/logs/$name.log" 2>/dev/null || { echo "skipping $name: not finished"; continue; }
    [[ -f $out ]] || python evaluate.py --sections=loss --out_dir="$check" --reference_out_dir="$RUN_DIR/ar-$rest" \
        --elbo_draws=4 --output_file="$out" > "$RUN_DIR/eval/$name.log"
    python - "$out" "$RUN_DIR/eval/point-$rest.json" <<'PY'
import json, math, sys
cosine, branch = (json.load(open(path)) for path in sys.argv[1:])
c, b = cosine['loss']['elbo'], branch['val']['elbo']
difference, se = b['bits_per_char'] - c['bits_per_char'], math.hypot(b['se'], c['se'])
print(f"2x check: wsd branch {b['bits_per_char']:.3f} ± {b['se']:.3f}, dedicated cosine run {c['bits_per_char']:.3f} "
      f"± {c['se']:.3f} bits/char (SE across windows); branch - cosine = {difference:+.3f} ± {se:.3f} "
      f"({abs(difference) / se:.1f} SE)")
PY
done
