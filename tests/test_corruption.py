"""Mixture corruption: routing shares, random and fragment tokens, the Mixture and RandomBranch that
providers compose, labels, the statistics line."""
import re

import pytest
import torch

from common import UserError
from data import masking as mu
from data import corruption as c
from data.corpus import IGNORE_INDEX

NAMES = ('random', 'mask', 'fragment')
N_CHARS = 60
MASK_TOKEN_ID, WRONG_TOKEN_ID = N_CHARS, N_CHARS + 1
EXTRA_SPECIAL = (0, 7)  # e.g. '\n' and ' ' kept out of the random branch
ALLOWED = torch.tensor([i for i in range(N_CHARS) if i not in EXTRA_SPECIAL])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def chars(shape, seed=0):
    return torch.randint(0, N_CHARS, shape, generator=gen(seed))


# ---------------------------------------------------------------------------------------------
# validate_mixture

def test_validate_mixture_returns_floats():
    assert c.validate_mixture((8, 2, 0), NAMES) == (8.0, 2.0, 0.0)
    assert c.validate_mixture([0.5, 0.25, 0.25], NAMES) == (0.5, 0.25, 0.25)


@pytest.mark.parametrize('weights', [(0, 0, 0), (0.5, 0.5), (1, -1, 1), (1, float('nan'), 0),
                                     (1, float('inf'), 0), ('1', 0, 0), (True, 0, 0), 0.8, None])
def test_validate_mixture_errors_say_what_to_change(weights):
    with pytest.raises(UserError) as error:
        c.validate_mixture(weights, NAMES)
    message = str(error.value)
    assert message.startswith('train_corruption_mixture must be 3 non-negative weights '
                              '(random, mask, fragment) with a positive sum; got ')
    assert '\n' not in message


def test_validate_mixture_names_the_key():
    with pytest.raises(UserError, match=r'^val_mix must be 4 non-negative weights \(prediction, '):
        c.validate_mixture((1, 1, 1), ('prediction',) + NAMES, key='val_mix')


# ---------------------------------------------------------------------------------------------
# route_branches

def branch_shares(branch, selected, k):
    return [((branch == i).sum() / selected.sum()).item() for i in range(k)]


def test_route_branches_position_level_shares():
    selected = mu.random_mask(200, 128, 0.8, gen(1))
    branch = c.route_branches(selected, (0.6, 0.3, 0.1), gen(2))
    assert branch.dtype == torch.long
    assert ((branch == c.NOT_SELECTED) == ~selected).all()
    assert branch_shares(branch, selected, 3) == pytest.approx([0.6, 0.3, 0.1], abs=0.01)


def test_route_branches_never_picks_a_zero_weight_branch():
    selected = torch.ones(64, 64, dtype=torch.bool)
    for weights in [(0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 1)]:
        branch = c.route_branches(selected, weights, gen(3))
        for index, weight in enumerate(weights):
            assert bool((branch == index).any()) == (weight > 0)


def test_route_branches_fragment_rows_are_whole_rows():
    selected = mu.random_mask(2000, 64, 0.8, gen(4))
    branch = c.route_branches(selected, (0.5, 0.2, 0.3), gen(5), row_level_branch=2)
    fragment_rows = ((branch == 2).sum(1) > 0) & (selected.sum(1) > 0)
    assert torch.equal((branch == 2).sum(1)[fragment_rows], selected.sum(1)[fragment_rows])
    assert abs(fragment_rows.float().mean().item() - 0.3) < 0.03
    assert branch_shares(branch, selected, 3) == pytest.approx([0.5, 0.2, 0.3], abs=0.04)


def test_route_branches_row_level_edge_weights():
    selected = mu.bernoulli_mask(50, 32, 0.5, gen(6))
    only_fragment = c.route_branches(selected, (0, 0, 2), gen(7), row_level_branch=2)
    assert torch.equal(only_fragment == 2, selected)
    no_fragment = c.route_branches(selected, (1, 1, 0), gen(7), row_level_branch=2)
    assert not (no_fragment == 2).any()


