"""
evaluate.py's samples section: text from each remasking mode of the diffusion loop and each of the
field's samplers at one budget of forward passes, scored by the reference model (bits/char), character
entropy, valid words, distinct 4-grams and the longest passage copied from the training text; with
plot=True, a PNG of that quality against diffusion iterations. The compare section samples through
run_sampler and scores through text_metrics too. See docs/evaluation.md.
"""

import os

import numpy as np
import torch

import eval_metrics as em
import generate
import generate_setup
from configurator import Config
from eval_common import import_pyplot, print_table

MODES = (*generate.REMASKING_MODES, *generate.FIELD_SAMPLERS)  # the diffusion loop's modes, then the field's samplers


def mode_config(cfg, mode, iterations):
    """The sample.py settings that run `mode` (a remasking mode or a field sampler) for `iterations` iterations."""
    threshold = cfg.remasking_confidence_threshold
    flags = generate_setup.mode_settings(mode, threshold) if mode in generate.REMASKING_MODES else {}
    return Config(dict(cfg, **flags, diffusion_iterations=iterations))


def iterations_for(mode, budget, models):
    """Iterations that spend `budget` forward passes: a separate remasking model adds one per iteration
    in the modes that read it (a merged model scores in its own pass)."""
    separate = models.remasker is not None and not generate.is_merged(models.unmasker, models.remasker)
    return budget // 2 if mode in ('intelligent', 'threshold', 'mixed') and separate else budget


def run_sampler(cfg, sampler, unmasker, remasker, vocab, device):
    """(texts, tokens (B, L), forward passes per sample, stats): unprompted samples from `sampler`
    ('diffusion' in the mode cfg's flags select, or a field sampler) with cfg's settings, from cfg.seed.
    `remasker`: the diffusion loop's (None: the unmasking model's confidence; `unmasker`: merged)."""
    for forward in (unmasker, remasker):
        if forward is not None:
            forward.rows = 0
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    prompt = generate.encode_prompt('', vocab.stoi, device)  # unprompted
    mode = generate_setup.remasking_mode(cfg) if sampler == 'diffusion' else None
    tokens, stats = generate.run_loop(sampler, mode, unmasker, remasker, prompt, cfg, vocab, generator)
    passes = generate.forward_passes_per_sample((unmasker, remasker), cfg.num_samples)
    return vocab.decode(tokens), tokens, passes, stats


def generate_in_mode(cfg, models, mode, iterations, device):
    """(texts, tokens (B, L), forward passes per sample, stats) for one mode, from its own fresh seed."""
    remasker = models.remasker if mode not in ('random', *generate.FIELD_SAMPLERS) else None  # reads no scores
    sampler = mode if mode in generate.FIELD_SAMPLERS else 'diffusion'
    return run_sampler(mode_config(cfg, mode, iterations), sampler, models.unmasker, remasker, models.vocab, device)


def text_metrics(texts, tokens, models, corpus, cfg, copies=True):
    out = dict(reference_bits_per_char=None)
    if models.reference is not None:
        out['reference_bits_per_char'] = em.bits_per_char(models.reference, tokens, models.vocab.n_real,
                                                          cfg.eval_batch_size)
    out.update(char_entropy=em.char_entropy(texts), valid_word_share=em.valid_word_share(texts, corpus.vocabulary),
               distinct_4grams=em.distinct_ngrams(texts, 4))
    if copies:
        out['longest_copy_length'], out['longest_copy'] = em.longest_copied_passage(texts, corpus.corpus_index())
    return out


def validation_passages(corpus, starts, length):
    """(texts, tokens (B, length)) of the validation passages that begin at `starts`."""
    tokens = torch.stack([corpus.val_ids[s:s + length] for s in starts])  # (B, L)
    return [corpus.val_text[s:s + length] for s in starts], tokens


