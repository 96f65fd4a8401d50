"""
evaluate.py's compare section: every sampler and remasking score at equal forward passes per sample
(several budgets), swept over temperatures and seeds; each variant read off its frontier of reference
bits/char against character entropy at the entropy of real text, the best learned remasker against the
best sampler without one, and a detector table on the sampler's own wrong characters. This module loads
the models it compares, samples and scores the cells, prints the tables and draws the plots; compare.py
holds the computations (variants, frontiers, standard errors, ranking). See docs/evaluation.md.
"""

import itertools
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import compare
import eval_metrics as em
import generate
import generate_setup
from checkpoints import load_checkpoint
from common import UserError
from configurator import Config
from data.char_sampler_states.prepare_streaming import ratio_range, row_counts
from eval_common import fmt, import_pyplot, pm, print_table, val_windows
from eval_remasking import wrong_scores
from eval_samples import mode_config, run_sampler, text_metrics, validation_passages


# -----------------------------------------------------------------------------
# the models it compares

@dataclass
class CompareModels:
    unmasker: generate.Forward
    vocab: generate.Vocab
    remaskers: dict               # label -> Forward of a separate remasking model
    remasker_paths: dict          # label -> its checkpoint
    merged: generate.Forward = None
    merged_path: str = None


def check_compare_settings(cfg):
    budgets = cfg.compare_budgets
    if (not budgets or len(set(budgets)) < len(budgets)
            or not all(type(b) is int and b >= 2 and b % 2 == 0 for b in budgets)):
        raise UserError(f"compare_budgets={budgets!r} must be different even numbers of forward passes per sample, "
                        f"e.g. (16, 32, 64): a separate remasking model costs 2 per iteration, so it gets budget // 2")
    temperatures = cfg.compare_temperatures
    if len(set(temperatures)) < 2 or not all(type(t) in (int, float) and t > 0 for t in temperatures):
        raise UserError(f"compare_temperatures={temperatures!r} must be at least two different temperatures > 0: "
                        f"each variant's frontier is drawn over them")
    tolerance = cfg.compare_entropy_tolerance
    if type(tolerance) not in (int, float) or tolerance < 0:
        raise UserError(f"compare_entropy_tolerance={tolerance!r} must be a number of bits >= 0")
    ratio_range(cfg, 'compare_fill_ratio_range')
    remasker_entries(cfg.compare_remasking_checkpoints)
    if cfg.compare_merged_checkpoint is not None and not isinstance(cfg.compare_merged_checkpoint, str):
        raise UserError(f"compare_merged_checkpoint={cfg.compare_merged_checkpoint!r} must be a checkpoint file or "
                        f"a run folder")


def run_label(path):
    """The name of a checkpoint's run folder (of the folder itself when `path` is one)."""
    path = os.path.abspath(path)
    return os.path.basename(path if os.path.isdir(path) else os.path.dirname(path))


def remasker_entries(entries):
    """[(label, file or run folder)] from compare_remasking_checkpoints: 'label=path', or a path that its
    run folder's name labels. Labels end the variant names, so they are short words, each used once."""
    if not isinstance(entries, (tuple, list)) or not all(isinstance(e, str) and e for e in entries):
        raise UserError(f"compare_remasking_checkpoints={entries!r} must be a tuple of checkpoint files or run "
                        f"folders, e.g. \"('B=out-remasking-all-positions', 'states=out-remasking-sampler-states')\"")
    found = [tuple(e.split('=', 1)) if '=' in e else (run_label(e), e) for e in entries]
    labels = [label for label, _ in found]
    for label in labels:
        if not re.fullmatch(r'[\w.-]+', label) or labels.count(label) > 1:
            raise UserError(f"compare_remasking_checkpoints: the label {label!r} is "
                            f"{'used twice' if labels.count(label) > 1 else 'not a short word'}; name each "
                            f"checkpoint with 'label=path' (letters, digits, _ . -)")
    return found


COMPARE_KEYS = {'remasking': 'compare_remasking_checkpoints', 'merged': 'compare_merged_checkpoint'}


