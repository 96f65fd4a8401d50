"""Masking kernels: vectorised vs reference loops (identical for the same seed) and statistics;
the PositionPicker that providers compose (data/positions.py)."""
import pytest
import torch

import queue_io
from common import UserError
from data import masking as mu
from data import positions


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def runs_per_row(mask):
    """Number of maximal runs of True in every row, (N,)."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    return starts.sum(1)


def adjacent_pairs(mask):
    return int((mask[:, 1:] & mask[:, :-1]).sum())


# ---------------------------------------------------------------------------------------------
# random numbers and thresholds

def test_uniform_bits_cover_the_range_evenly():
    bits = mu.uniform_bits((512, 64), gen())
    assert bits.dtype == torch.int16 and bits.shape == (512, 64)
    assert int(bits.min()) >= 0 and int(bits.max()) < mu.PROBABILITY_ONE
    for bit in range(mu.PROBABILITY_BITS):
        assert abs(((bits >> bit) & 1).float().mean().item() - 0.5) < 0.01


def test_below_threshold_matches_comparison_and_edges():
    bits = mu.uniform_bits((64, 64), gen())
    for p in (0.0, 0.05, 0.5, 0.999, 1.0):
        threshold = mu.probability_threshold(p)
        assert torch.equal(mu.below_threshold(bits, threshold), bits.int() < threshold)
    assert not mu.below_threshold(bits, mu.probability_threshold(0.0)).any()
    assert mu.below_threshold(bits, mu.probability_threshold(1.0)).all()


def test_bernoulli_mask_rate():
    mask = mu.bernoulli_mask(256, 128, 0.15, gen())
    assert mask.dtype == torch.bool and mask.shape == (256, 128)
    assert abs(mask.float().mean().item() - 0.15) < 0.01


# ---------------------------------------------------------------------------------------------
# the fast paths equal the reference loops for the same draws

@pytest.mark.parametrize('seed', [0, 1])
def test_random_mask_equals_reference(seed):
    args = (9, 40, 0.7)
    assert torch.equal(mu.random_mask(*args, gen(seed)), mu.reference_random_mask(*args, gen(seed)))


@pytest.mark.parametrize('args', [
    (8, 40, 0.5, 0.1, 0.6),      # ordinary
    (8, 40, 0.9, 0.05, 0.6),     # heavy, rows finish in different rounds
    (6, 40, 0.9, 0.001, 0.3),    # tiny p1: empty rows get seeded
    (5, 24, 1.0, 0.2, 0.9),      # mask everything
    (5, 24, 0.01, 0.5, 0.5),     # target rounds to 0 -> at least one
    (4, 16, 0.8, 0.0001, 0.0),   # no growth at all: the round cap and the uniform fill
])
def test_sticky_mask_equals_reference(args):
    assert torch.equal(mu.sticky_mask(*args, gen(3)), mu.reference_sticky_mask(*args, gen(3)))


@pytest.mark.parametrize('spans_count', [1, 3, 20])
def test_span_mask_equals_reference(spans_count):
    args = (7, 41, spans_count)
    assert torch.equal(mu.span_mask(*args, gen(2)), mu.reference_span_mask(*args, gen(2)))


@pytest.mark.parametrize('n_rows,n_stages,batch_size', [(37, 3, 8), (12, 5, 12), (20, 4, 3)])
def test_assign_stages_equals_reference(n_rows, n_stages, batch_size):
    fast = mu.assign_stages(n_rows, n_stages, batch_size, gen(4))
    slow = mu.reference_assign_stages(n_rows, n_stages, batch_size, gen(4))
    assert torch.equal(fast, slow)


@pytest.mark.parametrize('batch_of_row', [
    [0] * 9,                           # one batch
    [0, 0, 0, 1, 1, 1, 1, 2],          # batches of different sizes, rows in order
    [2, 0, 1, 0, 2, 2, 1, 0, 0, 1],    # a stage's rows taken from a mixed file in any order
    [3, 3, 0],                         # batch ids with gaps
])
def test_uniform_mask_equals_reference(batch_of_row):
    batch_of_row = torch.tensor(batch_of_row)
    assert torch.equal(mu.uniform_mask(batch_of_row, 40, gen(8)), mu.reference_uniform_mask(batch_of_row, 40, gen(8)))


def test_choose_exactly_equals_reference_and_counts():
    candidates = mu.bernoulli_mask(10, 30, 0.4, gen(5))
    counts = candidates.sum(1) // 2
    chosen = mu.choose_exactly(candidates, counts, gen(6))
    reference = mu.reference_choose_exactly(candidates.tolist(), counts.tolist(), gen(6))
    assert torch.equal(chosen, torch.tensor(reference))
    assert torch.equal(chosen.sum(1), counts)
    assert not (chosen & ~candidates).any()


def test_choose_exactly_is_uniform_over_candidates():
    candidates = torch.zeros(4000, 8, dtype=torch.bool)
    candidates[:, :6] = True
    chosen = mu.choose_exactly(candidates, torch.full((4000,), 2), gen(7))
    share = chosen[:, :6].float().mean(0)  # every candidate kept with probability 2/6
    assert torch.allclose(share, torch.full((6,), 1 / 3), atol=0.03)


# ---------------------------------------------------------------------------------------------
# statistics against the parameters

def test_random_mask_ratios_follow_max():
    mask = mu.random_mask(2000, 256, 0.6, gen())
    row_ratio = mask.float().mean(1)
    assert abs(row_ratio.mean().item() - 0.3) < 0.01  # r ~ U(0, 0.6]: mean 0.3
    assert row_ratio.max().item() <= 0.6 + 0.1  # binomial noise around r <= 0.6
    assert abs((row_ratio < 0.3).float().mean().item() - 0.5) < 0.05  # roughly uniform r


@pytest.mark.parametrize('target', [0.001, 0.15, 0.5, 0.9, 1.0])
def test_sticky_mask_exact_count(target):
    mask = mu.sticky_mask(64, 100, target, 0.05, 0.6, gen())
    expected = mu.sticky_target_count(target, 100)
    assert expected == max(1, round(target * 100))
    assert (mask.sum(1) == expected).all()


def test_sticky_mask_clusters_more_with_higher_p2():
    sticky = mu.sticky_mask(128, 128, 0.3, 0.05, 0.9, gen())
    scattered = mu.sticky_mask(128, 128, 0.3, 0.05, 0.05, gen())
    assert adjacent_pairs(sticky) > 1.5 * adjacent_pairs(scattered)
    assert runs_per_row(sticky).float().mean() < runs_per_row(scattered).float().mean()


def test_sticky_mask_terminates_without_growth():
    mask = mu.sticky_mask(8, 64, 0.5, 1e-6, 0.0, gen())  # would otherwise run for ever
    assert (mask.sum(1) == 32).all()


@pytest.mark.parametrize('spans_count', [1, 2, 5])
def test_span_mask_has_exactly_spans_count_runs(spans_count):
    mask = mu.span_mask(500, 64, spans_count, gen())
    assert (runs_per_row(mask) == spans_count).all()
    expected_ratio = spans_count / (2 * spans_count + 1)  # broken-stick spacings
    assert abs(mask.float().mean().item() - expected_ratio) < 0.05


def test_span_mask_rejects_too_many_spans():
    with pytest.raises(UserError, match='block_size'):
        mu.span_mask(2, 10, 6, gen())


def test_stratified_ratios_give_each_batch_one_t_per_stratum_in_random_order():
    batch_of_row = torch.tensor([1, 0, 1, 0, 1, 0, 1, 2, 2, 2, 2, 2])  # batches of 3, 4 and 5 rows
    first_rows = []
    for seed in range(30):
        priority = torch.randperm(12, generator=gen(seed))
        jitter = torch.rand(12, generator=gen(seed + 100), dtype=torch.float64)
        t = mu.stratified_ratios(batch_of_row, priority, jitter)
        assert (t > 0).all() and (t <= 1).all()
        for batch in range(3):
            rows = (batch_of_row == batch).nonzero().squeeze(1)
            n = rows.numel()
            strata = torch.ceil(t[rows] * n).long() - 1  # t in (j/n, (j+1)/n] -> j
            assert sorted(strata.tolist()) == list(range(n))
        first_rows.append(int(torch.ceil(t[1] * 3)) - 1)  # the stratum of batch 0's first row
    assert set(first_rows) == {0, 1, 2}  # strata go to rows in random order


def test_uniform_mask_statistics():
    block_size, n_rows = 16, 17 * 2000
    mask = mu.uniform_mask(torch.arange(n_rows) // 64, block_size, gen(9))
    assert abs(mask.float().mean().item() - 0.5) < 0.01
    k_share = torch.bincount(mask.sum(1), minlength=block_size + 1).double() / n_rows  # k uniform on 0..T
    assert torch.allclose(k_share, torch.full((block_size + 1,), 1 / (block_size + 1), dtype=torch.float64), atol=0.006)


def test_uniform_stage_batches_vary_less_than_independent_draws():
    # stratified t: every batch's mean masked fraction sits close to 1/2 (for iid t its sd is 0.29 / sqrt(B))
    batch_size, block_size = 16, 256
    mask = mu.uniform_mask(torch.arange(batch_size * 200) // batch_size, block_size, gen(10))
    batch_means = mask.float().mean(1).view(-1, batch_size).mean(1)  # (200,)
    assert batch_means.std().item() < 0.3 * (0.29 / batch_size ** 0.5)


def test_assign_stages_every_stage_in_every_batch():
    n_stages, batch_size = 3, 8
    stages = mu.assign_stages(64, n_stages, batch_size, gen())
    for batch in stages.view(-1, batch_size):
        counts = torch.bincount(batch, minlength=n_stages)
        assert (counts > 0).all() and counts.max() - counts.min() <= 1
    totals = torch.bincount(stages, minlength=n_stages)
    assert totals.max() - totals.min() <= 1


def test_assign_stages_leftovers_rotate_and_rows_are_shuffled():
    stages = mu.assign_stages(80, 3, 8, gen())  # 8 = 2 * 3 + 2 leftover slots per batch
    per_batch = torch.stack([torch.bincount(b, minlength=3) for b in stages.view(-1, 8)])
    assert (per_batch.sum(0).max() - per_batch.sum(0).min()) <= 1  # no stage systematically short
    sorted_batches = sum(bool((b[1:] >= b[:-1]).all()) for b in stages.view(-1, 8))
    assert sorted_batches < 10  # shuffled within batches, not in cyclic order


@pytest.mark.parametrize('n_rows,batch_size', [(5, 64), (7, 7), (10, 4)])
def test_assign_stages_every_stage_in_every_file(n_rows, batch_size):
    for seed in range(5):
        stages = mu.assign_stages(n_rows, 4, batch_size, gen(seed))
        counts = torch.bincount(stages, minlength=4)
        assert (counts > 0).all() and counts.max() - counts.min() <= 1


def test_assign_stages_short_stage_varies_between_files():
    short = {int(torch.bincount(mu.assign_stages(5, 3, 5, gen(seed)), minlength=3).argmin())
             for seed in range(20)}
    assert len(short) > 1


def test_staged_masks_apply_each_rows_stage():
    stages = [{'type': 'sticky', 'target_masked_ratio': 0.25, 'p1_probability': 0.1, 'p2_probability': 0.5},
              {'type': 'span', 'spans_count': 2},
              {'type': 'random', 'max_masked_ratio': 0.5}]
    mask, stage_of_row = mu.staged_masks(stages, 48, 64, 16, gen())
    assert mask.shape == (48, 64) and stage_of_row.shape == (48,)
    assert (mask[stage_of_row == 0].sum(1) == 16).all()
    assert (runs_per_row(mask[stage_of_row == 1]) == 2).all()
    for batch in stage_of_row.view(-1, 16):
        assert set(batch.tolist()) == {0, 1, 2}


def test_uniform_rows_of_a_mixed_batch_are_stratified_among_themselves():
    stages = [{'type': 'uniform'}, {'type': 'random', 'max_masked_ratio': 0.1}]
    batch_size, block_size = 8, 4096  # 4 uniform rows per batch; with T this long a row's fraction is ~t
    mask, stage_of_row = mu.staged_masks(stages, batch_size * 50, block_size, batch_size, gen(11))
    fractions = mask.float().mean(1).view(-1, batch_size)
    for batch_fractions, batch_stages in zip(fractions, stage_of_row.view(-1, batch_size)):
        uniform = batch_fractions[batch_stages == 0].sort().values  # (4,)
        low, high = torch.arange(4) / 4 - 0.04, (torch.arange(4) + 1) / 4 + 0.04
        assert ((uniform > low) & (uniform < high)).all(), uniform


def test_single_stage_masks_give_every_row_the_stage():
    stages = [{'type': 'span', 'spans_count': 1}, {'type': 'uniform'}]
    mask, stage_ids = mu.single_stage_masks(stages, 1, 24, 32, 8, gen(12))
    assert torch.equal(stage_ids, torch.ones(24, dtype=torch.long))
    assert torch.equal(mask, mu.uniform_mask(torch.arange(24) // 8, 32, gen(12)))
    mask, stage_ids = mu.single_stage_masks(stages, 0, 24, 32, 8, gen(12))
    assert (stage_ids == 0).all() and (runs_per_row(mask) == 1).all()


def test_stage_mask_dispatch():
    stage = {'type': 'span', 'spans_count': 1}
    assert torch.equal(mu.stage_mask(stage, 4, 32, gen()), mu.span_mask(4, 32, 1, gen()))
    with pytest.raises(UserError, match="'blocks'"):
        mu.stage_mask({'type': 'blocks'}, 4, 32, gen())


# ---------------------------------------------------------------------------------------------
# BERT 80/10/10

def test_bert_branch_shares_and_tokens():
    n_chars, mask_token_id = 65, 65
    x = torch.randint(0, n_chars, (256, 128), generator=gen(1))
    mask = mu.random_mask(256, 128, 0.8, gen(2))
    branches = mu.bert_branches(mask, gen(3))
    assert branches.dtype == torch.int8
    assert ((branches == -1) == ~mask).all()
    shares = [(branches == b).sum().item() / mask.sum().item() for b in range(3)]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.01)
    corrupted = mu.apply_bert_branches(x, branches, mask_token_id, n_chars, gen(4))
    assert torch.equal(corrupted[~mask], x[~mask])
    assert (corrupted[branches == mu.BERT_MASK] == mask_token_id).all()
    assert torch.equal(corrupted[branches == mu.BERT_KEEP], x[branches == mu.BERT_KEEP])
    random_ids = corrupted[branches == mu.BERT_RANDOM]
    assert random_ids.max() < n_chars and random_ids.min() >= 0  # never a special token
    assert (random_ids != x[branches == mu.BERT_RANDOM]).float().mean() > 0.9


def test_bert_corrupt_is_reproducible():
    x = torch.randint(0, 30, (8, 32), generator=gen(1))
    mask = mu.bernoulli_mask(8, 32, 0.5, gen(2))
    first = mu.bert_corrupt(x, mask, 30, 30, gen(3))
    assert first.dtype == torch.long and torch.equal(first, mu.bert_corrupt(x, mask, 30, 30, gen(3)))


# ---------------------------------------------------------------------------------------------
# stage validation

GOOD_STAGES = [{'type': 'random', 'max_masked_ratio': 0.5},
               {'type': 'sticky', 'target_masked_ratio': 0.6, 'p1_probability': 0.1, 'p2_probability': 0.9},
               {'type': 'span', 'spans_count': 3}]


def test_validate_stages_accepts_good_stages():
    mu.validate_stages(GOOD_STAGES, 'unmasking_stages', block_size=32)
    mu.validate_stages(tuple(GOOD_STAGES), 'validation_stages')
    # a uniform stage, and the curriculum's field on any stage (the original project's stage files)
    with_counts = [dict(stage, val_loss_stale_count=i + 1) for i, stage in enumerate(GOOD_STAGES + [{'type': 'uniform'}])]
    mu.validate_stages(with_counts, 'unmasking_stages', block_size=32)


@pytest.mark.parametrize('stages,expected', [
    ([], r"unmasking_stages is empty"),
    ({'type': 'random'}, r"unmasking_stages must be a list"),
    ([GOOD_STAGES[0], 'random'], r"unmasking_stages\[1\] must be a dict"),
    ([GOOD_STAGES[0], GOOD_STAGES[1], {'type': 'blur'}],
     r"unmasking_stages\[2\]\['type'\] is 'blur'; allowed: 'random'"),
    ([{'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.1}],
     r"unmasking_stages\[0\] \('sticky' stage\) is missing 'p2_probability'"),
    ([{'type': 'random', 'max_masked_ratio': 1.5}],
     r"unmasking_stages\[0\]\['max_masked_ratio'\] must be in \(0, 1\]; got 1.5"),
    ([{'type': 'random', 'max_masked_ratio': '0.5'}], r"\['max_masked_ratio'\] must be a number"),
    ([{'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.0, 'p2_probability': 0.5}],
     r"\['p1_probability'\] must be in \(0, 1\]"),
    ([{'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.1, 'p2_probability': -0.1}],
     r"\['p2_probability'\] must be in \[0, 1\]"),
    ([{'type': 'span', 'spans_count': 0}], r"\['spans_count'\] must be a positive integer; got 0"),
    ([{'type': 'span', 'spans_count': 2.0}], r"\['spans_count'\] must be a positive integer"),
    ([{'type': 'span', 'spans_count': 40}], r"must be at most 16 for block_size=32"),
    ([{'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probabilty': 0.1, 'p2_probability': 0.5}],
     r"unknown field 'p1_probabilty' \(did you mean 'p1_probability'\?\)"),
    ([{'type': 'uniform', 'max_masked_ratio': 0.5}],
     r"unmasking_stages\[0\] has unknown field 'max_masked_ratio'; a 'uniform' stage takes no parameters"),
    ([{'type': 'random', 'max_masked_ratio': 0.5, 'val_loss_stale_cnt': 3}],
     r"unknown field 'val_loss_stale_cnt' \(did you mean 'val_loss_stale_count'\?\)"),
    ([{'type': 'uniform', 'val_loss_stale_count': 0}], r"\['val_loss_stale_count'\] must be a positive integer; got 0"),
    ([{'type': 'span', 'spans_count': 2, 'val_loss_stale_count': 2.5}], r"\['val_loss_stale_count'\] must be a positive"),
])
def test_validate_stages_errors_name_the_stage_and_field(stages, expected):
    with pytest.raises(UserError, match=expected) as error:
        mu.validate_stages(stages, 'unmasking_stages', block_size=32)
    assert '\n' not in str(error.value)


# ---------------------------------------------------------------------------------------------
# PositionPicker: stages or mask_probability, as a provider's config says

def picker_config(**overrides):
    cfg = dict(positions.DEFAULTS, block_size=32, batch_size=6, data_stream_verbose=False)
    cfg.update(overrides)
    return cfg


def test_picker_without_stages_is_a_bernoulli_mask():
    picker = positions.PositionPicker(picker_config(mask_probability=0.3))
    selected, stage_ids = picker.pick('train', 12, gen(1))
    assert stage_ids is None and torch.equal(selected, mu.bernoulli_mask(12, 32, 0.3, gen(1)))
    assert picker.schema() == {} and picker.stage_meta() == {'unmasking_stages': None, 'validation_stages': None}
    assert picker.mode_meta() == {'mode': 'mask_probability', 'mask_probability': 0.3}  # what fills them is not its to say
    assert set(picker.fingerprint_exclude()) == {'composition_config', 'unmasking_stages', 'validation_stages'}
    assert set(picker.file_tensors(selected, selected, stage_ids)) == {'x', 'y'}


def test_picker_with_stages_uses_each_splits_list():
    val_stages = [{'type': 'span', 'spans_count': 1}]
    picker = positions.PositionPicker(picker_config(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES,
                                                    validation_stages=val_stages))
    for split, stages in (('train', GOOD_STAGES), ('val', val_stages)):
        selected, stage_ids = picker.pick(split, 12, gen(2))
        expected_mask, expected_stages = mu.staged_masks(stages, 12, 32, 6, gen(2))
        assert torch.equal(selected, expected_mask) and torch.equal(stage_ids, expected_stages)
    assert picker.file_tensors(selected, selected, stage_ids)['stage'].dtype == torch.int8
    assert picker.schema() == {'stage': {'dtype': 'int8', 'shape': ()}}
    assert picker.stage_meta() == {'unmasking_stages': GOOD_STAGES, 'validation_stages': val_stages}
    assert set(picker.fingerprint_exclude()) == {'composition_config', 'mask_probability'}
    assert picker.stage_ratios(selected, stage_ids) is None  # shown on the verbose line only


def test_picker_validation_stages_default_to_the_train_stages():
    picker = positions.PositionPicker(picker_config(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES))
    assert picker.stage_meta() == {'unmasking_stages': GOOD_STAGES, 'validation_stages': GOOD_STAGES}


def test_stage_ratios_match_a_loop():
    picker = positions.PositionPicker(picker_config(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES,
                                                    data_stream_verbose=True))
    selected, stage_ids = picker.pick('train', 30, gen(3))
    expected = [sum(selected[i].float().mean().item() for i in range(30) if stage_ids[i] == stage) /
                max(1, int((stage_ids == stage).sum())) for stage in range(len(GOOD_STAGES))]
    assert picker.stage_ratios(selected, stage_ids) == pytest.approx(expected)


@pytest.mark.parametrize('overrides,expected', [
    (dict(mask_probability=0.0), r"mask_probability must be in \(0, 1\], got 0.0"),
    (dict(use_all_stages_for_training=True), r"needs unmasking_stages; set composition_config='complex'"),
    (dict(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES * 3), r"unmasking_stages has 9 stages but batch_size=6"),
    (dict(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES, validation_stages=[{'type': 'span'}]),
     r"validation_stages\[0\] \('span' stage\) is missing 'spans_count'"),
])
def test_picker_errors_name_the_key(overrides, expected):
    with pytest.raises(UserError, match=expected):
        positions.PositionPicker(picker_config(**overrides))


# ---------------------------------------------------------------------------------------------
# the curriculum schedule: stages given, use_all_stages_for_training=False

def curriculum_picker(tmp_path, **overrides):
    return positions.PositionPicker(picker_config(**{'unmasking_stages': GOOD_STAGES, 'data_dir': str(tmp_path),
                                                     **overrides}))


def test_picker_curriculum_takes_each_train_file_from_the_trainers_stage(tmp_path):
    picker = curriculum_picker(tmp_path)
    assert picker.schedule == 'curriculum' and picker.staged
    assert picker.mode_meta() == {'mode': 'curriculum'}
    assert picker.stage_meta() == {'unmasking_stages': GOOD_STAGES, 'validation_stages': GOOD_STAGES}
    selected, stage_ids = picker.pick('train', 12, gen(1))  # no curriculum.json yet: stage 0
    expected = mu.single_stage_masks(GOOD_STAGES, 0, 12, 32, 6, gen(1))
    assert torch.equal(selected, expected[0]) and torch.equal(stage_ids, expected[1])
    queue_io.write_curriculum_state(str(tmp_path), {'stage': 2})
    selected, stage_ids = picker.pick('train', 12, gen(1))
    assert (stage_ids == 2).all() and (runs_per_row(selected) == 3).all()  # the span stage
    assert picker.file_tensors(selected, selected, stage_ids)['stage'].dtype == torch.int8
    # the validation set stays the fixed mix of all stages
    selected, stage_ids = picker.pick('val', 12, gen(2))
    expected = mu.staged_masks(GOOD_STAGES, 12, 32, 6, gen(2))
    assert torch.equal(selected, expected[0]) and torch.equal(stage_ids, expected[1])


def test_picker_curriculum_keeps_its_stage_when_the_file_names_another(tmp_path, capsys):
    picker = curriculum_picker(tmp_path)
    queue_io.write_curriculum_state(str(tmp_path), {'stage': 1})
    assert picker.current_train_stage() == 1
    queue_io.write_curriculum_state(str(tmp_path), {'stage': 7})
    assert picker.current_train_stage() == 1 and picker.current_train_stage() == 1
    out = capsys.readouterr().out
    assert out.count("asks for stage 7 but unmasking_stages has 3; staying at stage 1") == 1, out


def test_picker_curriculum_needs_only_the_validation_list_to_fit_a_batch(tmp_path):
    # train files hold one stage each, so 9 train stages fit batches of 6; the mixed validation list must
    curriculum_picker(tmp_path, unmasking_stages=GOOD_STAGES * 3, validation_stages=GOOD_STAGES)
    with pytest.raises(UserError, match=r"unmasking_stages has 9 stages but batch_size=6"):
        curriculum_picker(tmp_path, unmasking_stages=GOOD_STAGES * 3)


STALE = [dict(stage, val_loss_stale_count=2) for stage in GOOD_STAGES]


@pytest.mark.parametrize('overrides,expected', [
    (dict(unmasking_stages=GOOD_STAGES, mask_probability=0.3), ["mask_probability=0.3 is unused"]),
    (dict(validation_stages=GOOD_STAGES), ["validation_stages is unused without unmasking_stages"]),
    (dict(use_all_stages_for_training=True, unmasking_stages=STALE),
     ["val_loss_stale_count in unmasking_stages is unused: use_all_stages_for_training=True mixes"]),
    (dict(unmasking_stages=STALE, validation_stages=STALE),
     ["val_loss_stale_count in validation_stages is unused"]),
    (dict(unmasking_stages=STALE), []),  # the curriculum reads them
    (dict(use_all_stages_for_training=True, unmasking_stages=GOOD_STAGES), []),
    (dict(), []),
])
def test_unused_position_keys_are_named_once(overrides, expected, tmp_path, capsys):
    cfg = picker_config(data_dir=str(tmp_path), **overrides)
    notes = positions.unused_key_notes(cfg)
    assert len(notes) == len(expected) and all(n.startswith(e) for n, e in zip(notes, expected)), notes
    positions.PositionPicker(cfg)
    assert capsys.readouterr().out == ''.join(f"warning: {note}\n" for note in notes)
