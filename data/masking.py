"""
Vectorised masking kernels, with plain reference loops; providers use them through data/positions.py.

Every kernel takes a CPU `torch.Generator` and returns CPU tensors of shape (N, T):
N rows (sequences) of T positions (`block_size`). A True entry in a mask means "corrupt
this position".

Each kernel is split into "draw the random numbers" and "a deterministic transform of
those numbers". The `reference_*` functions make exactly the same draws, in the same order,
and then do the transform with plain Python loops, so tests can assert that the fast path
and the obviously correct path give *identical* masks for the same seed.

Probabilities are compared against 14-bit uniform integers (`uniform_bits`): a probability p
becomes the integer threshold round(p * 2**14), so every probability is applied with a
resolution of 2**-14 (about 6e-5). Sixteen bits of a 64-bit random word are four times cheaper
to draw than a float32 uniform, and integer thresholds let the hot comparisons run as
subtract-and-shift, which is several times faster than torch's comparison kernels on CPU.

Stage dicts (see docs/architecture.md):
    {'type': 'random', 'max_masked_ratio': r}
    {'type': 'sticky', 'target_masked_ratio': r, 'p1_probability': p1, 'p2_probability': p2}
    {'type': 'span', 'spans_count': k}
    {'type': 'uniform'}                         (the masked fraction t ~ U(0, 1], stratified per batch)
Any stage may also carry 'val_loss_stale_count' (a positive integer): the sequential curriculum's
patience for that stage (see curriculum.py); the kernels ignore it.
"""

import difflib
import math

import torch

from common import UserError

PROBABILITY_BITS = 14
PROBABILITY_ONE = 1 << PROBABILITY_BITS  # the threshold of probability 1.0
BERT_MASK, BERT_RANDOM, BERT_KEEP = 0, 1, 2  # branch codes of bert_branches; -1 = not selected
BERT_SHARES = (0.8, 0.1, 0.1)

# the parameters every stage type needs (their allowed ranges: _parameter_problem)
STAGE_PARAMETERS = {
    'random': ('max_masked_ratio',),
    'sticky': ('target_masked_ratio', 'p1_probability', 'p2_probability'),
    'span': ('spans_count',),
    'uniform': (),
}
# fields any stage may carry besides its parameters: read by the curriculum, not by the kernels
OPTIONAL_STAGE_FIELDS = ('val_loss_stale_count',)


# ----------------------------------------------------------------------------------------------
# random numbers as 14-bit integers

