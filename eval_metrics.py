"""
The numbers evaluate.py reports, as small functions that tests can drive with hand-made inputs.

Model-based (they take `logits_fn`, any callable (B, T) ids -> (B, T, V) float logits, such as
generate.Forward; [MASK] / [WRONG] are always dropped from the distribution, so a model is scored on
the mass it puts on real characters):

    window_elbo_bits      masked-diffusion negative ELBO per validation window, bits per character
    window_bits_per_char  next-character loss of an autoregressive (causal) model per window, bits per character
    paired_gap            the gap between the two on the same windows, with paired standard errors

Detection (scores: p([WRONG]) per position; labels: the position is wrong):

    auroc, precision_recall_f1

Text (plain strings):

    char_entropy, valid_word_share, distinct_ngrams, longest_copied_passage (with CorpusIndex)

See docs/evaluation.md for what each number means.
"""

import functools
import math
import re
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

import sampling_utils as su

LN2 = math.log(2.0)
ELBO_ESTIMATORS = ('count', 'time')


# -----------------------------------------------------------------------------
# log-probabilities of real characters

def char_nll(logits, targets, n_real):
    """(B, T) -log p(target) in nats, the softmax taken over the real characters only
    (ids < n_real: [MASK] and [WRONG] get no mass, as when sampling)."""
    log_probs = F.log_softmax(logits.float()[..., :n_real], dim=-1)  # (B, T, n_real)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def mean_and_se(values):
    """(mean, standard error of the mean) of a 1-D float array."""
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('inf')
    return float(values.mean()), float(se)


# -----------------------------------------------------------------------------
# masked-diffusion negative ELBO

def stratified_uniform(n, generator, device):
    """(n,) draws in (0, 1), one in each of n equal strata, in random order (lower variance than iid)."""
    strata = torch.randperm(n, generator=generator, device=device).double()
    u = (strata + torch.rand(n, generator=generator, device=device, dtype=torch.float64)) / n
    return u.clamp(min=1e-12)


def elbo_masks(B, T, estimator, generator, device, context=0):
    """(masked (B, T) bool, weight (B,) float64) so that weight * sum(masked nll) / (T - context)
    estimates the negative ELBO per character of each row, for the linear schedule (mask probability
    t at time t). The first `context` positions are given: never masked, never scored, so the bound is
    that of the other T - context characters given them.

    'time'   t ~ U(0, 1) (stratified), every scored position masked with probability t, weight 1/t:
             the continuous-time bound as written, E_t[(1/t) sum_masked -log p(x_i | x_masked)].
    'count'  k ~ U{1..T'} (stratified), a uniformly random set of exactly k of the T' scored
             positions, weight T'/k. The same bound with t integrated out: given k masked positions
             (a uniform set of size k), E[1/t; k] = integral C(T',k) t^(k-1) (1-t)^(T'-k) dt = 1/k. Same
             expectation, finite variance (the 1/t weight has an infinite second moment), ~10x fewer
             rows per standard error.
    """
    scored = T - context
    eligible = (torch.arange(T, device=device) >= context).expand(B, T)  # (B, T)
    u = stratified_uniform(B, generator, device)  # (B,)
    if estimator == 'time':
        masked = torch.rand(B, T, generator=generator, device=device, dtype=torch.float64) < u.unsqueeze(1)
        return masked & eligible, 1.0 / u
    if estimator == 'count':
        k = (u * scored).floor().long().clamp(max=scored - 1) + 1  # (B,) in 1..T'
        return su.select_random(eligible, k, generator), scored / k.double()
    raise ValueError(f"unknown ELBO estimator {estimator!r}; use one of {ELBO_ESTIMATORS}")


@torch.no_grad()
def elbo_row_estimates(logits_fn, clean, n_real, mask_token_id, generator, estimator='count', context=0):
    """(B,) one unbiased estimate per row of the negative ELBO in nats per scored character."""
    B, T = clean.shape
    masked, weight = elbo_masks(B, T, estimator, generator, clean.device, context)  # (B, T), (B,)
    nll = char_nll(logits_fn(clean.masked_fill(masked, mask_token_id)), clean, n_real)  # (B, T)
    return (nll.double() * masked).sum(dim=1) * weight / (T - context)


