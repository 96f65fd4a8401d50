"""
Mixture corruption for the random replacement providers: which branch each selected position
takes, the tokens of the random and fragment branches, and the per-file statistics line.

The provider first selects positions (the stage masks of data/masking.py),
then `route_branches` sends every selected position to one branch of the mixture, e.g.
(random, mask, fragment) or (prediction, random, mask, fragment), and the provider fills each
branch: `random_tokens` for the random branch, `mask_token_id` for the mask branch,
`fragment_tokens` for the fragment branch. All functions are vectorised over (N, T).
"""

import math

import torch

from common import UserError
from data.masking import below_threshold, probability_threshold, random_lanes, uniform_bits

NOT_SELECTED = -1


def validate_mixture(weights, names, key='train_corruption_mixture'):
    """The mixture weights as a tuple of floats, or UserError with one line saying what to change."""
    wanted = (f"{key} must be {len(names)} non-negative weights ({', '.join(names)}) "
              f"with a positive sum; got {weights!r}")
    if not isinstance(weights, (tuple, list)) or len(weights) != len(names):
        raise UserError(wanted)
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(wanted)
        if not math.isfinite(weight) or weight < 0:
            raise UserError(wanted)
    if sum(weights) <= 0:
        raise UserError(wanted)
    return tuple(float(w) for w in weights)


def _branch_thresholds(weights):
    """Cumulative integer thresholds for `uniform_bits`: branch i owns [c_(i-1), c_i)."""
    total = sum(weights)
    cumulative, running = [], 0.0
    for weight in weights[:-1]:
        running += weight
        cumulative.append(probability_threshold(running / total))
    return cumulative  # the last branch owns everything from cumulative[-1] up


def _route_positions(shape, weights, generator):
    """Independent branch per position with probabilities weights / sum(weights), (N, T) long.

    A zero-weight branch owns an empty interval, so it is never chosen; weights are applied with
    the 2**-14 resolution of `uniform_bits`.
    """
    bits = uniform_bits(shape, generator)  # (N, T)
    branch = torch.zeros(shape, dtype=torch.long)
    for threshold in _branch_thresholds(weights):  # a handful of branches
        branch += ~below_threshold(bits, threshold)
    return branch


def route_branches(selected, weights, generator, row_level_branch=None):
    """The branch of every selected position, (N, T) long: -1 where not selected, else 0..k-1.

    Without `row_level_branch`, every selected position picks branch i independently with
    probability w_i / sum(w). With it (the fragment branch), that branch is decided per row:
    a row is a whole-row fragment row with probability w_f / sum(w), and all its selected
    positions go there, so contiguous selected spans get contiguous text; in the other rows
    positions pick among the remaining branches with their weights renormalised. The expected
    share of positions per branch is still w_i / sum(w). If the other weights are all zero,
    w_f / sum(w) is 1 and every row is a fragment row, so the renormalisation is never needed.
    """
    weights = [float(w) for w in weights]
    n_rows = selected.shape[0]
    if row_level_branch is None:
        branch = _route_positions(selected.shape, weights, generator)  # (N, T)
        return branch.masked_fill_(~selected, NOT_SELECTED)
    row_share = weights[row_level_branch] / sum(weights)
    u = torch.rand(n_rows, 1, generator=generator, dtype=torch.float64)  # (N, 1)
    is_row_level = u < row_share  # (N, 1)
    other_weights = list(weights)
    other_weights[row_level_branch] = 0.0
    if sum(other_weights) > 0:
        branch = _route_positions(selected.shape, other_weights, generator)  # (N, T)
        branch.masked_fill_(is_row_level, row_level_branch)
    else:
        branch = torch.full(selected.shape, row_level_branch, dtype=torch.long)
    return branch.masked_fill_(~selected, NOT_SELECTED)