def compare_checkpoint(key, where, kind, cfg):
    """(path, checkpoint) of the `kind` model ('remasking' or 'merged') that `where` names: a checkpoint
    file, or a run folder (its newest; a folder of the other kind is found too, to say where it belongs)."""
    if os.path.isdir(where):
        kinds = sorted(COMPARE_KEYS, key=lambda k: k != kind)  # `kind` first
        where = generate_setup.find_checkpoint(where, None, kinds, cfg.trust_checkpoint_pickle)
    ckpt = load_checkpoint(where, trust_pickle=cfg.trust_checkpoint_pickle)
    found = ckpt.get('training_type')
    if found != kind:
        raise UserError(f"{key}: {where} is a {found!r} model, not a {kind} one"
                        + (f"; pass it in {COMPARE_KEYS[found]}" if found in COMPARE_KEYS else ''))
    return where, ckpt


def load_compare_forward(cfg, models, key, where, kind, device):
    """(path, Forward) of a remasking or merged model for the compare section, checked to fit the unmasking one."""
    path, ckpt = compare_checkpoint(key, where, kind, cfg)
    generate_setup.check_pair(models.path, models.checkpoint, path, ckpt, cfg.sequence_length)
    return path, generate_setup.load_forward(ckpt, device, models.unmasker.ctx)


def load_compare_models(cfg, models, device):
    if models.merged:
        raise UserError(f"the compare section compares samplers on an unmasking model, and {models.path} is a merged "
                        f"one: pass an unmasking checkpoint as checkpoint_name and this one as compare_merged_checkpoint")
    if models.reference is None:
        raise UserError("the compare section reads every sampler off its curve of reference bits/char: it needs the "
                        "autoregressive reference (reference_out_dir; config/train_autoregressive.py trains it)")
    remaskers = {label: load_compare_forward(cfg, models, 'compare_remasking_checkpoints', where, 'remasking', device)
                 for label, where in remasker_entries(cfg.compare_remasking_checkpoints)}
    merged_path, merged = None, None
    if cfg.compare_merged_checkpoint:
        merged_path, merged = load_compare_forward(cfg, models, 'compare_merged_checkpoint',
                                                   cfg.compare_merged_checkpoint, 'merged', device)
    return CompareModels(models.unmasker, models.vocab, {label: f for label, (_, f) in remaskers.items()},
                         {label: p for label, (p, _) in remaskers.items()}, merged, merged_path)


# -----------------------------------------------------------------------------
# the cells and the detector table

def variant_forwards(variant, cm):
    """(filler, scorer): the Forward that fills and the diffusion loop's remasker (None: the filler's own
    confidence, or no scores; the filler itself: a merged model scoring in its own pass)."""
    filler = cm.merged if variant.model == 'merged' else cm.unmasker
    if variant.remasker:
        return filler, cm.remaskers[variant.remasker]
    return filler, filler if variant.model == 'merged' and variant.sampler == 'diffusion' else None


def generate_variant(cfg, cm, variant, budget, temperature, seed, device):
    """(texts, tokens (B, L), forward passes per sample): compare_num_samples samples of one variant at `budget`."""
    settings = Config(dict(cfg, temperature=temperature, seed=seed, num_samples=cfg.compare_num_samples,
                           **variant.settings()))
    mode = variant.rule if variant.sampler == 'diffusion' else variant.sampler
    filler, scorer = variant_forwards(variant, cm)
    texts, tokens, passes, _ = run_sampler(mode_config(settings, mode, variant.iterations(budget)), variant.sampler,
                                           filler, scorer, cm.vocab, device)
    return texts, tokens, passes


def compare_cell(cfg, models, corpus, cm, variant, budget, temperature, seeds, device):
    """One variant at one budget and temperature: its text metrics per seed, and their mean ± SE."""
    per_seed, passes = [], []
    for seed in seeds:
        texts, tokens, spent = generate_variant(cfg, cm, variant, budget, temperature, seed, device)
        per_seed.append(text_metrics(texts, tokens, models, corpus, cfg, copies=False))
        passes.append(spent)
    return dict(variant=variant.name, budget=budget, temperature=temperature, iterations=variant.iterations(budget),
                forward_passes_per_sample=dict(mean=float(np.mean(passes)), per_seed=passes),
                metrics=compare.aggregate(per_seed), per_seed=dict(zip(seeds, per_seed)))