# ---------------------------------------------------------------------------------------------
# random_tokens

def test_random_tokens_multiplier_zero_always_changes_and_stays_allowed():
    original = chars((256, 64), seed=8)
    tokens = c.random_tokens(original, ALLOWED, 0.0, gen(9))
    assert (tokens != original).all()
    assert torch.isin(tokens, ALLOWED).all()  # no [MASK], [WRONG] or extra-special ids


def test_random_tokens_are_uniform_over_the_others():
    original = torch.full((400, 100), 5)
    tokens = c.random_tokens(original, ALLOWED, 0.0, gen(10))
    counts = torch.bincount(tokens.view(-1), minlength=N_CHARS)[ALLOWED]
    assert counts[ALLOWED == 5].item() == 0
    others = counts[ALLOWED != 5].float()
    expected = tokens.numel() / len(others)
    chi_square = ((others - expected) ** 2 / expected).sum().item()
    assert chi_square < 2 * len(others)  # about 56 +- 11 when uniform


@pytest.mark.parametrize('multiplier', [1.0, 20.0, 500.0])
def test_random_tokens_keep_the_original_in_proportion(multiplier):
    original = chars((256, 128), seed=11)
    tokens = c.random_tokens(original, ALLOWED, multiplier, gen(12))
    allowed_original = torch.isin(original, ALLOWED)
    kept = (tokens == original)[allowed_original].float().mean().item()
    assert kept == pytest.approx(multiplier / (multiplier + len(ALLOWED) - 1), abs=0.01)
    assert not (tokens == original)[~allowed_original].any()  # an extra-special original is never kept
    assert torch.isin(tokens, ALLOWED).all()


def test_random_tokens_empty_batch():
    assert c.random_tokens(torch.zeros(0, 16, dtype=torch.long), ALLOWED, 1.0, gen()).shape == (0, 16)


def test_random_tokens_need_two_allowed_ids():
    with pytest.raises(UserError, match='at least 2'):
        c.random_tokens(chars((2, 4)), torch.tensor([3]), 0.0, gen())


# ---------------------------------------------------------------------------------------------
# fragment_tokens

def test_fragment_tokens_are_contiguous_pieces_of_the_source():
    source = chars((500,), seed=13)
    fragments = c.fragment_tokens(source, 20, 32, gen(14))
    assert fragments.shape == (20, 32) and fragments.dtype == torch.long
    windows = source.unfold(0, 32, 1)  # (469, 32): every window of the source
    for row in fragments:
        assert (windows == row).all(1).any()


def test_fragment_tokens_need_a_long_enough_source():
    with pytest.raises(UserError, match='block_size=32'):
        c.fragment_tokens(chars((20,)), 2, 32, gen())


# ---------------------------------------------------------------------------------------------
# branch_stats and the log line

def corrupt(original, selected, weights, generator):
    """The random replacement recipe in miniature: route, then fill each branch."""
    branch = c.route_branches(selected, weights, generator, row_level_branch=2)
    random_ids = c.random_tokens(original, ALLOWED, 0.0, generator)
    fragments = c.fragment_tokens(original.view(-1), original.shape[0], original.shape[1], generator)
    corrupted = torch.where(branch == 0, random_ids, original)
    corrupted = torch.where(branch == 1, MASK_TOKEN_ID, corrupted)
    return torch.where(branch == 2, fragments, corrupted), branch


def test_branch_stats_exact_on_a_small_example():
    original = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    selected = torch.tensor([[True, True, False, False], [True, True, True, True]])
    branch = torch.tensor([[0, 1, -1, -1], [0, 0, 2, 2]])
    corrupted = torch.tensor([[9, 60, 3, 4], [9, 6, 7, 1]])  # row 1: one random kept, one fragment same
    stats = c.branch_stats(original, corrupted, selected, branch, NAMES)
    assert stats['initial'] == (0.5, 1.0)
    assert stats['final'] == (0.5, 0.5)
    assert stats['total'] == {'random': (0.25, 0.5), 'mask': (0.0, 0.25), 'fragment': (0.0, 0.5)}
    assert stats['change_frac'] == {'random': (0.5, 1.0), 'mask': (1.0, 1.0), 'fragment': (0.5, 0.5)}


