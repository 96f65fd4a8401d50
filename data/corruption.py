"""
Corruption branches for the providers: which branch each picked position takes, what each branch
puts there, the labels, and the per-file statistics and mask-ratio log line.

The provider first picks positions (data/positions.py), then `route_branches` sends every picked
position to one branch of the mixture, e.g. (random, mask, fragment) or (prediction, random, mask,
fragment), and the branches are filled: `random_tokens` for the random branch, `mask_token_id` for
the mask branch, `fragment_tokens` for the fragment branch (a provider fills branches of its own,
such as predictions, itself). `Mixture` bundles a config's mixture, random-branch knobs and label
semantics for a provider to compose. All functions are vectorised over (N, T).
"""

import math

import torch

from common import UserError
from data.corpus import IGNORE_INDEX
from data.masking import below_threshold, probability_threshold, random_lanes, uniform_bits

# the keys of a mixture provider (char_random_replacement; char_inference_replacement adds its own)
DEFAULTS = dict(
    train_corruption_mixture=(0.8, 0.2, 0.0),     # (random, mask, fragment) shares of the picked positions
    original_token_probability_multiplier=1.0,    # random branch: the original char's weight (1: uniform, 0: never)
    extra_special_token_ids=(),                   # character ids the random branch never draws
    dataset_partial_targets=False,                # False: full targets; True: ignore_index outside picked positions
    validation_partial_targets=None,              # None: same as dataset_partial_targets
)
MIXTURE_BRANCHES = ('random', 'mask', 'fragment')  # the branches `Mixture.fill` fills
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


# ----------------------------------------------------------------------------------------------
# the random branch, the mixture and the labels, as a provider composes them

def allowed_ids(extra_ids, n_chars, key='extra_special_token_ids'):
    """Long (K,): the character ids a random branch may draw (all but `extra_ids`, the value of `key`)."""
    if not isinstance(extra_ids, (tuple, list)) or not all(isinstance(i, int) and 0 <= i < n_chars for i in extra_ids):
        raise UserError(f"{key} must be character ids in [0, {n_chars}), got {extra_ids!r}")
    allowed = torch.ones(n_chars, dtype=torch.bool)
    allowed[list(extra_ids)] = False
    if not allowed.any():
        raise UserError(f"{key} leaves no character for the random branch")
    return allowed.nonzero().squeeze(1)


class RandomBranch:
    """Random characters for the positions of a branch, drawn as `random_tokens` draws them.

    Its two knobs are read from the config keys `multiplier_key` (the original character's weight)
    and `extra_ids_key` (ids never drawn): the random branch and the inference fallback each have theirs.
    """

    def __init__(self, cfg, n_chars, multiplier_key='original_token_probability_multiplier',
                 extra_ids_key='extra_special_token_ids'):
        multiplier = cfg[multiplier_key]
        if not isinstance(multiplier, (int, float)) or multiplier < 0:
            raise UserError(f"{multiplier_key} must be >= 0, got {multiplier!r}")
        self.multiplier = multiplier
        extra_ids = () if cfg[extra_ids_key] is None else cfg[extra_ids_key]  # None: the original project's "none"
        self.allowed_ids = allowed_ids(extra_ids, n_chars, extra_ids_key)
        self.extra_ids = tuple(extra_ids)

    def fill(self, x, clean, routed, generator):
        """Random characters into x (in place) at the `routed` (N, T) positions."""
        # draws for the M routed positions only; flat indices are cheaper than boolean indexing
        positions = routed.view(-1).nonzero().squeeze(1)  # (M,)
        if positions.numel() == 0:
            return
        originals = clean.view(-1).index_select(0, positions).long()  # (M,)
        drawn = random_tokens(originals, self.allowed_ids, self.multiplier, generator)
        x.view(-1).index_copy_(0, positions, drawn.to(x.dtype))


def without_fragments(weights, names, log):
    """The mixture of a validation set that never draws fragments: their weight dropped, the rest
    renormalised (validation stays deterministic in what it draws from)."""
    kept = [0.0 if name == 'fragment' else w for name, w in zip(names, weights)]
    total = sum(kept)
    if total == 0:
        log("train_corruption_mixture has only fragments; the validation set uses the random branch instead")
        return tuple(float(name == 'random') for name in names)
    return tuple(w / total for w in kept)


def label_semantics(cfg):
    """{'train': 'partial' | 'full', 'val': ...} from dataset_partial_targets / validation_partial_targets."""
    partial = cfg['dataset_partial_targets']
    val_partial = partial if cfg['validation_partial_targets'] is None else cfg['validation_partial_targets']
    return {'train': 'partial' if partial else 'full', 'val': 'partial' if val_partial else 'full'}


def labels(clean, selected, semantics):
    """y (N, T): the original everywhere ('full'), or ignore_index outside the picked positions ('partial')."""
    if semantics == 'partial':
        return clean.masked_fill(~selected, IGNORE_INDEX)
    return clean