def random_tokens(original, allowed_ids, original_multiplier, generator):
    """A random token for every position, (N, T) long, drawn from `allowed_ids`.

    Every allowed id has weight 1, except the position's original token, which has weight
    `original_multiplier` (0: never the original; large: mostly the original). An original that
    is not allowed (a special or extra-special id) is simply never drawn. Two draws per
    position: keep the original with probability m / (m + V - 1), else a uniform index among the
    other allowed ids, which skips over the original's own slot in the sorted allowed ids,
    so no (N, T, V) tensor is built.
    """
    original = original.long()
    allowed = torch.as_tensor(allowed_ids, dtype=torch.long).unique()  # (V,) sorted
    n_allowed = allowed.numel()
    if n_allowed < 2:
        raise UserError(f"the random branch needs at least 2 allowed token ids; got {allowed.tolist()}")
    if original.numel() == 0:
        return original.clone()
    # slot of every id in `allowed`, or n_allowed (past every slot) for ids that are not allowed
    slot_of_id = torch.full((max(int(original.max()), int(allowed.max())) + 1,), n_allowed)
    slot_of_id[allowed] = torch.arange(n_allowed)
    slot = slot_of_id.index_select(0, original.reshape(-1)).view(original.shape)  # (N, T)
    allowed_original = slot < n_allowed  # (N, T)
    n_others = n_allowed - allowed_original.long()  # (N, T): V - 1, or V when the original is not allowed
    draws = random_lanes(original.shape, torch.int32, generator) & 0x7FFFFFFF  # (N, T) uniform 31 bits
    other = (draws * n_others) >> 31  # (N, T) uniform in [0, n_others), exact integer arithmetic
    other += (other >= slot).long()  # skip over the original's slot (never for a slot of n_allowed)
    keep_share = original_multiplier / (original_multiplier + n_allowed - 1)
    keep = below_threshold(uniform_bits(original.shape, generator), probability_threshold(keep_share))
    drawn = allowed.index_select(0, other.view(-1)).view(original.shape)  # (N, T)
    return torch.where(keep & allowed_original, original, drawn)


def fragment_tokens(source_ids, n_rows, block_size, generator):
    """For every row a window of `block_size` consecutive ids of `source_ids`, (N, T) long.

    The caller copies window position t into the row's fragment positions t, so every
    contiguous run of fragment positions receives a contiguous piece of real train text.
    """
    n_source = source_ids.numel()
    if n_source < block_size:
        raise UserError(f"fragments need a train split of at least block_size={block_size} "
                        f"tokens; got {n_source}")
    starts = torch.randint(0, n_source - block_size + 1, (n_rows, 1), generator=generator)  # (N, 1)
    return source_ids[starts + torch.arange(block_size)].long()  # (N, T)


def _min_max(values):
    """(min, max) of a 1-D float tensor as Python floats, or None when it is empty."""
    if values.numel() == 0:
        return None
    return float(values.min()), float(values.max())


def branch_stats(original, corrupted, selected, branch, branch_names):
    """Per-row statistics of one file's corruption, as (min, max) pairs over rows.

    initial: fraction of positions selected; final: fraction whose token changed;
    total[name]: fraction of positions routed to the branch; change_frac[name]: over rows that
    have positions in the branch, the fraction of those positions whose token changed
    (None when no row has any).
    """
    block_size = original.shape[1]
    changed = original != corrupted  # (N, T)
    stats = {'initial': _min_max(selected.sum(1) / block_size),
             'final': _min_max(changed.sum(1) / block_size),
             'total': {}, 'change_frac': {}}
    for index, name in enumerate(branch_names):  # a handful of branches
        routed = branch == index  # (N, T)
        routed_count = routed.sum(1)  # (N,)
        changed_count = (routed & changed).sum(1)  # (N,)
        has_branch = routed_count > 0
        stats['total'][name] = _min_max(routed_count / block_size)
        stats['change_frac'][name] = _min_max(changed_count[has_branch] / routed_count[has_branch])
    return stats


def _pair(min_max):
    return 'n/a' if min_max is None else f"{min_max[0]:.4f}/{min_max[1]:.4f}"


def format_mask_ratio_line(stats, prefix='[provider]'):
    """The one-line summary of `branch_stats`, in the format of the provider docs."""
    parts = [f"initial min/max={_pair(stats['initial'])}", f"final min/max={_pair(stats['final'])}"]
    parts += [f"{name} total={_pair(pair)}" for name, pair in stats['total'].items()]
    parts += [f"{name} change frac={_pair(pair)}" for name, pair in stats['change_frac'].items()]
    return f"{prefix} mask ratios: " + ', '.join(parts)
