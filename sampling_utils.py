"""
Building blocks shared by the generation loops in generate.py: the masked diffusion loop
(unmask / remask), the field's samplers (mdlm / confidence / remdm: reveal, and for remdm remask) and
the edit loop (substitute / delete / insert / re-noise).

Everything here works on whole batches at once: tokens are (B, T) int64 tensors, scores are
(B, T) float tensors, selections are (B, T) bool masks. No function loops over positions in
Python and none calls .item() per position, so the per-iteration cost is a handful of kernels.

Randomness always comes from an explicit torch.Generator, so one seed gives one text.
"""

import math

import torch
import torch.nn.functional as F

SCHEDULES = ('linear', 'cosine', 'exponential')


# -----------------------------------------------------------------------------
# schedules

def schedule_value(kind, start, end, progress):
    """Interpolate from `start` (progress 0) to `end` (progress 1).

    linear:      start + (end - start) * p
    cosine:      end + (start - end) * (1 + cos(pi * p)) / 2      (slow, fast, slow)
    exponential: start * (end / start) ** p                       (geometric; needs start, end > 0)
    """
    p = min(max(float(progress), 0.0), 1.0)
    if kind == 'linear':
        return start + (end - start) * p
    if kind == 'cosine':
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))
    if kind == 'exponential':
        return start * (end / start) ** p
    raise ValueError(f"unknown schedule {kind!r}; use one of {SCHEDULES}")


def check_schedule(name, kind, start, end):
    """The reason a schedule setting cannot work, or None."""
    if kind not in SCHEDULES:
        return f"{name}={kind!r} is not a schedule; use one of {', '.join(SCHEDULES)}"
    if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
        return f"{name}: ratios must lie in [0, 1] (got {start} -> {end})"
    if kind == 'exponential' and (start <= 0 or end <= 0):
        return f"{name}='exponential' needs both ratios > 0 (got {start} -> {end}); use 'linear' or 'cosine' to reach 0"
    return None


def scheduled_count(kind, start, end, progress, span):
    """How many of `span` positions the schedule asks for at `progress` (a plain int)."""
    return int(round(schedule_value(kind, start, end, progress) * span))


def masked_counts(kind, start, end, iterations, span, end_at):
    """[M(0), ..., M(iterations)]: how many of `span` positions are masked going into each iteration.

    M(0) = span (nothing has been generated yet) and M(iterations) = 0 (the last iteration leaves
    nothing masked). In between, the masked share follows `kind` from `start` to `end`, reaching `end`
    going into iteration `end_at`. `start` is the share masked when generation starts: at start = 1
    that is iteration 0 itself; at start < 1 iteration 0 is a first fill of the whole span, of which
    round(start * span) positions are masked again, and the schedule runs from iteration 1.
    """
    offset = 0 if start >= 1 else 1
    counts = [span]
    for it in range(1, iterations):
        counts.append(scheduled_count(kind, start, end, (it - offset) / max(end_at - offset, 1), span))
    return counts + [0]


# -----------------------------------------------------------------------------
# sampling tokens

def sample_tokens(logits, temperature=1.0, top_k=None, n_real=None, generator=None):
    """Draw one token per row of `logits` (..., V); special ids (>= n_real) are never produced.

    Returns tokens (...) int64 and p_chosen (...) float32, the probability the model (temperature 1,
    no top_k, specials excluded) gives the chosen token. temperature 0 means argmax.
    """
    logits = logits.float()[..., :n_real]  # [MASK] and [WRONG] are the last ids: drop them
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        scaled = logits.double() / temperature
        if top_k:
            kth = torch.topk(scaled, min(int(top_k), scaled.shape[-1]), dim=-1).values[..., -1:]
            scaled = scaled.masked_fill(scaled < kth, float('-inf'))
        tokens = sample_categorical(scaled, generator)
    p_chosen = (logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(dim=-1)).exp()
    return tokens, p_chosen


def sample_categorical(logits, generator=None):
    """One draw per row of float64 `logits` (..., V) by inverting the float64 CDF.

    Exact to float64 resolution (float32 Gumbel-max noise silently loses rare tokens) and about four
    times faster than torch.multinomial on CPU. Tokens with probability 0 (top_k) are never drawn.
    """
    assert logits.dtype == torch.float64
    cdf = F.softmax(logits, dim=-1).cumsum(dim=-1)  # (..., V)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=torch.float64, device=cdf.device)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)  # entries <= u: skips empty tokens
    return index.squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def wrong_token_probability(logits, wrong_token_id):
    """(...) p([WRONG]) under `logits` (..., V), the softmax taken over the whole vocabulary."""
    return (logits[..., wrong_token_id] - logits.logsumexp(dim=-1)).exp()