def validation_by_seed(cfg, models, corpus, seeds):
    """compare_num_samples validation passages at random places per seed, scored like the samples."""
    per_seed = []
    for seed in seeds:
        starts = torch.randint(0, len(corpus.val_ids) - cfg.sequence_length + 1, (cfg.compare_num_samples,),
                               generator=torch.Generator().manual_seed(seed))
        texts, tokens = validation_passages(corpus, starts.tolist(), cfg.sequence_length)
        per_seed.append(text_metrics(texts, tokens, models, corpus, cfg, copies=False))
    return dict(metrics=compare.aggregate(per_seed), per_seed=dict(zip(seeds, per_seed)))


def detector_states(cfg, cm, windows, seed):
    """(state, filled, p_fill, wrong) for detection_rows random validation windows: each row masked at a
    share from compare_fill_ratio_range and filled by sampling from the unmasking model at temperature 1;
    wrong (n,) says which of the n filled positions differ from the original."""
    cpu_generator = torch.Generator().manual_seed(seed)
    generator = torch.Generator(device=windows.device).manual_seed(seed)
    rows = windows[torch.randperm(len(windows), generator=cpu_generator)[:cfg.detection_rows].to(windows.device)]
    counts = row_counts(ratio_range(cfg, 'compare_fill_ratio_range'), *rows.shape, cpu_generator)  # (N,)
    parts = [compare.sampler_states(chunk, cm.unmasker, k, cm.vocab.n_real, cm.vocab.mask_token_id, generator)
             for chunk, k in zip(rows.split(cfg.eval_batch_size), counts.split(cfg.eval_batch_size))]
    state, filled, p_fill = (torch.cat(part) for part in zip(*parts))  # (N, T) each
    return state, filled, p_fill, (state != rows)[filled]


def detection_by_seed(cfg, cm, corpus, seeds):
    """AUROC of each score for the unmasking model's own wrong fills, per seed and mean ± SE across seeds."""
    windows = val_windows(corpus.val_ids, cfg.sequence_length)  # (N, L)
    scorers = {'confidence@unmasking': None, **{f"wrong@{label}": f for label, f in cm.remaskers.items()}}
    if cm.merged is not None:
        scorers['wrong@merged'] = cm.merged
    auroc, wrong_share = {name: {} for name in scorers}, {}
    for seed in seeds:
        state, filled, p_fill, wrong = detector_states(cfg, cm, windows, seed)
        wrong_share[seed] = float(wrong.float().mean())
        for name, scorer in scorers.items():
            score = 1.0 - p_fill if scorer is None else wrong_scores(state, scorer, cm.vocab, cfg.eval_batch_size)
            auroc[name][seed] = em.auroc(score[filled], wrong)
    return dict(rows=min(cfg.detection_rows, len(windows)), window_length=cfg.sequence_length,
                fill_ratio_range=cfg.compare_fill_ratio_range, se_across='seeds',
                wrong_share=dict(**compare.summary(wrong_share.values()), per_seed=wrong_share),
                auroc={name: dict(**compare.summary(values.values()), per_seed=values) for name, values in auroc.items()})


def compare_report(cfg, models, corpus, cm, device):
    seeds = [cfg.seed + i for i in range(cfg.compare_seeds)]
    temperatures = sorted(cfg.compare_temperatures)
    variants = compare.variants(tuple(cm.remaskers), cm.merged is not None, cfg.choice_temperature)
    validation = validation_by_seed(cfg, models, corpus, seeds)
    target = validation['metrics']['char_entropy']['mean']
    budgets = sorted(cfg.compare_budgets)
    grid = list(itertools.product(budgets, variants, temperatures))
    cells = [compare_cell(cfg, models, corpus, cm, variant, budget, temperature, seeds, device)
             for budget, variant, temperature in tqdm(grid, desc='compare', leave=False)]
    frontier = compare.frontiers(cells, target, cfg.compare_entropy_tolerance)
    learned = {v.name: v.learned for v in variants}
    return dict(budgets=budgets, temperatures=temperatures, seeds=seeds,
                num_samples=cfg.compare_num_samples, sequence_length=cfg.sequence_length,
                entropy_tolerance=cfg.compare_entropy_tolerance,
                checkpoints=dict(unmasking=models.path, reference=models.reference_path,
                                 remaskers=cm.remasker_paths, merged=cm.merged_path),
                variants=[v.describe() for v in variants], validation_text=validation, target_entropy=target,
                cells=cells, frontier=frontier,
                ranking={budget: compare.compare_at_budget(readings, learned) for budget, readings in frontier.items()},
                detection=detection_by_seed(cfg, cm, corpus, seeds))


# -----------------------------------------------------------------------------
# plots