class Mixture:
    """`train_corruption_mixture` over `names`, its random branch and the labels, checked once.

    `names` are the branches in mixture order; `fill` fills those of MIXTURE_BRANCHES, a provider
    fills any other (the prediction branch) itself. With `validation_fragments=False` the validation
    set uses the mixture `without_fragments`; with True the train mixture, fragments included.
    """

    def __init__(self, cfg, names, vocab, validation_fragments, log):
        self.names = names
        train = validate_mixture(cfg['train_corruption_mixture'], names, 'train_corruption_mixture')
        self.weights = {'train': train, 'val': train if validation_fragments else without_fragments(train, names, log)}
        self.random = RandomBranch(cfg, len(vocab['chars']))
        self.mask_token_id = vocab['mask_token_id']
        self.label_semantics = label_semantics(cfg)

    def share(self, split, name):
        """The mixture weight of branch `name` in `split`."""
        return self.weights[split][self.names.index(name)]

    def route(self, split, selected, generator):
        """The branch index of every position (N, T): -1 outside `selected`."""
        # fragments are chosen per row, so a row's runs of picked positions get contiguous text
        return route_branches(selected, self.weights[split], generator, row_level_branch=self.names.index('fragment'))

    def fill(self, split, clean, branch, generator, fragment_source):
        """x (N, T): `clean` with the positions routed to random / mask / fragment replaced;
        fragments are windows of `fragment_source` (token ids)."""
        x = clean.clone()
        # each branch is drawn only when it has a share, so unused branches cost nothing
        if self.share(split, 'random') > 0:
            self.random.fill(x, clean, branch == self.names.index('random'), generator)
        if self.share(split, 'mask') > 0:
            x.masked_fill_(branch == self.names.index('mask'), self.mask_token_id)
        if self.share(split, 'fragment') > 0:
            fragments = fragment_tokens(fragment_source, *clean.shape, generator)  # (N, T)
            x = torch.where(branch == self.names.index('fragment'), fragments.to(x.dtype), x)
        return x

    def labels(self, split, clean, selected):
        return labels(clean, selected, self.label_semantics[split])

    def meta(self, corruption_type, mode, **knobs):
        """meta.pkl entries of a mixture provider; `mode` (PositionPicker.mode_meta) and `knobs` go
        into meta['corruption'] around the mixture's own."""
        corruption = dict(mode, mixture=dict(zip(self.names, self.weights['train'])),
                          val_mixture=dict(zip(self.names, self.weights['val'])),
                          original_token_probability_multiplier=self.random.multiplier,
                          extra_special_token_ids=self.random.extra_ids, **knobs)
        return dict(label_semantics=self.label_semantics['train'], val_label_semantics=self.label_semantics['val'],
                    corruption_type=corruption_type, corruption=corruption,
                    mixture_has_mask=self.share('train', 'mask') > 0)


# ----------------------------------------------------------------------------------------------
# statistics of a file and its log line

def min_max(values):
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
    stats = {'initial': min_max(selected.sum(1) / block_size),
             'final': min_max(changed.sum(1) / block_size),
             'total': {}, 'change_frac': {}}
    for index, name in enumerate(branch_names):  # a handful of branches
        routed = branch == index  # (N, T)
        routed_count = routed.sum(1)  # (N,)
        changed_count = (routed & changed).sum(1)  # (N,)
        has_branch = routed_count > 0
        stats['total'][name] = min_max(routed_count / block_size)
        stats['change_frac'][name] = min_max(changed_count[has_branch] / routed_count[has_branch])
    return stats


def format_min_max(pair):
    """'min/max' of a `min_max` pair, or 'n/a' for None."""
    return 'n/a' if pair is None else f"{pair[0]:.4f}/{pair[1]:.4f}"


def format_mask_ratio_line(stats, prefix='[provider]'):
    """The one-line summary of `branch_stats`, in the format of the provider docs."""
    parts = [f"initial min/max={format_min_max(stats['initial'])}",
             f"final min/max={format_min_max(stats['final'])}"]
    parts += [f"{name} total={format_min_max(pair)}" for name, pair in stats['total'].items()]
    parts += [f"{name} change frac={format_min_max(pair)}" for name, pair in stats['change_frac'].items()]
    return f"{prefix} mask ratios: " + ', '.join(parts)


def file_stats(original, corrupted, selected, branch, branch_names, stage_ratios=None):
    """What a provider's summary line shows of one file: `branch_stats`, and the per-stage ratios
    (PositionPicker.stage_ratios) when the verbose line shows them."""
    return dict(branches=branch_stats(original, corrupted, selected, branch, branch_names), stage_ratios=stage_ratios)


def mask_ratio_summary(stats, prefix):
    """The mask-ratio log line of `file_stats`, ending with the stage means when there are any."""
    line = format_mask_ratio_line(stats['branches'], prefix)
    if stats['stage_ratios'] is not None:
        line += ', stage mean ratios=' + '/'.join(f'{r:.3f}' for r in stats['stage_ratios'])
    return line