def test_mask_ratio_line_format():
    original = chars((64, 64), seed=15)
    selected = mu.random_mask(64, 64, 0.9, gen(16))
    corrupted, branch = corrupt(original, selected, (0.6, 0.3, 0.1), gen(17))
    stats = c.branch_stats(original, corrupted, selected, branch, NAMES)
    line = c.format_mask_ratio_line(stats)
    pair = r'\d\.\d{4}/\d\.\d{4}'
    expected = (rf'\[provider\] mask ratios: initial min/max={pair}, final min/max={pair}, '
                rf'random total={pair}, mask total={pair}, fragment total={pair}, '
                rf'random change frac={pair}, mask change frac=1\.0000/1\.0000, fragment change frac={pair}')
    assert re.fullmatch(expected, line), line
    assert stats['change_frac']['random'] == (1.0, 1.0)  # multiplier 0 always changes


def test_mask_ratio_line_says_n_a_for_an_empty_branch():
    original = chars((16, 32), seed=18)
    selected = mu.bernoulli_mask(16, 32, 0.5, gen(19))
    corrupted, branch = corrupt(original, selected, (1, 1, 0), gen(20))
    line = c.format_mask_ratio_line(c.branch_stats(original, corrupted, selected, branch, NAMES), '[w0]')
    assert line.startswith('[w0] mask ratios: ')
    assert 'fragment total=0.0000/0.0000' in line and line.endswith('fragment change frac=n/a')


def test_mask_ratio_summary_appends_the_stage_means():
    original = chars((8, 16), seed=21)
    selected = mu.bernoulli_mask(8, 16, 0.5, gen(22))
    branch = selected.long() - 1
    corrupted = original.masked_fill(selected, MASK_TOKEN_ID)
    plain = c.file_stats(original, corrupted, selected, branch, ('mask',))
    assert c.mask_ratio_summary(plain, '[p]') == c.format_mask_ratio_line(plain['branches'], '[p]')
    staged = c.file_stats(original, corrupted, selected, branch, ('mask',), stage_ratios=[0.25, 0.5])
    assert c.mask_ratio_summary(staged, '[p]').endswith('mask change frac=1.0000/1.0000, stage mean ratios=0.250/0.500')


# ---------------------------------------------------------------------------------------------
# what providers compose: RandomBranch, Mixture, labels

VOCAB = dict(chars=[chr(65 + i) for i in range(N_CHARS)], mask_token_id=MASK_TOKEN_ID)


def mixture_config(**overrides):
    cfg = dict(c.DEFAULTS, extra_special_token_ids=EXTRA_SPECIAL)
    cfg.update(overrides)
    return cfg


def test_random_branch_fill_draws_random_tokens_at_the_routed_positions():
    branch = c.RandomBranch(mixture_config(original_token_probability_multiplier=2.0), N_CHARS)
    assert torch.equal(branch.allowed_ids, ALLOWED) and branch.extra_ids == EXTRA_SPECIAL
    clean = chars((16, 32), seed=23)
    routed = mu.bernoulli_mask(16, 32, 0.4, gen(24))
    x = clean.clone()
    branch.fill(x, clean, routed, gen(25))
    assert torch.equal(x[~routed], clean[~routed])
    assert torch.equal(x[routed], c.random_tokens(clean[routed], ALLOWED, 2.0, gen(25)))  # the same draws


@pytest.mark.parametrize('key,value,expected', [
    ('original_token_probability_multiplier', -1.0, 'original_token_probability_multiplier must be >= 0'),
    ('extra_special_token_ids', (N_CHARS,), r'extra_special_token_ids must be character ids in \[0, 60\)'),
    ('extra_special_token_ids', tuple(range(N_CHARS)), 'leaves no character for the random branch'),
])
def test_random_branch_errors_name_the_key(key, value, expected):
    with pytest.raises(UserError, match=expected):
        c.RandomBranch(mixture_config(**{key: value}), N_CHARS)


