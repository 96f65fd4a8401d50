"""The learning-rate schedules (cosine, warmup-stable-decay) and a wsd branch end to end: a short
decay started from a stable-phase checkpoint of another run, into its own out_dir, resumed."""
import math
import os
import re

import pytest
import torch

from configurator import Config
from conftest import copy_folder, run_main
from test_train import error_lines, train_args


def schedule(**overrides):
    values = dict(decay_lr=True, lr_schedule='wsd', learning_rate=1e-3, min_lr=1e-4, warmup_iters=10,
                  lr_decay_iters=100, max_iters=100, decay_fraction=0.2, decay_start=None)
    return Config(dict(values, **overrides))


def test_wsd_warms_up_holds_then_decays_to_min_lr():
    import train
    cfg = schedule()
    lrs = [train.get_lr(it, cfg) for it in range(101)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[9] == pytest.approx(1e-3 * 10 / 11)  # warmup
    assert all(lr == 1e-3 for lr in lrs[10:81])                                             # stable to iter 80
    assert lrs[100] == pytest.approx(1e-4)                                                   # min_lr at max_iters
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))                                    # strictly down
    # 1 - sqrt(progress): a quarter of the way down the decay, half of the range is gone
    assert lrs[85] == pytest.approx(1e-4 + (1 - math.sqrt(0.25)) * 9e-4)


def test_wsd_decay_start_comes_from_the_key_a_branch_or_the_fraction():
    import train
    assert train.wsd_decay_start(schedule()) == 80
    assert train.wsd_decay_start(schedule(decay_fraction=0.5)) == 50
    assert train.wsd_decay_start(schedule(), branched_at=64) == 64
    assert train.wsd_decay_start(schedule(decay_start=70), branched_at=64) == 70
    cfg = schedule()
    assert train.get_lr(70, cfg, decay_start=64) < 1e-3 == train.get_lr(63, cfg, decay_start=64)


def test_cosine_stays_the_default_schedule():
    import train
    cfg = schedule(lr_schedule='cosine')
    assert train.DEFAULTS['lr_schedule'] == 'cosine'
    assert train.get_lr(10, cfg) == pytest.approx(1e-3)
    assert train.get_lr(55, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert train.get_lr(100, cfg) == pytest.approx(1e-4) == train.get_lr(150, cfg)


@pytest.mark.parametrize('overrides, message', [
    (['--lr_schedule=linear'], "lr_schedule='linear' is unknown"),
    (['--lr_schedule=wsd', '--decay_fraction=0.0'], 'decay_fraction=0.0 must be in (0, 1]'),
    (['--init_from=branch'], 'needs branch_from'),
])
def test_schedule_and_branch_settings_are_checked_in_one_line(overrides, message, tiny_corpus, tmp_path):
    code, out = run_main(train_args(tiny_corpus, tmp_path / 'q', tmp_path / 'out', '--start_producer=False',
                                    *overrides))
    assert code == 2 and len(error_lines(out)) == 1 and message in error_lines(out)[0], out


def lrs_logged(out):
    return {int(it): float(lr) for it, lr in re.findall(r'^iter (\d+)/\d+ \| loss \S+ \| lr (\S+)', out, re.M)}


@pytest.mark.xdist_group('trained_run')
def test_a_branch_decays_from_a_stable_checkpoint_into_its_own_out_dir(tiny_corpus, filled_queue, trained_run,
                                                                       tmp_path):
    main_dir, branch_dir = tmp_path / 'main', tmp_path / 'branch'
    queued = copy_folder(filled_queue, tmp_path)  # 24 batches for the 20 steps below
    wsd = ['--lr_schedule=wsd', '--learning_rate=1e-3', '--min_lr=1e-4', '--always_save_checkpoint=True']
    code, out = run_main(train_args(tiny_corpus, queued, main_dir, '--max_iters=8', '--start_producer=False', *wsd))
    assert code == 0, out
    stable = torch.load(main_dir / 'ckpt_unmasking_4.pt', weights_only=True)
    assert 'optimizer' in stable and stable['iter_num'] == 4  # every wsd checkpoint can start a branch

    # the weights-only checkpoint of a cosine run cannot: one line
    cosine = trained_run.out_dir / 'ckpt_unmasking_4.pt'
    assert 'optimizer' not in torch.load(cosine, weights_only=True)
    code, out = run_main(train_args(tiny_corpus, queued, tmp_path / 'b0', '--max_iters=8', '--start_producer=False',
                                    '--init_from=branch', f'--branch_from={cosine}'))
    assert code == 2 and 'no optimizer state' in error_lines(out)[0], out

    branch = ['--init_from=branch', f'--branch_from={main_dir / "ckpt_unmasking_4.pt"}', *wsd]
    source_files = sorted(os.listdir(main_dir))
    code, out = run_main(train_args(tiny_corpus, queued, branch_dir, '--max_iters=6', '--start_producer=False', *branch))
    assert code == 0, out
    assert 'branched into' in out and 'at iter 4' in out and 'until iter 4' in out, out
    logged = lrs_logged(out)
    assert sorted(logged) == [5, 6] and logged[5] == 1e-3 > logged[6] > 1e-4  # the decay starts at the branch point
    ends = torch.load(branch_dir / 'ckpt.pt', weights_only=True)
    assert ends['iter_num'] == 6 and ends['branched_at'] == 4 and ends['run_id'] != stable['run_id']
    assert all(int(s['step']) == 6 for s in ends['optimizer']['state'].values())  # the source's 4 steps came along
    assert sorted(os.listdir(main_dir)) == source_files  # the source run is left as it was
    assert torch.load(main_dir / 'ckpt.pt', weights_only=True)['iter_num'] == 8

    # resumed with a longer max_iters, the branch still decays from its branch point
    code, out = run_main(train_args(tiny_corpus, queued, branch_dir, '--max_iters=8', '--start_producer=False',
                                    '--init_from=resume', *wsd))
    assert code == 0, out
    assert 'until iter 4' in out and max(lrs_logged(out).values()) < 1e-3, out

    # a branch into the source's own folder is refused
    code, out = run_main(train_args(tiny_corpus, queued, main_dir, '--max_iters=12', '--start_producer=False', *branch))
    assert code == 2 and 'out_dir of its own' in error_lines(out)[0], out
