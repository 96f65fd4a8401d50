"""The compare section: variants, frontiers, the significance rule and the detector states by hand;
evaluate.py's compare section end to end on tiny checkpoints."""
import contextlib
import importlib.util
import io
import json
import math
import types

import pytest
import torch

import compare
import eval_common
import eval_compare
import evaluate
import generate
from common import UserError
from configurator import Config
from test_evaluate import VOCAB, save_tiny

A, B = VOCAB['stoi']['a'], VOCAB['stoi']['b']
N_REAL, MASK, WRONG, V = VOCAB['mask_token_id'], VOCAB['mask_token_id'], VOCAB['wrong_token_id'], VOCAB['vocab_size']


# -----------------------------------------------------------------------------
# variants

def test_variants_cover_every_sampler_and_score_once():
    plain = compare.variants()
    assert [v.name for v in plain] == [
        'diffusion.random@unmasking', 'diffusion.intelligent:confidence@unmasking',
        'diffusion.threshold:confidence@unmasking', 'diffusion.mixed:confidence@unmasking',
        'mdlm@unmasking', 'confidence@unmasking', 'remdm:random@unmasking', 'remdm:confidence@unmasking']
    assert not any(v.learned for v in plain) and all(v.passes_per_iteration == 1 for v in plain)
    assert [v.name for v in compare.variants(choice_temperature=4.5)][5:7] == ['confidence@unmasking',
                                                                                'confidence~4.5@unmasking']
    every = compare.variants(('B', 'states'), merged=True)
    added = {v.name: v for v in every[len(plain):]}
    assert set(added) == {
        *(f"diffusion.{mode}:wrong@unmasking+{label}" for mode in ('intelligent', 'threshold', 'mixed')
          for label in ('B', 'states')),
        *(f"diffusion.{mode}:wrong@merged" for mode in ('intelligent', 'threshold', 'mixed')),
        'remdm:wrong@merged', 'mdlm@merged', 'confidence@merged'}
    assert len({v.name for v in every}) == len(every)
    separate = added['diffusion.mixed:wrong@unmasking+B']
    assert separate.learned and separate.passes_per_iteration == 2 and separate.iterations(32) == 16
    merged = added['diffusion.threshold:wrong@merged']
    assert merged.learned and merged.passes_per_iteration == 1 and merged.iterations(32) == 32
    assert not added['mdlm@merged'].learned and not added['confidence@merged'].learned  # baselines of that network
    assert added['remdm:wrong@merged'].learned


# -----------------------------------------------------------------------------
# frontiers

CURVE = ([4.0, 4.5, 5.0], [2.0, 2.5, 3.5])  # (entropy, bits) at three temperatures, in temperature order


@pytest.mark.parametrize('target, expected, how', [
    (4.25, 2.25, 'interpolated'),    # halfway between the first two temperatures
    (4.75, 3.0, 'interpolated'),
    (5.0, 3.5, 'interpolated'),      # on a point
    (5.2, 3.9, 'extrapolated'),      # 0.2 above the range: the line through the two highest (slope 2)
    (3.8, 1.8, 'extrapolated'),      # 0.2 below: the line through the two lowest (slope 1)
    (5.29, 4.08, 'extrapolated'),    # just inside the 0.3-bit allowance
    (5.31, None, 'out of range'),    # just outside it
    (3.6, None, 'out of range'),
])
def test_read_off_by_hand(target, expected, how):
    value, found = compare.read_off(*CURVE, target, tolerance=0.3)
    assert found == how
    assert value == (None if expected is None else pytest.approx(expected))


def test_read_off_takes_the_first_bracketing_temperatures_and_survives_flat_curves():
    # entropy rises then falls: the first pair in temperature order brackets 4.6, not the second
    assert compare.read_off([4.0, 5.0, 4.5], [2.0, 4.0, 2.0], 4.6, 0.3) == (pytest.approx(3.2), 'interpolated')
    assert compare.read_off([4.0, 4.0], [1.0, 3.0], 4.0, 0.3) == (2.0, 'interpolated')  # the two points' mean
    assert compare.read_off([4.0, 4.0], [1.0, 3.0], 4.2, 0.3) == (2.0, 'extrapolated')
    assert compare.read_off([4.0], [1.0], 4.1, 0.3) == (None, 'out of range')  # one point is no curve


