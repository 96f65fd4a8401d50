"""
The compute curve (evaluate.py's `curve` section) as small functions that tests can drive with
hand-made reports; evaluate.py evaluates the checkpoints and prints.

A curve folder holds one run per kind, seed and scale, named `<kind>-s<seed>-x<scale>`, kind
'diffusion' (an unmasking model) or 'ar' (its autoregressive twin), scale the multiple of the 1x
budget (experiments/compute_curve.sh makes such a folder). Every (seed, scale) with both kinds
finished is a point; its report (evaluate.py's loss section on the validation and on the training
split, and the samples of one sampler) is cached in <folder>/eval/point-s<seed>-x<scale>.json.

    find_points      the finished (seed, scale) pairs of a curve folder
    curve_rows       one row per scale: every figure as the mean over seeds ± its standard error
    gap_trend        the relative gap against log2(training tokens): slope per doubling, and where it
                     crosses a target (interpolated inside the measured range, else extrapolated)
    plot_curve       bits/char of both kinds against training tokens, and the relative gap

See docs/evaluation.md, section `curve`, and docs/results.md.
"""

import math
import os
import re

import numpy as np

import eval_metrics as em

POINT_RUN = re.compile(r'^(?P<kind>diffusion|ar)-s(?P<seed>\d+)-x(?P<scale>\d+)$')
KINDS = ('diffusion', 'ar')
GAP_TARGETS = (0.28, 0.20)  # relative gaps whose crossing the section reports
# the figures of a point report that the table and plot average over seeds: (name, where in the report)
POINT_FIGURES = {
    'nelbo': ('val', 'elbo', 'bits_per_char'),
    'ar': ('val', 'reference', 'bits_per_char'),
    'gap': ('val', 'gap', 'bits_per_char'),
    'relative_gap': ('val', 'gap', 'relative'),
    'nelbo_train': ('train', 'elbo', 'bits_per_char'),
    'ar_train': ('train', 'reference', 'bits_per_char'),
    'ref_bits': ('samples', 'reference_bits_per_char'),
    'entropy': ('samples', 'char_entropy'),
    'valid_words': ('samples', 'valid_word_share'),
}


def point_report_path(curve_dir, seed, scale):
    return os.path.join(curve_dir, 'eval', f'point-s{seed}-x{scale}.json')


def find_points(curve_dir, finished):
    """{(seed, scale): {'diffusion': run folder, 'ar': run folder}} for every pair whose two runs
    `finished(run folder)` says are done, sorted by scale then seed."""
    runs = {}
    for name in sorted(os.listdir(curve_dir)):
        match = POINT_RUN.match(name)
        path = os.path.join(curve_dir, name)
        if match and finished(path):
            runs.setdefault((int(match['seed']), int(match['scale'])), {})[match['kind']] = path
    complete = {key: kinds for key, kinds in runs.items() if set(kinds) == set(KINDS)}
    return dict(sorted(complete.items(), key=lambda item: (item[0][1], item[0][0])))


def figure(report, where):
    """The number at `where` (a path of keys) in a point report; None when a part is missing."""
    value = report
    for key in where:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def mean_over_seeds(values):
    """(mean, standard error across seeds) of the values that are there; SE is nan with one seed."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean, se = em.mean_and_se(values)
    return mean, (se if len(values) > 1 else float('nan'))


def curve_rows(reports):
    """`reports`: {(seed, scale): point report}. One row per scale, ascending: scale, tokens, seeds,
    and for every POINT_FIGURES name a (mean, SE across seeds) pair; 'within_se' is the mean of the
    runs' own standard errors of the gap (across windows), the error bar of a single-seed point."""
    rows = []
    for scale in sorted({scale for _, scale in reports}):
        points = [report for (_, s), report in sorted(reports.items()) if s == scale]
        row = dict(scale=scale, tokens=points[0]['tokens'], seeds=len(points))
        for name, where in POINT_FIGURES.items():
            row[name] = mean_over_seeds([figure(p, where) for p in points])
        row['within_se'] = dict(relative_gap=float(np.mean([figure(p, ('val', 'gap', 'relative_se')) for p in points])),
                                nelbo=float(np.mean([figure(p, ('val', 'elbo', 'se')) for p in points])),
                                ar=float(np.mean([figure(p, ('val', 'reference', 'se')) for p in points])))
        rows.append(row)
    return rows


