"""
The comparison of samplers at matched compute (evaluate.py's `compare` section), as small functions
that tests can drive with hand-made inputs; eval_compare.py wires them to the models, prints and plots.

    Variant, variants      every sampler and remasking score to compare, each with its name, its cost in
                           forward passes per iteration and whether a learned remasker chooses what to remask
    sampler_states         the states a sampler's own fills make: the detector table's test set
    read_off               one frontier (reference bits/char against character entropy, over the
                           temperatures) read at a target entropy
    frontier_reading       read_off for every seed, mean and standard error across seeds
    frontiers              frontier_reading of every variant at every budget, from the sampled cells
    paired_difference      the difference of two per-seed numbers and its standard error
    compare_at_budget      the ranking at one budget: the best variant with a learned remasker against the
                           best without one, and whether their difference exceeds two standard errors

See docs/evaluation.md, section `compare`.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

import eval_metrics as em
import generate
import sampling_utils as su

# the diffusion loop's modes that read a score (random mode remasks blindly)
SCORED_MODES = tuple(mode for mode, (intelligent, _, _) in generate.REMASKING_MODES.items() if intelligent)
SIGNIFICANT_SE = 2.0  # a difference counts when it exceeds this many standard errors


# -----------------------------------------------------------------------------
# the variants

@dataclass(frozen=True)
class Variant:
    sampler: str            # 'diffusion' or one of generate.FIELD_SAMPLERS
    rule: str = None        # diffusion: the remasking mode; remdm: its remdm_score; confidence: its
                            # choice_temperature (None: 0, the pure confidence order); mdlm: None
    model: str = 'unmasking'  # the network that fills: 'unmasking' or 'merged'
    remasker: str = None    # the label of a separate remasking model (a second forward pass per iteration)

    @property
    def score(self):
        """What ranks the characters to remask: 'confidence' (the filler's 1 - p(chosen)), 'wrong'
        (p([WRONG]) from a remasking or merged model), 'random'; None when no decoded character is remasked."""
        if self.sampler == 'diffusion' and self.rule != 'random':
            return 'wrong' if self.remasker or self.model == 'merged' else 'confidence'
        return self.rule if self.sampler in ('diffusion', 'remdm') else None

    @property
    def learned(self):
        """A learned remasker (separate or merged) chooses what is remasked."""
        return self.score == 'wrong'

    @property
    def passes_per_iteration(self):
        return 2 if self.remasker else 1

    def settings(self):
        """The sampler key this variant's rule sets (remdm_score, choice_temperature), for its run only."""
        if self.sampler == 'remdm':
            return dict(remdm_score=self.rule)
        if self.sampler == 'confidence':
            return dict(choice_temperature=self.rule or 0.0)
        return {}

    def iterations(self, budget):
        """Iterations that spend `budget` forward passes per sample."""
        return budget // self.passes_per_iteration

    @property
    def name(self):
        """sampler[.mode][:score]@model[+remasker], e.g. diffusion.intelligent:wrong@unmasking+B, remdm:random@unmasking."""
        head = f"diffusion.{self.rule}" if self.sampler == 'diffusion' else self.sampler
        if self.sampler == 'confidence' and self.rule:
            head += f"~{self.rule:g}"
        shows_score = self.sampler == 'remdm' or (self.sampler == 'diffusion' and self.rule != 'random')
        score = f":{self.score}" if shows_score else ''
        return f"{head}{score}@{self.model}" + (f"+{self.remasker}" if self.remasker else '')

    def describe(self):
        return dict(name=self.name, sampler=self.sampler, rule=self.rule, model=self.model, remasker=self.remasker,
                    score=self.score, learned=self.learned, passes_per_iteration=self.passes_per_iteration)


def confidence_variants(choice_temperature, model='unmasking'):
    """The confidence sampler in its pure order, and with `choice_temperature`'s noise when it is not 0."""
    return [Variant('confidence', model=model)] + ([Variant('confidence', choice_temperature, model)]
                                                  if choice_temperature else [])


def variants(remasker_labels=(), merged=False, choice_temperature=0.0):
    """Every variant to compare: the samplers without a learned remasker on the unmasking model (the
    confidence sampler also with `choice_temperature`); each separate remasker in the modes that read
    [WRONG]; a merged model in those modes, in remdm with its own [WRONG] scores, and in mdlm /
    confidence as the no-remasker baselines of that network."""
    found = [Variant('diffusion', mode) for mode in generate.REMASKING_MODES]
    found += [Variant('mdlm'), *confidence_variants(choice_temperature), Variant('remdm', 'random'),
              Variant('remdm', 'confidence')]
    for label in remasker_labels:
        found += [Variant('diffusion', mode, remasker=label) for mode in SCORED_MODES]
    if merged:
        found += [Variant('diffusion', mode, 'merged') for mode in SCORED_MODES]
        found += [Variant('remdm', 'wrong', 'merged'), Variant('mdlm', model='merged'),
                  *confidence_variants(choice_temperature, 'merged')]
    return found


# -----------------------------------------------------------------------------
# the detector's test set

@torch.no_grad()
def sampler_states(clean, logits_fn, counts, n_real, mask_token_id, generator, temperature=1.0):
    """(state (B, T), filled (B, T) bool, p_fill (B, T)): counts[b] random positions of each clean row
    are masked and filled from one pass of `logits_fn` by sampling at `temperature`, as the samplers
    draw (sampling_utils.sample_tokens); p_fill is the model's probability of each fill (0 elsewhere).
    A fill is wrong where the state differs from `clean`."""
    filled = su.select_random(torch.ones_like(clean, dtype=torch.bool), counts, generator)  # (B, T)
    logits = logits_fn(clean.masked_fill(filled, mask_token_id))  # (B, T, V)
    state, p_fill = clean.clone(), torch.zeros(clean.shape, device=clean.device)
    state[filled], p_fill[filled] = su.sample_tokens(logits[filled], temperature, None, n_real, generator)
    return state, filled, p_fill


# -----------------------------------------------------------------------------
# means, standard errors, frontiers

def mean_se(values):
    """(mean, standard error) of the numbers that are not None; SE None from fewer than two, both None from none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean, se = em.mean_and_se(values)
    return mean, se if math.isfinite(se) else None


def summary(values):
    """{'mean', 'se'} of the numbers that are not None (mean_se)."""
    mean, se = mean_se(values)
    return dict(mean=mean, se=se)


def aggregate(per_seed):
    """{key: {'mean', 'se'}} over a list of metric dicts (one per seed) that share their keys."""
    return {key: summary(m[key] for m in per_seed) for key in per_seed[0]}


def line_at(x0, y0, x1, y1, x):
    """The line through (x0, y0) and (x1, y1) at x; the two points' mean when x0 == x1."""
    if x0 == x1:
        return (y0 + y1) / 2.0
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def read_off(entropy, bits, target, tolerance):
    """(bits/char at character entropy `target`, how) for one curve, its points (entropy, bits) in
    temperature order:

    'interpolated'  the first pair of consecutive temperatures whose entropies bracket the target:
                    linear interpolation between them;
    'extrapolated'  the target lies outside the curve's entropy range by at most `tolerance` bits:
                    the line through the two points nearest that end;
    'out of range'  further out: (None, 'out of range').
    """
    e, b = np.asarray(entropy, dtype=np.float64), np.asarray(bits, dtype=np.float64)
    for i in range(len(e) - 1):  # the temperatures (a handful), not positions
        if min(e[i], e[i + 1]) <= target <= max(e[i], e[i + 1]):
            return float(line_at(e[i], b[i], e[i + 1], b[i + 1], target)), 'interpolated'
    if len(e) < 2 or not e.min() - tolerance <= target <= e.max() + tolerance:
        return None, 'out of range'
    by_entropy = np.argsort(e, kind='stable')
    i, j = by_entropy[-2:] if target > e.max() else by_entropy[:2]
    return float(line_at(e[i], b[i], e[j], b[j], target)), 'extrapolated'


def frontier_reading(curves, target, tolerance):
    """`curves`: {seed: (entropies, bits)} in temperature order. Each seed's curve read at `target`
    (read_off); the mean and SE across seeds when every seed's reading is in range, else None."""
    readings = {seed: read_off(e, b, target, tolerance) for seed, (e, b) in curves.items()}
    per_seed = {seed: value for seed, (value, _) in readings.items()}
    in_range = sum(value is not None for value in per_seed.values())
    mean, se = mean_se(per_seed.values()) if in_range == len(per_seed) else (None, None)
    return dict(bits_per_char=mean, se=se, per_seed=per_seed, seeds_in_range=in_range, seeds=len(per_seed),
                how=sorted({how for _, how in readings.values()}))


def frontiers(cells, target, tolerance):
    """{budget: {variant: frontier_reading}} from the cells, one per variant, budget and temperature, each
    with per-seed metrics ({seed: {'char_entropy', 'reference_bits_per_char', ...}})."""
    curves = {}  # budget -> variant -> seed -> (entropies, bits) in temperature order
    for cell in sorted(cells, key=lambda c: c['temperature']):
        by_seed = curves.setdefault(cell['budget'], {}).setdefault(cell['variant'], {})
        for seed, metrics in cell['per_seed'].items():
            entropies, bits = by_seed.setdefault(seed, ([], []))
            entropies.append(metrics['char_entropy'])
            bits.append(metrics['reference_bits_per_char'])
    return {budget: {name: frontier_reading(by_seed, target, tolerance) for name, by_seed in by_variant.items()}
            for budget, by_variant in curves.items()}


def exceeds(difference, se, n_se=SIGNIFICANT_SE):
    """Whether |difference| is more than n_se standard errors; None when the SE is unknown."""
    if difference is None or se is None:
        return None
    return abs(difference) > n_se * se


def paired_difference(a, b):
    """mean(a) - mean(b) for two {seed: value} dicts, with its standard error: from the per-seed
    differences when both have the same seeds (what the seeds share cancels), else from the two
    standard errors as if independent."""
    paired = set(a) == set(b)
    if paired:
        difference, se = mean_se([a[seed] - b[seed] for seed in sorted(a)])
    else:
        (mean_a, se_a), (mean_b, se_b) = mean_se(a.values()), mean_se(b.values())
        difference = mean_a - mean_b
        se = math.hypot(se_a, se_b) if se_a is not None and se_b is not None else None
    return dict(difference=difference, se=se, paired=paired, significant=exceeds(difference, se))


def compare_at_budget(readings, learned):
    """`readings`: {variant name: frontier_reading} at one budget; `learned`: {name: bool}.

    The names ranked by their bits/char at the target (lowest first, out of range last); the best
    variant with a learned remasker and the best without one; their paired difference (learned -
    without); learned_wins: True when the learned one is lower by more than two standard errors."""
    in_range = sorted((name for name, r in readings.items() if r['bits_per_char'] is not None),
                      key=lambda name: readings[name]['bits_per_char'])
    best_learned = next((name for name in in_range if learned[name]), None)
    best_without = next((name for name in in_range if not learned[name]), None)
    out = dict(order=in_range + [name for name in readings if name not in in_range], best_learned=best_learned,
               best_without=best_without, difference=None, learned_wins=None)
    if best_learned and best_without:
        out['difference'] = paired_difference(readings[best_learned]['per_seed'], readings[best_without]['per_seed'])
        significant = out['difference']['significant']
        out['learned_wins'] = None if significant is None else significant and out['difference']['difference'] < 0
    return out