def test_frontier_reading_needs_every_seed_in_range():
    both = compare.frontier_reading({1: CURVE, 2: ([4.0, 4.5], [3.0, 3.5])}, 4.25, 0.3)
    assert both['per_seed'] == {1: pytest.approx(2.25), 2: pytest.approx(3.25)}
    assert both['bits_per_char'] == pytest.approx(2.75) and both['se'] == pytest.approx(0.5)  # sd 0.707 / sqrt(2)
    assert both['seeds_in_range'] == 2 and both['how'] == ['interpolated']
    one_out = compare.frontier_reading({1: CURVE, 2: ([3.0, 3.5], [3.0, 3.5])}, 4.25, 0.3)
    assert one_out['bits_per_char'] is None and one_out['se'] is None
    assert one_out['seeds_in_range'] == 1 and one_out['per_seed'][2] is None
    assert one_out['how'] == ['interpolated', 'out of range']


def test_frontiers_group_the_cells_by_budget_variant_and_seed_in_temperature_order():
    def cell(budget, temperature, entropy, bits):
        metrics = dict(char_entropy=entropy, reference_bits_per_char=bits)
        return dict(variant='v', budget=budget, temperature=temperature, per_seed={7: metrics, 8: dict(metrics)})

    cells = [cell(16, 1.0, 5.0, 3.5), cell(16, 0.7, 4.0, 2.0), cell(16, 0.8, 4.5, 2.5), cell(32, 0.7, 9.0, 9.0),
             cell(32, 1.0, 9.5, 9.5)]
    found = compare.frontiers(cells, 4.25, 0.3)
    assert set(found) == {16, 32}
    assert found[16]['v']['per_seed'] == {7: pytest.approx(2.25), 8: pytest.approx(2.25)}
    assert found[16]['v']['se'] == 0.0
    assert found[32]['v']['bits_per_char'] is None  # 4.25 is far below that curve


# -----------------------------------------------------------------------------
# the significance rule

def test_paired_difference_and_two_standard_errors():
    a, b = {1: 3.0, 2: 3.2, 3: 3.1}, {1: 3.5, 2: 3.6, 3: 3.7}
    paired = compare.paired_difference(a, b)  # differences -0.5, -0.4, -0.6: sd 0.1
    assert paired['paired'] and paired['difference'] == pytest.approx(-0.5)
    assert paired['se'] == pytest.approx(0.1 / math.sqrt(3)) and paired['significant']
    unpaired = compare.paired_difference(a, {4: 3.5, 5: 3.6, 6: 3.7})  # other seeds: the two SEs combine
    assert not unpaired['paired'] and unpaired['difference'] == pytest.approx(-0.5)
    assert unpaired['se'] == pytest.approx(math.hypot(0.1 / math.sqrt(3), 0.1 / math.sqrt(3)))
    close = compare.paired_difference({1: 3.0, 2: 3.2, 3: 3.1}, {1: 3.1, 2: 3.1, 3: 3.25})  # -0.1, 0.1, -0.15
    assert close['difference'] == pytest.approx(-0.05) and not close['significant']
    assert compare.exceeds(0.2, 0.1) is False and compare.exceeds(0.2001, 0.1) is True  # *more* than 2 SE
    assert compare.exceeds(-0.3, 0.1) is True and compare.exceeds(0.3, None) is None
    assert compare.paired_difference({1: 3.0}, {1: 3.5})['significant'] is None  # one seed: no SE


def reading(*per_seed):
    values = dict(enumerate(per_seed))
    mean, se = compare.mean_se(values.values()) if None not in per_seed else (None, None)
    return dict(bits_per_char=mean, se=se, per_seed=values)


def test_compare_at_budget_ranks_and_judges_the_two_best():
    readings = dict(conf=reading(3.30, 3.31, 3.29), learned_bad=reading(3.5, 3.6, 3.55), mdlm=reading(3.4, 3.4, 3.45),
                    learned_good=reading(3.10, 3.12, 3.11), far=reading(3.0, None, 3.0))
    learned = dict(conf=False, learned_bad=True, mdlm=False, learned_good=True, far=True)
    ranked = compare.compare_at_budget(readings, learned)
    assert ranked['order'] == ['learned_good', 'conf', 'mdlm', 'learned_bad', 'far']  # out of range last
    assert (ranked['best_learned'], ranked['best_without']) == ('learned_good', 'conf')
    assert ranked['difference']['difference'] == pytest.approx(-0.19) and ranked['learned_wins'] is True
    readings['learned_good'] = reading(3.28, 3.35, 3.30)  # a hair better on average, within the noise
    assert compare.compare_at_budget(readings, learned)['learned_wins'] is False
    readings['learned_good'] = reading(3.5, 3.6, 3.7)
    worse = compare.compare_at_budget(readings, learned)
    assert worse['best_learned'] == 'learned_bad' and worse['difference']['difference'] > 0
    assert worse['learned_wins'] is False
    no_learned = compare.compare_at_budget(dict(conf=readings['conf']), dict(conf=False))
    assert no_learned['best_learned'] is None and no_learned['difference'] is None


# -----------------------------------------------------------------------------
# the detector's states, with models whose answers are known