def test_mixture_fills_each_branch_and_leaves_the_rest():
    mixture = c.Mixture(mixture_config(train_corruption_mixture=(0.5, 0.3, 0.2)), NAMES, VOCAB,
                        validation_fragments=False, log=print)
    clean = chars((400, 32), seed=26)
    selected = mu.bernoulli_mask(400, 32, 0.5, gen(27))
    source = chars((1000,), seed=28)
    branch = mixture.route('train', selected, gen(29))
    x = mixture.fill('train', clean, branch, gen(30), fragment_source=source)
    assert torch.equal(x[~selected], clean[~selected])
    assert (x[branch == 1] == MASK_TOKEN_ID).all()
    assert torch.isin(x[branch == 0], ALLOWED).all() and (x[branch == 0] != clean[branch == 0]).float().mean() > 0.9
    windows = source.unfold(0, 32, 1)
    for row in (branch == 2).any(1).nonzero().squeeze(1)[:20]:  # fragment rows: a window of the source
        picked = branch[row] == 2
        assert ((windows[:, picked] == x[row, picked]).all(1)).any()
    assert branch_shares(branch, selected, 3) == pytest.approx([0.5, 0.3, 0.2], abs=0.05)


def test_mixture_validation_drops_fragments_or_keeps_them():
    dropping = c.Mixture(mixture_config(train_corruption_mixture=(0.5, 0.3, 0.2)), NAMES, VOCAB,
                         validation_fragments=False, log=print)
    assert dropping.weights['val'] == pytest.approx((0.625, 0.375, 0.0))
    keeping = c.Mixture(mixture_config(train_corruption_mixture=(0.5, 0.3, 0.2)), NAMES, VOCAB,
                        validation_fragments=True, log=print)
    assert keeping.weights['val'] == keeping.weights['train'] == (0.5, 0.3, 0.2)
    lines = []
    only_fragments = c.Mixture(mixture_config(train_corruption_mixture=(0, 0, 1)), NAMES, VOCAB,
                               validation_fragments=False, log=lines.append)
    assert only_fragments.weights['val'] == (1.0, 0.0, 0.0)
    assert lines == ['train_corruption_mixture has only fragments; the validation set uses the random branch instead']


def test_mixture_meta_and_label_semantics():
    mixture = c.Mixture(mixture_config(train_corruption_mixture=(0.0, 1.0, 1.0), validation_partial_targets=True),
                        NAMES, VOCAB, validation_fragments=False, log=print)
    meta = mixture.meta('random_replacement', {'mode': 'stages'}, fragment_source='train split')
    assert meta['label_semantics'] == 'full' and meta['val_label_semantics'] == 'partial'
    assert meta['corruption_type'] == 'random_replacement' and meta['mixture_has_mask'] is True
    assert list(meta['corruption']) == ['mode', 'mixture', 'val_mixture', 'original_token_probability_multiplier',
                                        'extra_special_token_ids', 'fragment_source']
    assert meta['corruption']['val_mixture'] == {'random': 0.0, 'mask': 1.0, 'fragment': 0.0}
    clean = chars((4, 8), seed=31)
    selected = mu.bernoulli_mask(4, 8, 0.5, gen(32))
    assert torch.equal(mixture.labels('train', clean, selected), clean)
    assert torch.equal(mixture.labels('val', clean, selected), torch.where(selected, clean, IGNORE_INDEX))


@pytest.mark.parametrize('partial,val_partial,expected', [
    (False, None, {'train': 'full', 'val': 'full'}), (True, None, {'train': 'partial', 'val': 'partial'}),
    (True, False, {'train': 'partial', 'val': 'full'}), (False, True, {'train': 'full', 'val': 'partial'})])
def test_label_semantics_per_split(partial, val_partial, expected):
    cfg = dict(dataset_partial_targets=partial, validation_partial_targets=val_partial)
    assert c.label_semantics(cfg) == expected