def validation_texts(corpus, cfg, device):
    """num_samples evenly spaced validation passages of sequence_length: the row to compare samples with."""
    starts = np.linspace(0, len(corpus.val_ids) - cfg.sequence_length, cfg.num_samples).astype(np.int64)
    texts, tokens = validation_passages(corpus, starts.tolist(), cfg.sequence_length)
    return texts, tokens.to(device)


def samples_report(cfg, models, corpus, device):
    out = dict(forward_budget=cfg.forward_budget, num_samples=cfg.num_samples, sequence_length=cfg.sequence_length,
               score=generate.score_source(models.unmasker, models.remasker), modes={})
    for mode in MODES:
        iterations = iterations_for(mode, cfg.forward_budget, models)
        texts, tokens, passes, stats = generate_in_mode(cfg, models, mode, iterations, device)
        out['modes'][mode] = dict(iterations=iterations, forward_passes_per_sample=passes,
                                  **text_metrics(texts, tokens, models, corpus, cfg), texts=texts)
        if mode == 'threshold':
            out['modes'][mode]['mean_iterations'] = float(stats['iterations'].float().mean())
    texts, tokens = validation_texts(corpus, cfg, device)
    out['validation_text'] = dict(**text_metrics(texts, tokens, models, corpus, cfg), texts=texts)
    return out


def plot_report(cfg, models, corpus, device):
    """Reference bits/char and valid-word share of each mode's samples at each of plot_iterations; saves a PNG."""
    plt = import_pyplot()
    curves = {mode: [] for mode in MODES}
    for iterations in cfg.plot_iterations:
        for mode in MODES:
            texts, tokens, passes, _ = generate_in_mode(cfg, models, mode, iterations, device)
            curves[mode].append(dict(iterations=iterations, forward_passes_per_sample=passes,
                                     **text_metrics(texts, tokens, models, corpus, cfg, copies=False)))
    validation = text_metrics(*validation_texts(corpus, cfg, device), models, corpus, cfg, copies=False)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (('reference_bits_per_char', 'reference bits/char (lower is better)'),
              ('valid_word_share', 'share of valid words'))
    for ax, (key, title) in zip(axes, panels):
        for mode, points in curves.items():
            if all(p[key] is not None for p in points):
                ax.plot([p['iterations'] for p in points], [p[key] for p in points], marker='o', label=mode)
        if validation[key] is not None:
            ax.axhline(validation[key], color='gray', linestyle='--', label='validation text')
        ax.set(xscale='log', xlabel='diffusion iterations', title=title)
        ax.set_xticks(list(cfg.plot_iterations), [str(i) for i in cfg.plot_iterations])
        ax.minorticks_off()
        ax.legend()
    fig.suptitle(f"{os.path.basename(models.path)}: {cfg.num_samples} samples x {cfg.sequence_length} chars")
    fig.tight_layout()
    path = cfg.plot_file or os.path.join(cfg.out_dir, 'eval_samples.png')
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return dict(file=path, curves=curves, validation_text=validation)


def print_samples(samples):
    headers = ['sampler / mode', 'iters', 'fwd/sample', 'ref bits/char', 'entropy', 'valid words', 'distinct 4g', 'copy len']
    rows = [[mode, m['iterations'], m['forward_passes_per_sample'], m['reference_bits_per_char'], m['char_entropy'],
             m['valid_word_share'], m['distinct_4grams'], m['longest_copy_length']]
            for mode, m in samples['modes'].items()]
    v = samples['validation_text']
    rows.append(['validation text', None, None, v['reference_bits_per_char'], v['char_entropy'], v['valid_word_share'],
                 v['distinct_4grams'], v['longest_copy_length']])
    print_table(f"samples: {samples['num_samples']} x {samples['sequence_length']} chars, budget "
                f"{samples['forward_budget']} forward passes, score: {samples['score']}", headers, rows,
                digits=[0, 0, 1, 4, 4, 4, 4, 0])
    for mode, m in [*samples['modes'].items(), ('validation text', v)]:
        print(f"  longest copy ({mode}): {m['longest_copy']!r}")