def random_lanes(shape, dtype, generator):
    """Tensor of `shape` whose every bit is random: int64 words split into int16 / int32 lanes.

    One 64-bit draw yields four int16 (or two int32) values, several times cheaper than
    torch.rand or torch.randint per value.
    """
    lanes_per_word = 8 // torch.empty(0, dtype=dtype).element_size()
    n_values = math.prod(shape)
    words = torch.empty(-(-n_values // lanes_per_word), dtype=torch.int64)
    words.random_(-2 ** 63, None, generator=generator)  # the full int64 range: all 64 bits random
    return words.view(dtype)[:n_values].view(shape)


def uniform_bits(shape, generator):
    """Independent uniform integers in [0, 2**14), as int16 of the given shape.

    The top two bits of every lane are cleared, so `bits - threshold` can never overflow int16
    for thresholds in [0, 2**14].
    """
    return random_lanes(shape, torch.int16, generator) & (PROBABILITY_ONE - 1)


def probability_threshold(probability):
    """The integer threshold for `uniform_bits`: bits < threshold happens with `probability`.

    A float gives an int; a float tensor gives an int16 tensor of the same shape.
    """
    if isinstance(probability, torch.Tensor):
        scaled = (probability.double() * PROBABILITY_ONE).round()
        return scaled.clamp(0, PROBABILITY_ONE).to(torch.int16)
    return min(max(math.floor(probability * PROBABILITY_ONE + 0.5), 0), PROBABILITY_ONE)


def below_threshold(bits, threshold):
    """bits < threshold, elementwise, for bits from `uniform_bits` and threshold in [0, 2**14].

    Computed as the sign bit of (bits - threshold): the difference stays within int16, and
    subtract + shift is much faster than torch's `<` on CPU.
    """
    return ((bits - threshold) >> 15).bool()


def bernoulli_mask(n_rows, block_size, probability, generator):
    """Every position masked independently with `probability` (the default, non-stage mode)."""
    bits = uniform_bits((n_rows, block_size), generator)  # (N, T)
    return below_threshold(bits, probability_threshold(probability))


# ----------------------------------------------------------------------------------------------
# choosing exactly k of a row's candidate positions (sticky trimming and the round-cap fill)

def choose_exactly(candidates, counts, generator):
    """Keep exactly counts[i] of row i's candidate positions, a uniformly random subset.

    candidates: (n, T) bool; counts: (n,) int with counts[i] <= candidates[i].sum().
    Draws one random permutation over all candidates (row-major order) as priorities and
    keeps each row's `counts[i]` lowest priorities: a single 1-D sort of the candidates only,
    which is much cheaper than sorting every full row.
    """
    n_rows, block_size = candidates.shape
    flat = candidates.reshape(-1).nonzero().squeeze(1)  # (M,) row-major positions
    n_candidates = flat.numel()
    rows = flat // block_size  # (M,), already sorted
    priority = torch.randperm(n_candidates, generator=generator)  # (M,)
    order = torch.argsort(rows * n_candidates + priority)  # rows stay grouped, random order inside
    per_row = candidates.sum(1, dtype=torch.int64)  # (n,)
    kept_end = torch.cumsum(per_row, 0) - per_row + counts  # (n,) where each row's kept block ends
    keep = torch.arange(n_candidates) < kept_end[rows]  # (M,) in sorted order
    chosen = torch.zeros(n_rows * block_size, dtype=torch.bool)
    chosen[flat[order][keep]] = True
    return chosen.view(n_rows, block_size)


def reference_choose_exactly(candidates, counts, generator):
    """Loop version of choose_exactly with the same draw; candidates and counts are lists."""
    n_candidates = sum(sum(row) for row in candidates)
    priority = torch.randperm(n_candidates, generator=generator).tolist()
    chosen, offset = [], 0
    for row, count in zip(candidates, counts):
        positions = [t for t, is_candidate in enumerate(row) if is_candidate]
        row_priority = priority[offset:offset + len(positions)]
        offset += len(positions)
        ranked = [t for _, t in sorted(zip(row_priority, positions))]
        kept = set(ranked[:count])
        chosen.append([t in kept for t in range(len(row))])
    return chosen


# ----------------------------------------------------------------------------------------------
# random stage: a per-row ratio, then independent positions

def _random_mask_draws(n_rows, block_size, max_masked_ratio, generator):
    """Per-row thresholds (N, 1) for ratios r ~ U(0, max], and the position bits (N, T)."""
    u = torch.rand(n_rows, 1, generator=generator, dtype=torch.float64)  # (N, 1) in [0, 1)
    ratios = max_masked_ratio * (1.0 - u)  # (N, 1) in (0, max]
    bits = uniform_bits((n_rows, block_size), generator)  # (N, T)
    return probability_threshold(ratios), bits


def random_mask(n_rows, block_size, max_masked_ratio, generator):
    """Each row draws its ratio r ~ U(0, max_masked_ratio], then masks each position with r.

    So the mean masked fraction is max_masked_ratio / 2, and every row's expected fraction
    lies in (0, max_masked_ratio].
    """
    row_thresholds, bits = _random_mask_draws(n_rows, block_size, max_masked_ratio, generator)
    return below_threshold(bits, row_thresholds)  # (N, T)


def reference_random_mask(n_rows, block_size, max_masked_ratio, generator):
    row_thresholds, bits = _random_mask_draws(n_rows, block_size, max_masked_ratio, generator)
    mask = torch.zeros(n_rows, block_size, dtype=torch.bool)
    for i in range(n_rows):
        threshold = int(row_thresholds[i, 0])
        for t in range(block_size):
            mask[i, t] = int(bits[i, t]) < threshold
    return mask


# ----------------------------------------------------------------------------------------------
# sticky stage: masked positions attract their neighbours

def sticky_target_count(target_masked_ratio, block_size):
    """round(target * T) masked positions per row (halves round up), at least 1 if target > 0."""
    count = math.floor(target_masked_ratio * block_size + 0.5)
    if target_masked_ratio > 0:
        count = max(count, 1)
    return min(count, block_size)


def sticky_max_rounds(block_size):
    # Enough for one cluster to grow across the whole block even with p2 around 0.5; rows that
    # are still short after this many rounds get the rest filled uniformly (see sticky_mask).
    return block_size


def _sticky_new_positions(work, t1, t2, generator):
    """One round for every row of `work` (n, T): the positions newly masked this round."""
    bits = uniform_bits(work.shape, generator)  # (n, T)
    near_masked = torch.zeros_like(work)  # (n, T): a left or right neighbour is masked
    near_masked[:, 1:] = work[:, :-1]
    near_masked[:, :-1] |= work[:, 1:]
    thresholds = t1 + near_masked.to(torch.int16) * (t2 - t1)  # (n, T): p2 next to a mask, else p1
    return below_threshold(bits, thresholds) & ~work


def _seed_empty_rows(work, counts, generator):
    """Mask one uniformly random position in every row that is still empty after a round.

    With a tiny p1 a row can wait many rounds for its first masked position; since which round
    the first seed lands in does not change where it lands (uniform) nor how clusters grow
    afterwards, skipping that wait keeps the shape of the masks and bounds the number of rounds.
    """
    empty_rows = (counts == 0).nonzero().squeeze(1)  # (e,)
    if empty_rows.numel() == 0:
        return
    positions = torch.randint(0, work.shape[1], (empty_rows.numel(),), generator=generator)
    work[empty_rows, positions] = True
    counts[empty_rows] = 1


def sticky_mask(n_rows, block_size, target_masked_ratio, p1_probability, p2_probability, generator):
    """Clustered masks with exactly `sticky_target_count(target, T)` masked positions per row.

    Rounds run over all unfinished rows at once. In each round every unmasked position is
    masked with p2 if its left or right neighbour is already masked, else with p1. A row
    finishes in the round that takes it to the target; the overshoot of that round is trimmed
    by keeping a uniformly random subset of the round's new positions, so the count is exact.
    The trimming of all rows happens in one `choose_exactly` call at the end (one sort instead
    of one per round). Safety: a row still empty after a round gets one random seed
    (`_seed_empty_rows`), and rows unfinished after `sticky_max_rounds(T)` rounds are topped up
    with uniformly random unmasked positions, so the loop always ends.
    Call it on many rows at once (a whole file): the cost per round is mostly fixed overhead.
    """
    target = sticky_target_count(target_masked_ratio, block_size)
    mask = torch.zeros(n_rows, block_size, dtype=torch.bool)
    if target == 0 or n_rows == 0:
        return mask
    t1, t2 = probability_threshold(p1_probability), probability_threshold(p2_probability)
    # what the final choose_exactly picks from, and how many, for every row
    last_candidates = torch.zeros(n_rows, block_size, dtype=torch.bool)
    last_counts = torch.zeros(n_rows, dtype=torch.int32)
    rows = torch.arange(n_rows)  # which output row each working row is
    work = torch.zeros(n_rows, block_size, dtype=torch.bool)  # (n, T) masks being grown
    counts = torch.zeros(n_rows, dtype=torch.int32)  # (n,)
    for _ in range(sticky_max_rounds(block_size)):
        new = _sticky_new_positions(work, t1, t2, generator)  # (n, T)
        new_counts = counts + new.sum(1, dtype=torch.int32)  # int32: bool sums to int64 are slow
        done = new_counts >= target  # (n,)
        if bool(done.any()):
            finished = rows[done]
            mask[finished] = work[done]
            last_candidates[finished] = new[done]
            last_counts[finished] = target - counts[done]
            unfinished = ~done
            rows, work = rows[unfinished], work[unfinished]
            new, new_counts = new[unfinished], new_counts[unfinished]
            if rows.numel() == 0:
                break
        work |= new
        counts = new_counts
        _seed_empty_rows(work, counts, generator)
    if rows.numel():  # the round cap: top up from the row's unmasked positions
        mask[rows] = work
        last_candidates[rows] = ~work
        last_counts[rows] = target - counts
    return mask | choose_exactly(last_candidates, last_counts, generator)


def _reference_sticky_round(work, bits, t1, t2):
    """The new positions of one row (lists of bools / ints)."""
    block_size = len(work)
    new = []
    for t in range(block_size):
        near_masked = (t > 0 and work[t - 1]) or (t < block_size - 1 and work[t + 1])
        threshold = t2 if near_masked else t1
        new.append(not work[t] and bits[t] < threshold)
    return new


def reference_sticky_mask(n_rows, block_size, target_masked_ratio, p1_probability,
                          p2_probability, generator):
    """Row-by-row, position-by-position version of sticky_mask with the same draws."""
    target = sticky_target_count(target_masked_ratio, block_size)
    if target == 0 or n_rows == 0:
        return torch.zeros(n_rows, block_size, dtype=torch.bool)
    t1, t2 = probability_threshold(p1_probability), probability_threshold(p2_probability)
    work = [[False] * block_size for _ in range(n_rows)]
    last_candidates, last_counts = [None] * n_rows, [0] * n_rows
    active = list(range(n_rows))
    for _ in range(sticky_max_rounds(block_size)):
        if not active:
            break
        bits = uniform_bits((len(active), block_size), generator).tolist()
        still_active = []
        for row, row_bits in zip(active, bits):
            new = _reference_sticky_round(work[row], row_bits, t1, t2)
            if sum(work[row]) + sum(new) >= target:
                last_candidates[row], last_counts[row] = new, target - sum(work[row])
            else:
                work[row] = [a or b for a, b in zip(work[row], new)]
                still_active.append(row)
        active = still_active
        empty = [row for row in active if not any(work[row])]
        if empty:
            positions = torch.randint(0, block_size, (len(empty),), generator=generator).tolist()
            for row, position in zip(empty, positions):
                work[row][position] = True
    for row in active:  # the round cap
        last_candidates[row] = [not m for m in work[row]]
        last_counts[row] = target - sum(work[row])
    chosen = reference_choose_exactly(last_candidates, last_counts, generator)
    return torch.tensor([[a or b for a, b in zip(w, c)] for w, c in zip(work, chosen)])


# ----------------------------------------------------------------------------------------------
# span stage: a few contiguous masked spans per row

def _span_cut_draws(n_rows, block_size, spans_count, generator):
    """2 * spans_count uniform draws per row in [0, T - 2k + 1] (unsorted), (N, 2k)."""
    n_cuts = 2 * spans_count
    if n_cuts > block_size + 1:
        raise UserError(f"spans_count={spans_count} needs block_size >= {n_cuts - 1}; "
                        f"got block_size={block_size}")
    return torch.randint(0, block_size - n_cuts + 2, (n_rows, n_cuts), generator=generator)


def span_mask(n_rows, block_size, spans_count, generator):
    """Exactly `spans_count` non-empty, non-touching masked spans per row.

    Cut points: 2k draws v uniform in [0, T - 2k + 1], sorted, plus their rank (c_i = v_(i) + i),
    which makes them strictly increasing in [0, T]; span j covers [c_2j, c_2j+1). Adding the
    rank gives every span and every gap between spans at least one position, so each row has
    exactly k runs. Apart from that minimum, the lengths of the 2k + 1 pieces (gap, span, gap,
    ..., gap) are the spacings of uniform order statistics (a broken-stick split), so on average
    about k / (2k + 1) of a row is masked: a third for one span, approaching a half for many.
    """
    cut_draws = _span_cut_draws(n_rows, block_size, spans_count, generator)  # (N, 2k)
    cuts = cut_draws.sort(dim=1).values + torch.arange(2 * spans_count)  # (N, 2k), strictly increasing
    # +1 where a span starts, -1 where it ends; the running sum is 1 inside spans, 0 outside
    edges = torch.zeros(n_rows, block_size + 1, dtype=torch.int8)  # (N, T + 1)
    edges.scatter_(1, cuts[:, 0::2], 1)
    edges.scatter_(1, cuts[:, 1::2], -1)
    return torch.cumsum(edges, 1, dtype=torch.int8)[:, :block_size].bool()  # (N, T)


def reference_span_mask(n_rows, block_size, spans_count, generator):
    cut_draws = _span_cut_draws(n_rows, block_size, spans_count, generator).tolist()
    mask = torch.zeros(n_rows, block_size, dtype=torch.bool)
    for i, draws in enumerate(cut_draws):
        cuts = [v + rank for rank, v in enumerate(sorted(draws))]
        for start, end in zip(cuts[0::2], cuts[1::2]):
            for t in range(start, end):
                mask[i, t] = True
    return mask


# ----------------------------------------------------------------------------------------------
# uniform stage: the masked fraction t ~ U(0, 1], stratified over the rows of each batch (MDLM)

def _uniform_mask_draws(batch_of_row, block_size, generator):
    """The draws of uniform_mask: stratum priorities (N,), jitter (N,) float64 in [0, 1), position bits (N, T)."""
    n_rows = batch_of_row.numel()
    priority = torch.randperm(n_rows, generator=generator)  # (N,) which row of a batch takes which stratum
    jitter = torch.rand(n_rows, generator=generator, dtype=torch.float64)  # (N,) where in its stratum
    bits = uniform_bits((n_rows, block_size), generator)  # (N, T)
    return priority, jitter, bits


def stratified_ratios(batch_of_row, priority, jitter):
    """t (N,) float64 in (0, 1]: the n rows of each batch get one t in each stratum (j/n, (j+1)/n].

    batch_of_row (N,) long: the batch of every row (any order); the strata go to a batch's rows in
    the order of `priority` (a random permutation), so which row gets the low t is random, and
    t = (j + 1 - jitter) / n places it uniformly inside stratum j. Every batch then covers (0, 1]
    evenly: the mean masked fraction of a batch varies far less than with independent draws.
    """
    n_rows = batch_of_row.numel()
    sizes = torch.bincount(batch_of_row)  # (n_batches,)
    starts = torch.cumsum(sizes, 0) - sizes  # (n_batches,) where each batch starts once sorted
    order = torch.argsort(batch_of_row * n_rows + priority)  # (N,) grouped by batch, priority order inside
    strata = torch.empty(n_rows, dtype=torch.int64)
    strata[order] = torch.arange(n_rows) - starts[batch_of_row[order]]  # rank inside the batch
    return (strata.double() + 1.0 - jitter) / sizes[batch_of_row].double()


def uniform_mask(batch_of_row, block_size, generator):
    """Each row draws t ~ U(0, 1], stratified over the rows of its batch (stratified_ratios), then
    masks each position independently with probability t: the linear-schedule forward process of
    masked diffusion (MDLM's low-discrepancy sampler). Mean masked fraction 1/2; the masked count k
    of a row is uniform on 0..T (a binomial count under a uniform t)."""
    priority, jitter, bits = _uniform_mask_draws(batch_of_row, block_size, generator)
    ratios = stratified_ratios(batch_of_row, priority, jitter)  # (N,)
    return below_threshold(bits, probability_threshold(ratios).unsqueeze(1))  # (N, T)


def reference_uniform_mask(batch_of_row, block_size, generator):
    priority, jitter, bits = _uniform_mask_draws(batch_of_row, block_size, generator)
    batches, priority, jitter = batch_of_row.tolist(), priority.tolist(), jitter.tolist()
    mask = torch.zeros(len(batches), block_size, dtype=torch.bool)
    for batch in sorted(set(batches)):
        rows = sorted((i for i, b in enumerate(batches) if b == batch), key=lambda i: priority[i])
        for stratum, i in enumerate(rows):
            t = (stratum + 1 - jitter[i]) / len(rows)
            threshold = probability_threshold(t)
            for position in range(block_size):
                mask[i, position] = int(bits[i, position]) < threshold
    return mask


# ----------------------------------------------------------------------------------------------
# stages: dispatch, validation, assignment of rows to stages

def stage_mask(stage, n_rows, block_size, generator, batch_of_row=None):
    """The (N, T) mask of one stage dict (see the module docstring for the fields).

    batch_of_row (N,): the batch of each row, for the stages that treat a batch's rows together
    (uniform: stratified t); None: all N rows are one batch.
    """
    kind = stage['type']
    if kind == 'uniform':
        if batch_of_row is None:
            batch_of_row = torch.zeros(n_rows, dtype=torch.long)
        return uniform_mask(batch_of_row, block_size, generator)
    if kind == 'random':
        return random_mask(n_rows, block_size, stage['max_masked_ratio'], generator)
    if kind == 'sticky':
        return sticky_mask(n_rows, block_size, stage['target_masked_ratio'],
                           stage['p1_probability'], stage['p2_probability'], generator)
    if kind == 'span':
        return span_mask(n_rows, block_size, stage['spans_count'], generator)
    raise UserError(f"unknown stage type {kind!r}; allowed: {', '.join(map(repr, STAGE_PARAMETERS))}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parameter_problem(name, value, block_size):
    """What is wrong with one stage parameter (a phrase), or None when it is fine."""
    if name in ('spans_count', 'val_loss_stale_count'):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return 'must be a positive integer'
        if name == 'spans_count' and block_size is not None and 2 * value > block_size + 1:
            return f'must be at most {(block_size + 1) // 2} for block_size={block_size}'
        return None
    if not _is_number(value):
        return 'must be a number'
    if name == 'p2_probability':
        return None if 0 <= value <= 1 else 'must be in [0, 1]'
    return None if 0 < value <= 1 else 'must be in (0, 1]'


def _validate_stage(stage, where, block_size):
    kinds = ', '.join(repr(k) for k in STAGE_PARAMETERS)
    if not isinstance(stage, dict):
        raise UserError(f"{where} must be a dict with a 'type' ({kinds}); got {stage!r}")
    kind = stage.get('type')
    if kind not in STAGE_PARAMETERS:
        raise UserError(f"{where}['type'] is {kind!r}; allowed: {kinds}")
    needed = STAGE_PARAMETERS[kind]
    allowed = needed + OPTIONAL_STAGE_FIELDS
    for name in stage:
        if name != 'type' and name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ''
            takes = ', '.join(needed) if needed else 'no parameters'
            raise UserError(f"{where} has unknown field {name!r}{hint}; a {kind!r} stage takes {takes} "
                            f"(and optionally {', '.join(OPTIONAL_STAGE_FIELDS)})")
    for name in needed:
        if name not in stage:
            raise UserError(f"{where} ({kind!r} stage) is missing {name!r}; "
                            f"it needs {', '.join(needed)}")
    for name in allowed:
        problem = _parameter_problem(name, stage[name], block_size) if name in stage else None
        if problem:
            raise UserError(f"{where}[{name!r}] {problem}; got {stage[name]!r}")


def validate_stages(stages, key, block_size=None):
    """Raise UserError (one line naming e.g. 'unmasking_stages[2]') for a bad stage list.

    Ratios must be in (0, 1], p1_probability in (0, 1], p2_probability in [0, 1],
    spans_count a positive integer (at most (block_size + 1) // 2 when block_size is given),
    val_loss_stale_count (optional, any stage) a positive integer.
    Unknown fields are errors too, so a misspelt parameter cannot pass silently.
    """
    if not isinstance(stages, (list, tuple)):
        raise UserError(f"{key} must be a list of stage dicts; got {stages!r}")
    if not stages:
        raise UserError(f"{key} is empty; give at least one stage, "
                        f"e.g. [{{'type': 'random', 'max_masked_ratio': 0.5}}]")
    for index, stage in enumerate(stages):
        _validate_stage(stage, f"{key}[{index}]", block_size)


def _stage_assignment_draws(n_rows, n_stages, generator):
    """The stage of row 0 before shuffling, and a random permutation used as shuffle priorities."""
    first_stage = int(torch.randint(0, n_stages, (1,), generator=generator))
    priority = torch.randperm(n_rows, generator=generator)  # (N,)
    return first_stage, priority


def assign_stages(n_rows, n_stages, batch_size, generator):
    """The stage index of every row, (N,) long, spread evenly over every batch.

    Before shuffling, row j gets stage (first + j) % n_stages, a cycle that starts at a random
    stage: any window of consecutive rows, so every batch and the whole file, holds each stage
    floor(len / n_stages) or one more times, every batch holds every stage when
    batch_size >= n_stages, the leftover slots rotate from batch to batch, and the random start
    keeps any stage from being the short one file after file. Then rows are shuffled within
    each batch of `batch_size` consecutive rows (the last batch may be partial).
    """
    first_stage, priority = _stage_assignment_draws(n_rows, n_stages, generator)
    cyclic = (torch.arange(n_rows) + first_stage) % n_stages  # (N,)
    batch_index = torch.arange(n_rows) // batch_size  # (N,)
    within_batch_order = torch.argsort(batch_index * n_rows + priority)  # (N,), keys are distinct
    return cyclic[within_batch_order]


def reference_assign_stages(n_rows, n_stages, batch_size, generator):
    first_stage, priority = _stage_assignment_draws(n_rows, n_stages, generator)
    priority = priority.tolist()
    stages = [0] * n_rows
    for start in range(0, n_rows, batch_size):
        batch_rows = list(range(start, min(start + batch_size, n_rows)))
        shuffled = sorted(batch_rows, key=lambda row: priority[row])
        for row, source in zip(batch_rows, shuffled):
            stages[row] = (first_stage + source) % n_stages
    return torch.tensor(stages, dtype=torch.long)


def staged_masks(stages, n_rows, block_size, batch_size, generator):
    """Masks for a file whose rows mix all `stages`: ((N, T) bool, (N,) long stage index).

    A uniform stage stratifies its t over its own rows of each batch."""
    stage_of_row = assign_stages(n_rows, len(stages), batch_size, generator)  # (N,)
    mask = torch.zeros(n_rows, block_size, dtype=torch.bool)
    for index, stage in enumerate(stages):
        rows = (stage_of_row == index).nonzero().squeeze(1)
        if rows.numel():
            mask[rows] = stage_mask(stage, rows.numel(), block_size, generator, rows // batch_size)
    return mask, stage_of_row


def single_stage_masks(stages, stage_index, n_rows, block_size, batch_size, generator):
    """Masks for a file whose rows all come from stages[stage_index] (the sequential curriculum):
    ((N, T) bool, (N,) long stage index, all equal)."""
    batch_of_row = torch.arange(n_rows) // batch_size  # (N,)
    mask = stage_mask(stages[stage_index], n_rows, block_size, generator, batch_of_row)
    return mask, torch.full((n_rows,), stage_index, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# BERT 80/10/10 corruption

def bert_branches(mask, generator):
    """Which BERT branch each position takes, (N, T) int8.

    -1 where mask is False; else BERT_MASK (0) with 80%, BERT_RANDOM (1) with 10%,
    BERT_KEEP (2) with 10%. Exposed separately so providers can log branch statistics.
    """
    bits = uniform_bits(mask.shape, generator)  # (N, T)
    mask_share, random_share, _ = BERT_SHARES
    past_mask = ~below_threshold(bits, probability_threshold(mask_share))
    past_random = ~below_threshold(bits, probability_threshold(mask_share + random_share))
    branch = past_mask.to(torch.int8) + past_random.to(torch.int8)  # 0, 1 or 2
    return (branch + 1) * mask - 1  # -1 outside the mask (arithmetic: torch.where is slow here)


def apply_bert_branches(x, branches, mask_token_id, n_chars, generator):
    """x with [MASK] on branch 0 and a uniformly random character id in [0, n_chars) on branch 1.

    The random character can equal the original one (probability 1 / n_chars), as in BERT;
    it is never a special token because special ids start at n_chars.
    """
    corrupted = torch.where(branches == BERT_MASK, mask_token_id, x)  # (N, T)
    random_positions = branches == BERT_RANDOM
    n_random = int(random_positions.sum())
    corrupted[random_positions] = torch.randint(0, n_chars, (n_random,), generator=generator,
                                                dtype=x.dtype)
    return corrupted


def bert_corrupt(x, mask, mask_token_id, n_chars, generator):
    """BERT 80/10/10 corruption of x (N, T) at the masked positions; returns (N, T) long."""
    return apply_bert_branches(x, bert_branches(mask, generator), mask_token_id, n_chars, generator)
