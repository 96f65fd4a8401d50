"""
evaluate.py's remasking section: how well a remasking model (or a merged model's own [WRONG] head) finds
wrong characters in validation text corrupted with random characters, and with the unmasking model's
own predictions: AUROC, precision, recall and F1 at remasking_confidence_threshold. See docs/evaluation.md.
"""

import torch

import eval_metrics as em
import generate
import sampling_utils as su
from data.corruption import random_tokens
from eval_common import print_table


def corrupt_random(clean, ratio, n_real, cpu_generator):
    """(x, wrong): each position, with probability `ratio`, becomes a different random character.

    The providers' own random branch draws the characters (multiplier 0: never the original one);
    it draws on the CPU, so every draw here does, and the result moves to clean's device."""
    picked = torch.rand(clean.shape, generator=cpu_generator) < ratio  # (B, T)
    drawn = random_tokens(clean.cpu(), range(n_real), 0.0, cpu_generator)  # (B, T)
    x = torch.where(picked, drawn, clean.cpu()).to(clean.device)
    return x, x != clean


def corrupt_with_predictions(clean, ratio, unmasker, vocab, temperature, generator):
    """(x, wrong): positions picked with probability `ratio` are masked and filled by the unmasking model
    (argmax at temperature 0, else a sample); wrong where its fill differs from the original."""
    picked = torch.rand(clean.shape, generator=generator, device=clean.device) < ratio  # (B, T)
    logits = unmasker(clean.masked_fill(picked, vocab.mask_token_id))[picked]  # (n, V)
    x = clean.clone()
    x[picked] = su.sample_tokens(logits, temperature, None, vocab.n_real, generator)[0]
    return x, x != clean


def wrong_scores(x, remasker, vocab, batch_size):
    """(N, T) p([WRONG]) from the remasking model, batch_size rows per forward pass."""
    return torch.cat([generate.wrong_probability(rows, remasker, None, vocab.wrong_token_id)
                      for rows in x.split(batch_size)])


def detection_metrics(score, wrong, threshold):
    return dict(auroc=em.auroc(score, wrong), **em.precision_recall_f1(score, wrong, threshold),
                positions=wrong.numel(), wrong_share=float(wrong.float().mean()))


def remasking_report(cfg, models, windows, device):
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    cpu_generator = torch.Generator().manual_seed(cfg.seed)  # the random branch draws on the CPU
    temperature = cfg.prediction_temperature if cfg.prediction_sampling else 0
    corruptions = {
        'random': lambda c: corrupt_random(c, cfg.corruption_ratio, models.vocab.n_real, cpu_generator),
        'predictions': lambda c: corrupt_with_predictions(c, cfg.corruption_ratio, models.unmasker, models.vocab,
                                                          temperature, generator),
    }
    out = dict(checkpoint=models.remasking_path, threshold=cfg.remasking_confidence_threshold,
               corruption_ratio=cfg.corruption_ratio, prediction='sampled' if cfg.prediction_sampling else 'argmax')
    for name, corrupt in corruptions.items():
        x, wrong = zip(*(corrupt(rows) for rows in windows[:cfg.detection_rows].split(cfg.eval_batch_size)))
        x, wrong = torch.cat(x), torch.cat(wrong)  # (N, T) each
        score = wrong_scores(x, models.remasker, models.vocab, cfg.eval_batch_size)
        out[name] = detection_metrics(score, wrong, cfg.remasking_confidence_threshold)
    return out


def print_remasking(rm):
    rows = [[name, rm[name]['wrong_share'], rm[name]['auroc'], rm[name]['precision'], rm[name]['recall'],
             rm[name]['f1']] for name in ('random', 'predictions')]
    print_table(f"remasking: {rm['checkpoint']} (corruption ratio {rm['corruption_ratio']}, predictions: "
                f"{rm['prediction']}, flagged above {rm['threshold']})",
                ['corruption', 'wrong share', 'AUROC', 'precision', 'recall', 'F1'], rows)
