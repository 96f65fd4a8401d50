"""The compute curve's pieces with hand-made reports: which runs make a point, the mean ± SE across
seeds, the trend of the relative gap and where it crosses a target, and the plot file."""
import json
import math

import pytest
import torch

import eval_curve as ec


def report(tokens, nelbo, ar, *, se=0.01, train=None):
    gap = nelbo - ar
    return dict(tokens=tokens,
                val=dict(elbo=dict(bits_per_char=nelbo, se=se), reference=dict(bits_per_char=ar, se=se),
                         gap=dict(bits_per_char=gap, se=se, relative=nelbo / ar - 1, relative_se=se)),
                train=None if train is None else dict(elbo=dict(bits_per_char=train[0]),
                                                      reference=dict(bits_per_char=train[1])),
                samples=dict(reference_bits_per_char=4.0, char_entropy=4.5, valid_word_share=0.5))


def test_points_are_seed_and_scale_pairs_with_both_kinds_finished(tmp_path):
    for name in ('diffusion-s1-x1', 'ar-s1-x1', 'diffusion-s1-x2', 'ar-s1-x2', 'diffusion-s2-x1', 'ar-s2-x4',
                 'diffusion-s1-x2-cosine', 'notes'):
        (tmp_path / name).mkdir()
    points = ec.find_points(str(tmp_path), finished=lambda path: not path.endswith('ar-s1-x2'))
    assert list(points) == [(1, 1)]  # s1-x2's ar run is not finished; s2 has no pair; the cosine check is no point
    assert points[(1, 1)] == {'diffusion': str(tmp_path / 'diffusion-s1-x1'), 'ar': str(tmp_path / 'ar-s1-x1')}


def test_rows_average_over_seeds_with_standard_errors():
    reports = {(1, 1): report(100, 3.4, 2.4), (2, 1): report(100, 3.2, 2.4), (1, 2): report(200, 3.0, 2.3)}
    one, two = ec.curve_rows(reports)
    assert (one['scale'], one['seeds'], two['seeds']) == (1, 2, 1)
    assert one['nelbo'][0] == pytest.approx(3.3) and one['nelbo'][1] == pytest.approx(0.1)  # SE of (3.4, 3.2)
    assert one['relative_gap'][0] == pytest.approx((3.4 / 2.4 + 3.2 / 2.4) / 2 - 1)
    assert math.isnan(two['nelbo'][1]) and ec.error_bar(two, 'nelbo') == 0.01  # one seed: the run's own SE
    assert one['nelbo_train'] == (None, None)


def test_gap_trend_interpolates_inside_the_range_and_extrapolates_past_it():
    # relative gap 0.40, 0.30, 0.20 at 100, 200, 400 tokens: -0.10 per doubling
    reports = {(1, s): report(100 * s, 2.0 * (1.4 - 0.1 * math.log2(s)), 2.0) for s in (1, 2, 4)}
    trend = ec.gap_trend(reports, targets=(0.28, 0.20, 0.10))
    assert trend['slope_per_doubling'] == pytest.approx(-0.10) and trend['slope_se'] == pytest.approx(0.0, abs=1e-9)
    assert trend['crossings'][0.28]['how'] == 'measured'
    assert trend['crossings'][0.28]['tokens'] == pytest.approx(2 ** (math.log2(200) + 0.2))
    assert trend['crossings'][0.20] == dict(tokens=pytest.approx(400.0), how='measured')
    assert trend['crossings'][0.10] == dict(tokens=pytest.approx(800.0), how='extrapolated')
    flat = {(1, s): report(100 * s, 3.0, 2.0) for s in (1, 2)}
    assert ec.gap_trend(flat, targets=(0.28,))['crossings'][0.28] is None  # a gap that does not fall never crosses


def test_plot_writes_a_png(tmp_path):
    plt = pytest.importorskip('matplotlib.pyplot')
    reports = {(1, s): report(100 * s, 3.0 - 0.2 * s, 2.5 - 0.1 * s, train=(2.9 - 0.2 * s, 2.4 - 0.12 * s))
               for s in (1, 2, 4)}
    path = tmp_path / 'curve.png'
    ec.plot_curve(plt, ec.curve_rows(reports), str(path), 'test')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# -----------------------------------------------------------------------------
# evaluate.py --sections=curve on tiny checkpoints

def save_run(folder, kind, iter_num, corpus, seed):
    """A finished run as train.py leaves it: ckpt_<kind>_<iter>.pt and ckpt.pt, max_iters reached."""
    from checkpoints import save_checkpoint
    from test_evaluate import save_tiny
    folder.mkdir()
    training_type, attention = ('unmasking', 'bidirectional') if kind == 'diffusion' else ('autoregressive', 'causal')
    path = folder / f'ckpt_{training_type}_{iter_num}.pt'
    save_tiny(path, corpus, training_type, attention, seed=seed)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(iter_num=iter_num, config=dict(checkpoint['config'], max_iters=iter_num, gradient_accumulation_steps=1))
    for name in (path.name, 'ckpt.pt'):
        save_checkpoint(checkpoint, str(folder / name))


def test_curve_section_evaluates_every_point_once_and_plots(tmp_path, tiny_corpus, capsys):
    pytest.importorskip('matplotlib')
    import evaluate
    from test_evaluate import TINY_ARGS
    for seed in (1, 2):
        for scale in (1, 2):
            for kind in ('diffusion', 'ar'):
                save_run(tmp_path / f'{kind}-s{seed}-x{scale}', kind, 10 * scale, tiny_corpus, seed=seed + scale)
    args = ['--sections=curve', f'--curve_dir={tmp_path}', '--plot=True', *TINY_ARGS]
    report = evaluate.main(args)['curve']
    out = capsys.readouterr().out
    assert 'compute curve' in out and 'points per doubling' in out and 'gap under 28%' in out
    assert [(row['scale'], row['seeds'], row['tokens']) for row in report['rows']] == [(1, 2, 10 * 4 * 32), (2, 2, 20 * 4 * 32)]
    point = report['points']['s1-x2']
    assert point['val']['elbo']['windows'] == point['train']['elbo']['windows'] > 1  # as many training windows
    assert point['val']['reference']['bits_per_char'] > 0 and point['samples']['num_samples'] == 2
    assert point['samples']['forward_passes'] == 6 and point['samples']['sampler'] == 'confidence'
    assert (tmp_path / 'compute_curve.png').read_bytes()[:4] == b'\x89PNG'
    # a point is evaluated once: its cached report is read back (here, edited by hand)
    cached = tmp_path / 'eval' / 'point-s1-x1.json'
    edited = json.loads(cached.read_text())
    edited['val']['elbo']['bits_per_char'] = 123.0
    cached.write_text(json.dumps(edited))
    again = evaluate.main(args)['curve']
    assert again['points']['s1-x1']['val']['elbo']['bits_per_char'] == 123.0
    assert again['points']['s2-x2'] == json.loads(json.dumps(report['points']['s2-x2']))


def test_curve_section_runs_alone_on_a_folder(tmp_path, capsys):
    from conftest import run_script
    code, out = run_script(['evaluate.py', '--sections=curve,loss', f'--curve_dir={tmp_path}'], timeout=60)
    assert code == 2 and 'sections=curve runs alone' in out
    code, out = run_script(['evaluate.py', '--sections=curve', f'--curve_dir={tmp_path}'], timeout=60)
    assert code == 2 and 'no finished pair of runs' in out, out