def window_elbo_bits(logits_fn, windows, n_real, mask_token_id, generator, estimator='count', draws=1, context=1,
                     batch_size=32, progress=None):
    """(N,) float64: the negative ELBO of each of `windows` (N, T) in bits per scored character (the
    characters after the first `context`, given), the mean of `draws` independent masks per window.

    Every window is used, so the mean over windows estimates the bound on the whole validation split,
    and two models (or a diffusion model and an autoregressive one, window_bits_per_char) can be
    compared window by window on the same characters. `progress(done, total)` after every batch.
    """
    per_window = torch.zeros(len(windows), dtype=torch.float64)
    rows = windows.repeat(draws, 1)  # (draws * N, T): window i is row i, N + i, 2N + i ...
    for start in range(0, len(rows), batch_size):
        estimates = elbo_row_estimates(logits_fn, rows[start:start + batch_size], n_real, mask_token_id,
                                       generator, estimator, context).cpu()  # (b,) nats
        index = torch.arange(start, start + len(estimates)) % len(windows)
        per_window.index_add_(0, index, estimates / (draws * LN2))
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    return per_window


# -----------------------------------------------------------------------------
# autoregressive loss

@torch.no_grad()
def window_bits_per_char(logits_fn, tokens, n_real, batch_size=64):
    """(N,) float64: mean -log2 p(x_t | x_<t) of a causal model over every position but the first of
    each row of `tokens` (N, L); the first character has no context and is given, as in
    window_elbo_bits with context=1."""
    per_row = []
    for batch in tokens.split(batch_size):
        nll = char_nll(logits_fn(batch)[:, :-1], batch[:, 1:], n_real)  # (b, L-1): position t predicts t+1
        per_row.append(nll.double().mean(dim=1).cpu() / LN2)
    return torch.cat(per_row)


def bits_per_char(logits_fn, tokens, n_real, batch_size=64):
    """The mean of window_bits_per_char: every row has the same length, so this is per character."""
    return float(window_bits_per_char(logits_fn, tokens, n_real, batch_size).mean())


def paired_gap(diffusion_bits, reference_bits):
    """The gap between two per-window scores of the same windows (N,) each: the difference in bits
    per character and the relative gap diffusion / reference - 1, each with its standard error from
    the window-by-window pairs (delta method for the ratio)."""
    d, a = diffusion_bits.double().numpy(), reference_bits.double().numpy()
    difference, difference_se = mean_and_se(d - a)
    ratio = d.mean() / a.mean()
    _, ratio_se = mean_and_se((d - ratio * a) / a.mean())
    return dict(bits_per_char=difference, se=difference_se, relative=float(ratio - 1.0), relative_se=ratio_se)


# -----------------------------------------------------------------------------
# detection of wrong characters

def _flat(values, dtype):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).ravel()


