"""
The tables of docs/results.md from the evaluate.py reports of experiments/objectives_eval.sh.

    python experiments/summarize_objectives.py out-experiments/objectives

Runs are grouped by kind and scale (`<kind>-x<scale>-s<seed>`); every figure is the mean over the
seeds ± its standard error across seeds (the spread of whole training runs, which is larger than
the standard error of one run's estimate, also shown). Training wall time comes from
wall_seconds.txt, ms/iter from the runs' own logs.
"""

import glob
import json
import math
import os
import re
import statistics
import sys

NAME = re.compile(r'^(?P<kind>.+)-x(?P<scale>\d+)-s(?P<seed>\d+)$')
SAMPLE_METRICS = ('reference_bits_per_char', 'char_entropy', 'valid_word_share', 'distinct_4grams')


def mean_se(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], float('nan')
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def fmt(mean_and_se, digits=3, scale=1.0, unit=''):
    mean, se = mean_and_se
    if mean is None:
        return '-'
    return f"{mean * scale:.{digits}f}{unit} ± {se * scale:.{digits}f}{unit}"


def load_reports(run_dir):
    groups = {}
    for path in sorted(glob.glob(os.path.join(run_dir, 'eval', '*.json'))):
        match = NAME.match(os.path.basename(path)[:-5])
        if match:
            with open(path, encoding='utf-8') as f:
                groups.setdefault((match['kind'], int(match['scale'])), []).append((int(match['seed']), json.load(f)))
    return groups


def wall_seconds(run_dir):
    times = {}
    path = os.path.join(run_dir, 'wall_seconds.txt')
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, seconds = line.split()
                times[name] = float(seconds)  # a rerun's time replaces an earlier one
    return times


def ms_per_iter(run_dir, name):
    """The mean of the ms/iter figures the run's log lines print."""
    path = os.path.join(run_dir, 'logs', f'{name}.log')
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8', errors='replace') as f:
        values = [float(m.group(1)) for m in re.finditer(r'\| ([\d.]+) ms/iter', f.read())]
    return statistics.fmean(values) if values else None


def loss_table(groups, run_dir):
    times = wall_seconds(run_dir)
    print("| run | scale | seeds | NELBO bits/char | AR reference bits/char | gap | relative gap | "
          "one run's SE (NELBO / gap) | ms/iter | train wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (kind, scale), runs in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        loss = [r['loss'] for _, r in runs]
        nelbo = mean_se([x['elbo']['bits_per_char'] for x in loss])
        reference = mean_se([x['reference']['bits_per_char'] for x in loss if x['reference']])
        gap = mean_se([x['gap']['bits_per_char'] for x in loss if x['gap']])
        relative = mean_se([x['gap']['relative'] for x in loss if x['gap']])
        within = (statistics.fmean(x['elbo']['se'] for x in loss),
                  statistics.fmean(x['gap']['se'] for x in loss if x['gap']) if loss[0]['gap'] else float('nan'))
        names = [f"{kind}-x{scale}-s{seed}" for seed, _ in runs]
        ms = mean_se([ms_per_iter(run_dir, n) for n in names])
        wall = mean_se([times.get(n) for n in names])
        print(f"| {kind} | {scale}x | {len(runs)} | {fmt(nelbo)} | {fmt(reference)} | {fmt(gap)} | "
              f"{fmt(relative, 1, 100, '%')} | {within[0]:.3f} / {within[1]:.3f} | {fmt(ms, 1)} | {fmt(wall, 0)} |")


def samples_table(groups):
    first = next(iter(groups.values()))[0][1]
    if 'samples' not in first:
        return
    budget, n = first['samples']['forward_budget'], first['samples']['num_samples']
    print(f"\nSamples: {n} per run x {first['samples']['sequence_length']} characters, {budget} forward passes "
          f"per sample; mean over seeds ± SE")
    print("| run | sampler / mode | reference bits/char | entropy | valid words | distinct 4-grams |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (kind, scale), runs in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        for mode in runs[0][1]['samples']['modes']:
            cells = [fmt(mean_se([r['samples']['modes'][mode][m] for _, r in runs]), 3) for m in SAMPLE_METRICS]
            print(f"| {kind} x{scale} | {mode} | " + " | ".join(cells) + " |")
    validation = first['samples']['validation_text']
    print("| validation text | | " + " | ".join(f"{validation[m]:.3f}" if validation[m] is not None else '-'
                                                  for m in SAMPLE_METRICS) + " |")


def main(run_dir):
    groups = load_reports(run_dir)
    if not groups:
        sys.exit(f"no reports in {run_dir}/eval: run experiments/objectives_eval.sh first")
    loss_table(groups, run_dir)
    samples_table(groups)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'out-experiments/objectives')
