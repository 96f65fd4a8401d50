"""
evaluate.py's `test` section: bits per character on a benchmark corpus's test split (text8), measured
the way the literature reports it (D3PM, SEDD, MDLM, MD4):

  - the test split (text8: its last 5M characters) is cut into consecutive, non-overlapping windows of
    the model's training length (its block_size); the characters after the last whole window are
    dropped, as the papers' loaders drop their last incomplete chunk;
  - each window is scored on its own and on all of its characters: the diffusion model's negative
    ELBO masks and scores all T positions (eval_metrics.window_elbo_bits with no given context); the
    autoregressive model predicts positions 2..T from the ones before, and the first character, which it
    has no context for, is scored by the character frequencies of the train split (the papers'
    autoregressive baselines predict it from a start token, which this project's models do not have);
  - bits/char is the mean over windows (all have T characters), with its standard error across windows.

The `loss` section's fair protocol differs: validation windows, each window's first character given to
both models and scored by neither. docs/evaluation.md compares the two.
"""

import numpy as np
import torch
from tqdm import tqdm

import eval_metrics as em
from common import UserError
from data.corpus import id_counts, load_model_splits


def check_settings(cfg):
    if cfg.test_windows is not None and (not isinstance(cfg.test_windows, int) or cfg.test_windows < 1):
        raise UserError(f"test_windows={cfg.test_windows!r} must be None (every window) or a positive integer")


def split_windows(ids, length, limit=None):
    """(N, length) int64: the split `ids` cut into consecutive, non-overlapping windows, the shorter tail
    dropped; only the first `limit` windows when given."""
    n = len(ids) // length
    if n == 0:
        raise UserError(f"the test split ({len(ids)} characters) is shorter than one window of {length}")
    n = min(n, limit or n)
    return torch.from_numpy(ids[:n * length]).view(n, length).long()


def first_character_bits(train_ids, n_real):
    """(n_real,) float64: -log2 of each character's frequency in the train split (add-one smoothed): the
    code length of a window's first character for a model that cannot predict it."""
    counts = id_counts(train_ids, n_real).astype(np.float64) + 1.0
    return torch.from_numpy(-np.log2(counts / counts.sum()))


def reference_window_bits(reference, windows, first_bits, n_real, batch_size):
    """(N,) float64 bits per character over every character of each window (N, T): the autoregressive
    model on positions 2..T, `first_bits` (n_real,) on the first."""
    T = windows.shape[1]
    after_first = em.window_bits_per_char(reference, windows, n_real, batch_size)  # (N,) mean over T - 1
    return (after_first * (T - 1) + first_bits[windows[:, 0].cpu()]) / T


def nelbo_window_bits(cfg, models, windows, device):
    """(N,) float64: the diffusion model's negative ELBO of each window, every character masked and scored."""
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    bar = tqdm(total=len(windows) * cfg.elbo_draws, desc='test NELBO rows', leave=False)
    bits = em.window_elbo_bits(models.unmasker, windows, models.vocab.n_real, models.vocab.mask_token_id, generator,
                               cfg.elbo_estimator, cfg.elbo_draws, context=0, batch_size=cfg.eval_batch_size,
                               progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    return bits


def test_report(cfg, models, device):
    """The test section's numbers for evaluate.py's Models (unmasking model, optional reference)."""
    splits = load_model_splits(models.checkpoint.get('config') or {}, models.checkpoint['meta']['stoi'])
    if 'test' not in splits.ids:
        raise UserError(f"the corpus {splits.path} has no test split: section 'test' measures a benchmark corpus "
                        f"(corpus='text8' when training); section 'loss' measures any other")
    test_ids, length = splits.ids['test'], models.checkpoint['model_args']['block_size']
    windows = split_windows(test_ids, length, cfg.test_windows).to(device)  # (N, T)
    in_split = len(test_ids) // length
    out = dict(corpus=splits.path, window_length=length, windows=len(windows), windows_in_split=in_split,
               complete=len(windows) == in_split, dropped_characters=len(test_ids) - in_split * length,
               draws=cfg.elbo_draws, estimator=cfg.elbo_estimator, reference=None, gap=None)
    nelbo = nelbo_window_bits(cfg, models, windows, device)
    mean, se = em.mean_and_se(nelbo.numpy())
    out['elbo'] = dict(bits_per_char=mean, se=se)
    if models.reference is not None:
        first_bits = first_character_bits(splits.ids['train'], models.vocab.n_real)
        reference = reference_window_bits(models.reference, windows, first_bits, models.vocab.n_real,
                                          cfg.eval_batch_size)
        mean, se = em.mean_and_se(reference.numpy())
        charged_first = float(first_bits[windows[:, 0].cpu()].mean())  # what the frequencies charged them
        out['reference'] = dict(bits_per_char=mean, se=se, first_character_bits=charged_first)
        out['gap'] = em.paired_gap(nelbo, reference)
    return out


def print_test(report, path):
    part = 'every window' if report['complete'] else (f"the first {report['windows']} of {report['windows_in_split']} "
                                                      f"windows: a quick look, not the benchmark number")
    print(f"\ntest split of {report['corpus']}: {path}\n  {report['windows']} windows of {report['window_length']} "
          f"characters ({part}), every character scored; the {report['dropped_characters']} characters after "
          f"the last whole window are left out")
    e, ref, gap = report['elbo'], report['reference'], report['gap']
    print(f"  masked-diffusion NELBO    {e['bits_per_char']:.4f} ± {e['se']:.4f} bits/char "
          f"({report['draws']} masks per window, {report['estimator']})")
    if ref is None:
        print("  autoregressive reference  -  (none given)")
        return
    print(f"  autoregressive reference  {ref['bits_per_char']:.4f} ± {ref['se']:.4f} bits/char "
          f"(first character of each window by the train split's frequencies)")
    print(f"  gap: NELBO - reference    {gap['bits_per_char']:.4f} ± {gap['se']:.4f} bits/char (paired), "
          f"relative {100 * gap['relative']:.1f}% ± {100 * gap['relative_se']:.1f}%")