def compare_plot_files(cfg):
    folder = cfg.compare_plot_dir or (os.path.dirname(cfg.output_file) or '.' if cfg.output_file else cfg.out_dir)
    os.makedirs(folder, exist_ok=True)
    return dict(quality=os.path.join(folder, 'compare_quality.png'),
                frontier=os.path.join(folder, 'compare_frontier.png'))


def variant_styles(plt, report):
    """{variant: plot style}: one colour each, solid lines and dots for a learned remasker, dashed and squares without."""
    colours = plt.colormaps['tab20']
    return {v['name']: dict(color=colours(i % 20), linestyle='-' if v['learned'] else '--',
                            marker='o' if v['learned'] else 's', markersize=3, linewidth=1)
            for i, v in enumerate(report['variants'])}


def plot_compare_quality(plt, report, path):
    """Reference bits/char and valid-word share against forward passes per sample, a column per temperature."""
    temps, styles = report['temperatures'], variant_styles(plt, report)
    cells = {(c['variant'], c['budget'], c['temperature']): c for c in report['cells']}
    panels = (('reference_bits_per_char', 'reference bits/char'), ('valid_word_share', 'valid-word share'))
    fig, axes = plt.subplots(2, len(temps), figsize=(3.6 * len(temps) + 3, 7), squeeze=False, sharex=True)
    for row, (key, label) in enumerate(panels):
        validation = report['validation_text']['metrics'][key]['mean']
        for col, temperature in enumerate(temps):
            ax = axes[row][col]
            for name, style in styles.items():
                points = [cells[name, budget, temperature] for budget in report['budgets']]
                ax.errorbar([p['forward_passes_per_sample']['mean'] for p in points],
                            [p['metrics'][key]['mean'] for p in points],
                            yerr=[p['metrics'][key]['se'] or 0.0 for p in points], label=name, capsize=2, **style)
            if validation is not None:
                ax.axhline(validation, color='gray', linestyle=':', label='validation text')
            ax.set(xscale='log', title=f"{label}, temperature {temperature}")
            ax.set_xticks(report['budgets'], [str(b) for b in report['budgets']])
            ax.minorticks_off()
            if row == 1:
                ax.set_xlabel('forward passes per sample')
    finish_figure(plt, fig, axes[0][0], f"samples at equal forward passes ({report['num_samples']} x "
                                   f"{report['sequence_length']} chars, mean ± SE over {len(report['seeds'])} seeds)", path)


def plot_compare_frontier(plt, report, path):
    """Per budget: each variant's reference bits/char against character entropy over the temperatures, the
    validation text's entropy marked; last panel: the frontier read there, against forward passes."""
    budgets, styles, target = report['budgets'], variant_styles(plt, report), report['target_entropy']
    fig, axes = plt.subplots(1, len(budgets) + 1, figsize=(4 * len(budgets) + 7, 4.5), squeeze=False)
    axes = axes[0]
    for ax, budget in zip(axes, budgets):
        for name, style in styles.items():
            points = sorted((c for c in report['cells'] if c['variant'] == name and c['budget'] == budget),
                            key=lambda c: c['temperature'])
            ax.plot([p['metrics']['char_entropy']['mean'] for p in points],
                    [p['metrics']['reference_bits_per_char']['mean'] for p in points], label=name, **style)
        ax.axvspan(target - report['entropy_tolerance'], target + report['entropy_tolerance'], color='gray', alpha=0.15)
        ax.axvline(target, color='gray', linestyle=':', label='validation text entropy')
        ax.set(xlabel='character entropy (bits)', ylabel='reference bits/char', title=f"{budget} forward passes")
    ax = axes[-1]
    for name, style in styles.items():
        readings = [report['frontier'][budget][name] for budget in budgets]
        shown = [(b, r) for b, r in zip(budgets, readings) if r['bits_per_char'] is not None]
        ax.errorbar([b for b, _ in shown], [r['bits_per_char'] for _, r in shown],
                    yerr=[r['se'] or 0.0 for _, r in shown], label=name, capsize=2, **style)
    ax.set(xscale='log', xlabel='forward passes per sample', ylabel='reference bits/char',
           title=f"at the validation entropy {target:.2f} bits")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    finish_figure(plt, fig, axes[0], "frontiers: reference bits/char against character entropy over temperatures "
                                f"{', '.join(map(str, report['temperatures']))}", path)