def error_bar(row, name):
    """A row's error bar: the SE across seeds, or the run's own SE (across windows) with one seed."""
    se = row[name][1]
    return row['within_se'].get(name, 0.0) if se is None or math.isnan(se) else se


def gap_trend(reports, targets=GAP_TARGETS):
    """The relative gap against log2(training tokens), fitted by least squares over every run (seed
    and scale): slope per doubling of compute and its standard error, and for each target the
    training tokens where the gap crosses it: 'measured' when two neighbouring scales' means bracket
    it (log-linear interpolation between them), else 'extrapolated' from the fit (None when the fit
    does not fall)."""
    points = sorted((report['tokens'], report['val']['gap']['relative']) for report in reports.values())
    x = np.log2([tokens for tokens, _ in points])
    y = np.array([gap for _, gap in points])
    out = dict(slope_per_doubling=None, slope_se=None, crossings={})
    if len(set(x)) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        residuals = y - (slope * x + intercept)
        dof = len(x) - 2
        se = math.sqrt((residuals ** 2).sum() / dof / ((x - x.mean()) ** 2).sum()) if dof > 0 else float('nan')
        out.update(slope_per_doubling=float(slope), slope_se=float(se), intercept=float(intercept))
    rows = curve_rows(reports)
    for target in targets:
        out['crossings'][target] = crossing(rows, target, out)
    return out


def crossing(rows, target, fit):
    """Where the mean relative gap falls under `target`: (tokens, 'measured' | 'extrapolated') or None."""
    means = [(row['tokens'], row['relative_gap'][0]) for row in rows]
    if means and means[0][1] <= target:
        return dict(tokens=means[0][0], how='at or before the first point')
    for (t0, g0), (t1, g1) in zip(means, means[1:]):
        if g0 > target >= g1:
            share = (g0 - target) / (g0 - g1)
            return dict(tokens=float(2 ** (math.log2(t0) + share * (math.log2(t1) - math.log2(t0)))), how='measured')
    slope = fit.get('slope_per_doubling')
    if slope is None or slope > -1e-9:  # a flat or rising gap never gets there
        return None
    return dict(tokens=float(2 ** ((target - fit['intercept']) / slope)), how='extrapolated')


def plot_curve(plt, rows, path, title):
    """Two panels against training tokens (log scale): bits/char of both kinds on the validation split
    (solid) and the training split (dashed) with error bars, and the relative gap with its targets."""
    fig, (loss_ax, gap_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    tokens = [row['tokens'] for row in rows]
    for name, train_name, label, colour in (('nelbo', 'nelbo_train', 'masked diffusion (NELBO)', 'tab:blue'),
                                            ('ar', 'ar_train', 'autoregressive', 'tab:orange')):
        loss_ax.errorbar(tokens, [row[name][0] for row in rows], yerr=[error_bar(row, name) for row in rows],
                         marker='o', capsize=3, color=colour, label=f"{label}, validation")
        train = [row[train_name][0] for row in rows]
        if all(value is not None for value in train):
            loss_ax.plot(tokens, train, linestyle='--', marker='.', color=colour, label=f"{label}, training split")
    loss_ax.set(xscale='log', xlabel='training tokens', ylabel='bits per character')
    loss_ax.legend(fontsize=8)
    gap_ax.errorbar(tokens, [100 * row['relative_gap'][0] for row in rows],
                    yerr=[100 * error_bar(row, 'relative_gap') for row in rows], marker='o', capsize=3, color='tab:green')
    for target in GAP_TARGETS:
        gap_ax.axhline(100 * target, linestyle=':', color='grey')
    gap_ax.set(xscale='log', xlabel='training tokens', ylabel='relative gap, NELBO / AR - 1 (%)')
    for row in rows:
        gap_ax.annotate(f"{row['scale']}x", (row['tokens'], 100 * row['relative_gap'][0]),
                        textcoords='offset points', xytext=(4, 6), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