def auroc(scores, labels):
    """Area under the ROC curve: the probability that a random wrong position scores above a random
    right one, ties counting one half (Mann-Whitney U with average ranks). None when either class is empty."""
    scores, labels = _flat(scores, np.float64), _flat(labels, bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each group of equal scores
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average rank of each score
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall_f1(scores, labels, threshold):
    """Flag every position whose score is above `threshold` (as threshold remasking does) and compare
    with the labels. A ratio with a zero denominator is reported as 0.0."""
    flagged, labels = _flat(scores, np.float64) > threshold, _flat(labels, bool)
    tp = int((flagged & labels).sum())
    n_flagged, n_wrong = int(flagged.sum()), int(labels.sum())
    precision = tp / n_flagged if n_flagged else 0.0
    recall = tp / n_wrong if n_wrong else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(precision=precision, recall=recall, f1=f1, flagged=n_flagged, wrong=n_wrong, true_positives=tp)


# -----------------------------------------------------------------------------
# text statistics

def _as_list(texts):
    return [texts] if isinstance(texts, str) else list(texts)


def char_entropy(texts):
    """Entropy in bits of the unigram character distribution of the texts (pooled)."""
    text = ''.join(_as_list(texts))
    if not text:
        return 0.0
    _, counts = np.unique(np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a one-character text gives 0.0, not -0.0


@functools.lru_cache(maxsize=None)
def word_pattern():
    """Runs of letters of any script, inner apostrophes kept (o'er; 'tis -> tis; straight or typographic).
    A letter is a word character that is neither a digit nor '_' ([^\\W\\d_]), or a combining mark
    (Unicode category M: the accents of decomposed text, the vowel signs of Indic scripts), which
    belongs to the letter before it. Built once, on first use (a pass over the code points: ~0.4 s)."""
    marks = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith('M')]
    starts = [c for i, c in enumerate(marks) if i == 0 or marks[i - 1] != c - 1]
    ends = [c for i, c in enumerate(marks) if i == len(marks) - 1 or marks[i + 1] != c + 1]
    mark_class = ''.join(f"\\U{a:08x}-\\U{b:08x}" for a, b in zip(starts, ends))
    letter = f"(?:[^\\W\\d_]|[{mark_class}])"
    return re.compile(f"{letter}+(?:['\u2019]{letter}+)*")


def words(text):
    """Lower-case words: runs of letters of any script (see word_pattern)."""
    return word_pattern().findall(text.lower())


def valid_word_share(texts, vocabulary):
    """Share of the words in the texts (counted with repeats) that are in `vocabulary` (a set of
    lower-case words, e.g. set(words(train_text))). None when the texts hold no word at all."""
    found = [w for text in _as_list(texts) for w in words(text)]
    if not found:
        return None
    return sum(w in vocabulary for w in found) / len(found)


def distinct_ngrams(texts, n=4):
    """Distinct character n-grams / all character n-grams, per text, averaged over the texts
    (1.0: no n-gram repeats; a text that loops over a short pattern scores near 0)."""
    ratios = []
    for text in _as_list(texts):
        grams = [text[i:i + n] for i in range(len(text) - n + 1)]
        if grams:
            ratios.append(len(set(grams)) / len(grams))
    return float(np.mean(ratios)) if ratios else None


# -----------------------------------------------------------------------------
# longest passage copied from the training text: polynomial hashes of substrings, binary search on length

HASH_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2**64
HASH_BASE_INV = pow(HASH_BASE, -1, 2 ** 64)


def _powers(base, n):
    """(n,) uint64: base**0 .. base**(n-1) modulo 2**64 (numpy integer arithmetic wraps around)."""
    factors = np.full(n, base, dtype=np.uint64)
    factors[0] = 1
    with np.errstate(over='ignore'):
        return np.cumprod(factors, dtype=np.uint64)


class SubstringHasher:
    """Hashes of every length-m substring of one text, modulo 2**64, in O(len) numpy operations.

    prefix[i] = sum_{j<i} c_j * B**j, so the substring [i, i+m) has (prefix[i+m] - prefix[i]) * B**-i,
    a value that does not depend on where the substring sits.
    """

    def __init__(self, text):
        codes = np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32).astype(np.uint64) + np.uint64(1)
        with np.errstate(over='ignore'):
            self.prefix = np.concatenate([[np.uint64(0)], np.cumsum(codes * _powers(HASH_BASE, len(codes)),
                                                                      dtype=np.uint64)])
        self.inverse_powers = _powers(HASH_BASE_INV, len(codes))
        self.length = len(codes)

    def hashes(self, m):
        """(length - m + 1,) uint64: the hash of the substring starting at each position."""
        n = self.length - m + 1
        if n <= 0:
            return np.zeros(0, dtype=np.uint64)
        with np.errstate(over='ignore'):
            return (self.prefix[m:m + n] - self.prefix[:n]) * self.inverse_powers[:n]


class CorpusIndex:
    """The training text, ready to answer 'does this length-m substring occur in it?' quickly.

    Sorted hash tables per length are built on demand (about 0.1 s per length for 1M characters)
    and the few most recent are kept.
    """

    def __init__(self, text, keep=8):
        self.text = text
        self.hasher = SubstringHasher(text)
        self.tables, self.keep = {}, keep

    def table(self, m):
        if m not in self.tables:
            if len(self.tables) >= self.keep:
                self.tables.pop(next(iter(self.tables)))
            self.tables[m] = np.sort(self.hasher.hashes(m))  # duplicates do not matter to searchsorted
        return self.tables[m]

    def found(self, hashes, m):
        """(n,) bool: which of `hashes` (of length-m substrings) occur in the text."""
        table = self.table(m)
        if len(table) == 0:
            return np.zeros(len(hashes), dtype=bool)
        at = np.searchsorted(table, hashes).clip(max=len(table) - 1)
        return table[at] == hashes


def longest_copied_passage(texts, index):
    """(length, passage): the longest substring of any of the texts that occurs verbatim in the
    index's text (length 0 and '' when not even one character does).

    Binary search on the length m: a copy of length m contains copies of every shorter length, so
    "some length-m substring of the texts occurs in the corpus" is monotone in m. Each step hashes
    the texts' and the corpus's length-m substrings and matches them through a sorted table; the
    passage found is checked with a plain `in`, so a hash collision cannot report a false copy.
    """
    hashers = [(text, SubstringHasher(text)) for text in _as_list(texts) if text]

    def first_copy(m):
        for text, hasher in hashers:
            hit = np.flatnonzero(index.found(hasher.hashes(m), m))
            for start in hit[:4]:  # the first true hit (more than one candidate only after a collision)
                if text[start:start + m] in index.text:
                    return text[start:start + m]
        return None

    lo, hi, best = 0, max((len(t) for t, _ in hashers), default=0), ''
    while lo < hi:  # invariant: a copy of length lo exists (best), none longer than hi
        m = (lo + hi + 1) // 2
        passage = first_copy(m)
        if passage is None:
            hi = m - 1
        else:
            lo, best = m, passage
    return lo, best