def token_probability(logits, tokens, n_real):
    """(...) the model's probability of `tokens` under `logits` (..., V), special tokens excluded."""
    logits = logits.float()[..., :n_real]
    return (logits.gather(-1, tokens.clamp(max=n_real - 1).unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)).exp()


def random_real_tokens(shape, n_real, generator, device):
    """Uniform random non-special tokens: the placeholder and re-noise characters."""
    return torch.randint(0, n_real, shape, generator=generator, device=device)


# -----------------------------------------------------------------------------
# choosing positions: each returns a (B, T) bool mask

def select_top_k(scores, eligible, k):
    """Per row, the k eligible positions with the highest score (fewer when fewer are eligible).

    scores: (B, T) float; eligible: (B, T) bool; k: int or (B,) int tensor.
    Ties go to the lower position (stable sort), so results are reproducible.
    """
    B, T = scores.shape
    k = torch.as_tensor(k, device=scores.device).expand(B)
    ranked = scores.float().masked_fill(~eligible, float('-inf'))
    order = ranked.argsort(dim=1, descending=True, stable=True)  # (B, T) positions, best first
    take = torch.arange(T, device=scores.device).unsqueeze(0) < k.unsqueeze(1)  # (B, T) by rank
    chosen = torch.zeros_like(eligible).scatter(1, order, take)
    return chosen & eligible


def select_random(eligible, k, generator):
    """Per row, k eligible positions chosen uniformly at random."""
    noise = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    return select_top_k(noise, eligible, k)


def select_threshold(scores, eligible, threshold):
    """Every eligible position whose score is above `threshold`."""
    return eligible & (scores > threshold)


def select_mixed(scores, eligible, k, threshold, generator):
    """k positions per row: the above-threshold candidates first, highest score first,
    topped up with random eligible positions; purely random when a row has no candidates."""
    candidates = select_threshold(scores, eligible, threshold)
    noise = torch.rand(scores.shape, generator=generator, device=scores.device)  # [0, 1)
    # candidates rank above every non-candidate (score + 2 > 1 > noise); among themselves by score
    ranking = torch.where(candidates, scores.float() + 2.0, noise)
    return select_top_k(ranking, eligible, k)


# -----------------------------------------------------------------------------
# edit-loop operations (sequences of one shared length: the batch never needs padding)

def apply_re_noise(tokens, eligible, fraction, n_real, generator):
    """Replace round(fraction * editable) eligible tokens per row by random characters.

    Returns (tokens, noised mask). `fraction` counts against the editable span (eligible.sum per row).
    """
    span = eligible.sum(dim=1)  # (B,)
    k = torch.round(span.double() * fraction).long()
    chosen = select_random(eligible, k, generator)
    noise = random_real_tokens(tokens.shape, n_real, generator, tokens.device)
    return torch.where(chosen, noise, tokens), chosen


def dilate(mask, distance):
    """(B, T) bool: positions within `distance` of a True position."""
    if distance <= 0:
        return mask
    grown = F.max_pool1d(mask.float().unsqueeze(1), kernel_size=2 * distance + 1, stride=1, padding=distance)
    return grown.squeeze(1) > 0


def delete_and_insert(tokens, delete, insert, fill, carry=()):
    """Apply deletions and insertions in one pass, all given in the frame of `tokens`.

    tokens: (B, L); delete: (B, L) bool, the same count in every row; insert: (B, L + 1) bool,
    True at gap j means "a new token before position j" (j = L appends), the same count in every
    row; fill: (B, L + 1) the token to put in each inserted gap. `carry` are extra (B, L) tensors
    that travel with their tokens (inserted slots get 0 / False).

    Returns (new_tokens (B, L'), inserted (B, L') bool, [carried (B, L')...]), L' = L - n_del + n_ins.
    Works by interleaving gaps and tokens into one stream of 2L + 1 slots and keeping the valid ones:
    every row keeps the same number, so one nonzero + view gives each row's slots, and a gather the batch.
    """
    B, L = tokens.shape
    n_new = L - int(delete[0].sum()) + int(insert[0].sum())

    def interleave(gap_values, token_values):  # (B, L+1), (B, L) -> (B, 2L+1)
        stream = gap_values.new_zeros((B, 2 * L + 1))
        stream[:, 0::2] = gap_values
        stream[:, 1::2] = token_values
        return stream

    keep = interleave(insert, ~delete)  # (B, 2L+1) bool
    slots = keep.nonzero()[:, 1].view(B, n_new)  # (B, L') stream slots kept, in order (row-major)
    new_tokens = interleave(fill.to(tokens.dtype), tokens).gather(1, slots)
    inserted = slots % 2 == 0  # even slots are gaps
    carried = [interleave(torch.zeros((B, L + 1), dtype=c.dtype, device=c.device), c).gather(1, slots)
               for c in carry]
    return new_tokens, inserted, carried