def finish_figure(plt, fig, legend_axes, title, path):
    """One legend for the figure (from `legend_axes`), right of the panels; saved as a PNG at `path`."""
    handles, labels = legend_axes.get_legend_handles_labels()
    fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def plot_compare(cfg, report):
    plt = import_pyplot()
    files = compare_plot_files(cfg)
    plot_compare_quality(plt, report, files['quality'])
    plot_compare_frontier(plt, report, files['frontier'])
    return files


# -----------------------------------------------------------------------------
# tables

COMPARE_METRICS = ('reference_bits_per_char', 'char_entropy', 'distinct_4grams', 'valid_word_share')


def print_compare_samples(cmp, budget):
    headers = ['variant', 'temp', 'iters', 'fwd/sample', 'ref bits/char', 'entropy', 'distinct 4g', 'valid words']
    rows = [[c['variant'], c['temperature'], c['iterations'], c['forward_passes_per_sample']['mean'],
             *(pm(c['metrics'][key]['mean'], c['metrics'][key]['se']) for key in COMPARE_METRICS)]
            for c in cmp['cells'] if c['budget'] == budget]
    v = cmp['validation_text']['metrics']
    rows.append(['validation text', None, None, None, *(pm(v[key]['mean'], v[key]['se']) for key in COMPARE_METRICS)])
    print_table(f"compare at {budget} forward passes per sample: {cmp['num_samples']} samples x {cmp['sequence_length']}"
                f" chars per cell, mean ± SE over {len(cmp['seeds'])} seeds", headers, rows,
                digits=[0, 2, 0, 1, 0, 0, 0, 0])


def verdict(ranking):
    """One line: the best variant with a learned remasker against the best without one."""
    best, d = f"best with a learned remasker: {ranking['best_learned'] or 'none in range'}; best without: " \
              f"{ranking['best_without'] or 'none in range'}", ranking['difference']
    if d is None:
        return f"  {best}"
    pairing = 'paired by seed' if d['paired'] else 'unpaired'
    if d['significant'] is None:
        outcome = 'no standard error (one seed): no verdict'
    elif not d['significant']:
        outcome = f"within {compare.SIGNIFICANT_SE:g} SE: no clear difference"
    else:
        outcome = (f"more than {compare.SIGNIFICANT_SE:g} SE: the learned remasker "
                   f"{'wins' if ranking['learned_wins'] else 'loses'}")
    return f"  {best}\n  learned - without = {pm(d['difference'], d['se'])} bits/char ({pairing}), {outcome}"


def print_frontier(cmp, budget):
    readings, ranking = cmp['frontier'][budget], cmp['ranking'][budget]
    learned = {v['name']: v['learned'] for v in cmp['variants']}
    rows = [[rank, name, 'yes' if learned[name] else 'no', pm(readings[name]['bits_per_char'], readings[name]['se']),
             f"{readings[name]['seeds_in_range']}/{readings[name]['seeds']}", ', '.join(readings[name]['how'])]
            for rank, name in enumerate(ranking['order'], 1)]
    print_table(f"matched diversity at {budget} forward passes: reference bits/char read off each variant's frontier "
                f"at the validation text's character entropy {cmp['target_entropy']:.3f} bits "
                f"(± {cmp['entropy_tolerance']} bits), mean ± SE over seeds",
                ['rank', 'variant', 'learned remasker', 'ref bits/char', 'seeds in range', 'read'], rows)
    print(verdict(ranking))


def print_compare_detection(det):
    low, high = det['fill_ratio_range']
    rows = [[name, pm(a['mean'], a['se']), '  '.join(fmt(v, 3) for v in a['per_seed'].values())]
            for name, a in det['auroc'].items()]
    print_table(f"detector on the sampler's own fills: per seed, {det['rows']} validation windows of "
                f"{det['window_length']} chars masked at {low}-{high} and filled by sampling from the unmasking model "
                f"at temperature 1; wrong fills {pm(det['wrong_share']['mean'], det['wrong_share']['se'])}; "
                f"AUROC over the filled positions, mean ± SE across seeds", ['score', 'AUROC', 'per seed'], rows)


def print_compare(cmp):
    for budget in cmp['budgets']:
        print_compare_samples(cmp, budget)
    for budget in cmp['budgets']:
        print_frontier(cmp, budget)
    print_compare_detection(cmp['detection'])