def two_letters(idx):
    """An unmasking model that ignores its input: p('a') = 0.7, p('b') = 0.3, nothing else; [MASK] and
    [WRONG] get the highest logits (the fills must never draw them)."""
    logits = torch.full((*idx.shape, V), -1e4)
    logits[..., A], logits[..., B] = math.log(0.7), math.log(0.3)
    logits[..., N_REAL:] = 50.0
    return logits


def flags(letter):
    """A remasker whose p([WRONG]) is ~1 exactly where the text shows `letter`."""
    def forward(idx):
        logits = torch.zeros(*idx.shape, V)
        logits[..., WRONG] = torch.where(idx == letter, 30.0, -30.0)
        return logits
    return forward


def test_sampler_states_fill_by_sampling_and_keep_the_rest():
    clean = torch.full((64, 20), A)
    counts = torch.arange(64) % 21  # 0..20 positions per row
    state, filled, p_fill = compare.sampler_states(clean, two_letters, counts, N_REAL, MASK,
                                                   torch.Generator().manual_seed(0))
    assert torch.equal(filled.sum(1), counts) and torch.equal(state[~filled], clean[~filled])
    assert set(state[filled].tolist()) == {A, B}  # never a special token, whatever its logit
    assert torch.allclose(p_fill[filled], torch.where(state[filled] == A, 0.7, 0.3))
    assert (p_fill[~filled] == 0).all()
    share_b = float((state[filled] == B).float().mean())
    assert share_b == pytest.approx(0.3, abs=0.04)  # sampled at temperature 1, not the argmax


def test_detection_scores_the_samplers_own_wrong_fills():
    # clean text of 'a' only: a fill is wrong exactly when it drew 'b' (p = 0.3), where the unmasking
    # model's doubt 1 - p(fill) = 0.7 tops every right fill's 0.3: AUROC 1 for the confidence score
    corpus = eval_common.Corpus('', 'a' * 3000, torch.full((3000,), A), set())
    cm = eval_compare.CompareModels(two_letters, generate.Vocab.from_meta(VOCAB), dict(good=flags(B), inverted=flags(A)),
                                    {}, merged=flags(B))
    cfg = Config(sequence_length=30, detection_rows=40, compare_fill_ratio_range=(0.1, 1.0), eval_batch_size=16)
    windows = eval_common.val_windows(corpus.val_ids, 30)
    state, filled, p_fill, wrong = eval_compare.detector_states(cfg, cm, windows, seed=5)
    assert state.shape == (40, 30) and torch.equal(wrong, state[filled] != A)
    assert filled.sum(1).min() >= 3 and filled.sum(1).max() <= 30  # round(0.1 * 30) .. 30 per row
    report = eval_compare.detection_by_seed(cfg, cm, corpus, seeds=[1, 2, 3])
    auroc = report['auroc']
    assert set(auroc) == {'confidence@unmasking', 'wrong@good', 'wrong@inverted', 'wrong@merged'}
    assert auroc['confidence@unmasking']['per_seed'] == {1: 1.0, 2: 1.0, 3: 1.0}
    assert auroc['wrong@good']['mean'] == 1.0 and auroc['wrong@merged']['mean'] == 1.0
    assert auroc['wrong@inverted']['mean'] == 0.0 and auroc['wrong@inverted']['se'] == 0.0
    assert report['wrong_share']['mean'] == pytest.approx(0.3, abs=0.05) and report['se_across'] == 'seeds'


# -----------------------------------------------------------------------------
# evaluate.py --sections=compare end to end on tiny random-weight checkpoints

@pytest.fixture(scope='module')
def compare_runs(tmp_path_factory, tiny_corpus):
    root = tmp_path_factory.mktemp('compare_runs')
    runs = (('unmask', 'ckpt_unmasking_10.pt', 'unmasking', 'bidirectional'),
            ('remask_b', 'ckpt_remasking_all_positions_10.pt', 'remasking', 'bidirectional'),
            ('states', 'ckpt_remasking_all_positions_10.pt', 'remasking', 'bidirectional'),
            ('merged', 'ckpt_merged_10.pt', 'merged', 'bidirectional'),
            ('ar', 'ckpt_autoregressive_10.pt', 'autoregressive', 'causal'))
    for seed, (folder, name, kind, attention) in enumerate(runs):
        (root / folder).mkdir()
        save_tiny(root / folder / name, tiny_corpus, kind, attention, seed=seed)
    return root


def compare_args(root, *extra):
    return [f'--out_dir={root / "unmask"}', f'--reference_out_dir={root / "ar"}', '--sections=compare',
            f"--compare_remasking_checkpoints=('B={root / 'remask_b'}', '{root / 'states' / 'ckpt_remasking_all_positions_10.pt'}')",
            f'--compare_merged_checkpoint={root / "merged"}', '--compare_budgets=(2, 4, 6)',
            '--compare_temperatures=(1.0, 0.8)', '--compare_seeds=2', '--compare_num_samples=2', '--detection_rows=8',
            '--eval_batch_size=16', '--device=cpu', *extra]


