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
    curve_report     the section itself: each point evaluated once (evaluate_point) and cached, then
                     the rows, the trend and the plot; print_curve prints it

See docs/evaluation.md, section `curve`, and docs/results.md.
"""

import json
import math
import os
import re

import numpy as np
import torch

import eval_metrics as em
from checkpoints import LATEST_NAME, load_checkpoint
from common import UserError
from configurator import Config
from eval_common import import_pyplot, load_corpus, print_table, val_windows
from eval_loss import loss_report
from eval_samples import generate_in_mode, text_metrics
from queue_io import atomic_json

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


# -----------------------------------------------------------------------------
# the section: evaluating the points

def check_settings(cfg, wanted):
    if len(wanted) > 1 or not cfg.curve_dir or not os.path.isdir(cfg.curve_dir):
        raise UserError(f"sections=curve runs alone, on curve_dir=<a folder of runs named <kind>-s<seed>-x<scale>> "
                        f"(experiments/compute_curve.sh makes one); got sections={cfg.sections!r}, curve_dir={cfg.curve_dir!r}")


def run_finished(run_dir):
    """Whether a run's ckpt.pt has reached the max_iters its config asked for."""
    path = os.path.join(run_dir, LATEST_NAME)
    if not os.path.exists(path):
        return False
    checkpoint = load_checkpoint(path)  # memory-mapped: only two small entries are read
    return checkpoint['iter_num'] >= checkpoint['config']['max_iters']


def train_windows(corpus, length, n, device):
    """(n, length) windows of the training split at evenly spaced starts: the validation split's count,
    so the two splits are scored alike (a model that memorises the training text scores better there)."""
    ids = torch.from_numpy(corpus.train_ids)
    starts = torch.from_numpy(np.linspace(0, len(ids) - length, n).astype(np.int64))
    return ids.unfold(0, length, 1)[starts].to(device, torch.long)  # (n, length)


def evaluate_point(cfg, runs, device, load_models):
    """One point of the curve: the fair comparison of the diffusion run with its autoregressive twin on
    the validation split and on the training split, and samples of the confidence sampler.
    `load_models(cfg, device)`: evaluate.py's, which finds the two models in cfg's folders."""
    point_cfg = Config(dict(cfg, out_dir=runs['diffusion'], checkpoint_name=None, reference_out_dir=runs['ar'],
                            reference_checkpoint_name='newest', remasking_checkpoint_name=None, sequence_length=None))
    models = load_models(point_cfg, device)
    corpus = load_corpus(models.checkpoint, device)
    length, saved = models.checkpoint['model_args']['block_size'], models.checkpoint['config']
    val = val_windows(corpus.val_ids, length)
    train = train_windows(corpus, length, len(val), device)
    texts, tokens, passes, _ = generate_in_mode(point_cfg, models, 'confidence', cfg.forward_budget, device)
    samples = dict(sampler='confidence', choice_temperature=cfg.choice_temperature, forward_passes=passes,
                   num_samples=cfg.num_samples, **text_metrics(texts, tokens, models, corpus, point_cfg, copies=False),
                   texts=texts[:4])
    tokens_per_iter = saved['batch_size'] * saved['block_size'] * saved['gradient_accumulation_steps']
    return dict(checkpoint=models.path, reference_checkpoint=models.reference_path,
                iters=models.checkpoint['iter_num'], tokens=models.checkpoint['iter_num'] * tokens_per_iter,
                val=loss_report(point_cfg, models, val, device), train=loss_report(point_cfg, models, train, device),
                samples=samples)


def curve_report(cfg, device, load_models):
    """Every finished point of curve_dir (each evaluated once, then read back from its cached report), the
    table rows (mean ± SE across seeds), the gap's trend and crossings, and the plot."""
    points = find_points(cfg.curve_dir, run_finished)
    if not points:
        raise UserError(f"{cfg.curve_dir} has no finished pair of runs diffusion-s<seed>-x<scale> and ar-s<seed>-x<scale>")
    os.makedirs(os.path.join(cfg.curve_dir, 'eval'), exist_ok=True)
    reports = {}
    for (seed, scale), runs in points.items():
        path = point_report_path(cfg.curve_dir, seed, scale)
        if not os.path.exists(path):
            print(f"evaluating seed {seed} at {scale}x: {runs['diffusion']} against {runs['ar']}", flush=True)
            atomic_json(evaluate_point(cfg, runs, device, load_models), path)
        with open(path, encoding='utf-8') as f:
            reports[(seed, scale)] = json.load(f)
    out = dict(points={f"s{seed}-x{scale}": report for (seed, scale), report in reports.items()},
               rows=curve_rows(reports), trend=gap_trend(reports))
    if cfg.plot:
        out['plot'] = cfg.plot_file or os.path.join(cfg.curve_dir, 'compute_curve.png')
        plot_curve(import_pyplot(), out['rows'], out['plot'],
                   f"{os.path.basename(os.path.normpath(cfg.curve_dir))}: masked diffusion against autoregression")
    return out


def print_curve(curve):
    def cell(row, name, digits=3, scale=1.0):
        mean, se = row[name]
        if mean is None:
            return '-'
        se = error_bar(row, name) if name in row['within_se'] else se
        return f"{mean * scale:.{digits}f}" + ('' if se is None or math.isnan(se) else f" ± {se * scale:.{digits}f}")
    rows = [[f"{row['scale']}x", f"{row['tokens']:,}", row['seeds'], cell(row, 'nelbo'), cell(row, 'ar'),
             cell(row, 'relative_gap', 1, 100.0), cell(row, 'nelbo_train'), cell(row, 'ar_train'),
             cell(row, 'ref_bits', 2), cell(row, 'entropy', 2), cell(row, 'valid_words', 2)]
            for row in curve['rows']]
    print_table("\ncompute curve: bits/char on the validation split (and on as many windows of the training split); "
                "± across seeds (one seed: across windows)",
                ['scale', 'tokens', 'seeds', 'NELBO', 'AR', 'relative gap %', 'NELBO train', 'AR train',
                 'sample ref bits', 'entropy', 'valid words'], rows)
    trend = curve['trend']
    if trend['slope_per_doubling'] is not None:
        print(f"relative gap: {100 * trend['slope_per_doubling']:+.2f} ± {100 * trend['slope_se']:.2f} points per "
              f"doubling of training tokens (least squares over every run)")
    for target, where in trend['crossings'].items():
        print(f"gap under {100 * float(target):.0f}%: " +
              (f"at {where['tokens']:,.0f} training tokens ({where['how']})" if where else "not reached, and the trend does not fall"))
    if 'plot' in curve:
        print(f"wrote the plot to {curve['plot']}")
