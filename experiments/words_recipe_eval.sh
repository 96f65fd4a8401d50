#!/usr/bin/env bash
# The samples of config/train_shakespeare_char_words.py's recipe (docs/results.md, "A recipe that writes
# words"), 3 sampling seeds x 64 samples at sample.py's 30 forward passes and at 64, scored by
# evaluate.py's samples section against the autoregressive twin of the same budget. By default it reads
# the compute curve's 4x point (the recipe's schedule and steps, branched from the long run); point
# MODEL and REFERENCE at a run of the config itself to score that instead.
#
#   bash experiments/words_recipe_eval.sh
#   MODEL=out-shakespeare-char-words REFERENCE=out-experiments/compute-curve/ar-s1337-x4 bash experiments/words_recipe_eval.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-out-experiments/compute-curve/diffusion-s1337-x4}
REFERENCE=${REFERENCE:-out-experiments/compute-curve/ar-s1337-x4}
OUT=${OUT:-out-experiments/words-recipe}
mkdir -p "$OUT"
for budget in ${BUDGETS:-30 64}; do
    for seed in 1337 1338 1339; do
        out="$OUT/$(basename "$MODEL")-b$budget-s$seed.json"
        [[ -f $out ]] && continue
        python evaluate.py --out_dir="$MODEL" --reference_out_dir="$REFERENCE" --sections=samples \
            --forward_budget=$budget --num_samples=64 --seed=$seed --output_file="$out" > "${out%.json}.log" 2>&1
        echo "wrote $out"
    done
done
python - "$OUT" "$(basename "$MODEL")" <<'PY'
import glob, json, math, statistics, sys
out, model = sys.argv[1:]
for budget in sorted({int(p.split("-b")[-1].split("-")[0]) for p in glob.glob(f"{out}/{model}-b*-s*.json")}):
    reports = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{model}-b{budget}-s*.json"))]
    for mode in ('confidence', 'intelligent', 'mdlm'):
        cells = []
        for metric in ('reference_bits_per_char', 'char_entropy', 'valid_word_share'):
            values = [r['samples']['modes'][mode][metric] for r in reports]
            se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
            cells.append(f"{statistics.fmean(values):.3f} ± {se:.3f}")
        print(f"| {budget} | {mode} | {len(reports)} x 64 | " + " | ".join(cells) + " |")
    validation = reports[0]['samples']['validation_text']
    print(f"| validation text | | | {validation['reference_bits_per_char']:.3f} | {validation['char_entropy']:.3f} | "
          f"{validation['valid_word_share']:.3f} |")
PY