@pytest.fixture(scope='module')
def compare_run(compare_runs, tmp_path_factory):
    """One evaluate.py --sections=compare run on the tiny checkpoints, shared by the tests below: its report,
    what it printed, its output file and, where matplotlib is installed, its plots."""
    folder = tmp_path_factory.mktemp('compare_run')
    has_matplotlib = importlib.util.find_spec('matplotlib') is not None
    plot = ['--plot=True', f'--compare_plot_dir={folder}'] if has_matplotlib else []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = evaluate.main(compare_args(compare_runs, f'--output_file={folder / "compare.json"}', *plot))
    return types.SimpleNamespace(report=report['compare'], printed=printed.getvalue(), folder=folder)


def test_compare_runs_every_variant_at_equal_forward_passes(compare_runs, compare_run):
    report, printed, out = compare_run.report, compare_run.printed, compare_run.folder / 'compare.json'
    for expected in ('compare at 4 forward passes', 'matched diversity at 6 forward passes', 'validation text',
                     'best with a learned remasker', 'detector on the sampler', 'wrong@merged'):
        assert expected in printed, expected
    names = [v.name for v in compare.variants(('B', 'states'), merged=True, choice_temperature=4.5)]
    assert [v['name'] for v in report['variants']] == names
    assert report['checkpoints']['remaskers'] == {'B': str(compare_runs / 'remask_b' / 'ckpt_remasking_all_positions_10.pt'),
                                                  'states': str(compare_runs / 'states' / 'ckpt_remasking_all_positions_10.pt')}
    assert len(report['cells']) == len(names) * 3 * 2
    for cell in report['cells']:
        spent = cell['forward_passes_per_sample']['per_seed']
        if '.threshold' in cell['variant']:  # may stop early, never later
            assert all(0 < passes <= cell['budget'] for passes in spent)
        else:  # every other variant spends exactly the budget, whatever one iteration costs it
            assert spent == [cell['budget']] * 2, cell['variant']
        assert cell['iterations'] == cell['budget'] // (2 if '+' in cell['variant'] else 1)
        assert cell['metrics']['reference_bits_per_char']['se'] is not None
    assert report['target_entropy'] == report['validation_text']['metrics']['char_entropy']['mean']
    for budget in (2, 4, 6):
        assert set(report['frontier'][budget]) == set(names)
        assert set(report['ranking'][budget]['order']) == set(names)
    auroc = report['detection']['auroc']
    assert set(auroc) == {'confidence@unmasking', 'wrong@B', 'wrong@states', 'wrong@merged'}
    assert all(0 <= a['mean'] <= 1 and len(a['per_seed']) == 2 for a in auroc.values())
    saved = json.loads(out.read_text())['compare']
    assert saved['frontier'].keys() == {'2', '4', '6'} and len(saved['cells']) == len(report['cells'])


def test_compare_plots(compare_run):
    pytest.importorskip('matplotlib')
    plots, folder = compare_run.report['plots'], compare_run.folder
    assert plots == dict(quality=str(folder / 'compare_quality.png'), frontier=str(folder / 'compare_frontier.png'))
    assert all(open(path, 'rb').read(4) == b'\x89PNG' for path in plots.values())


@pytest.mark.parametrize('args, message', [
    (['--compare_budgets=(3, 4)'], 'even numbers'),
    (['--compare_budgets=(4, 4)'], 'different even numbers'),
    (['--compare_temperatures=(1.0, 1.0)'], 'at least two different temperatures'),
    (["--compare_remasking_checkpoints=('x=RUNS/remask_b', 'x=RUNS/states')"], 'used twice'),
    (["--compare_remasking_checkpoints=('RUNS/merged',)"], 'pass it in compare_merged_checkpoint'),
    (['--compare_merged_checkpoint=RUNS/remask_b/ckpt_remasking_all_positions_10.pt'],
     'pass it in compare_remasking_checkpoints'),
    (['--reference_out_dir=RUNS/none'], 'needs the autoregressive reference'),
    (['--out_dir=RUNS/merged'], 'as compare_merged_checkpoint'),
])
def test_bad_compare_settings_are_one_line(compare_runs, args, message):
    args = [a.replace('RUNS', str(compare_runs)) for a in args]
    with pytest.raises(UserError, match=message):
        evaluate.main([f'--out_dir={compare_runs / "unmask"}', f'--reference_out_dir={compare_runs / "ar"}',
                       '--sections=compare', '--device=cpu', *args])
