"""The char_inference_replacement provider and its checkpoint watcher, on tiny models and shapes."""
import os
import threading
import time

import pytest
import torch

import queue_io
from common import UserError
from data.checkpoint_predictor import CheckpointPredictionCorruptor
from data.char_inference_replacement.prepare_streaming import BRANCH_NAMES, Provider
from model import GPT, GPTConfig
from conftest import (TINY_BLOCK_SIZE as BLOCK_SIZE, TINY_VOCAB as VOCAB, follower_provider_config, logging_provider,
                      save_tiny, tiny_checkpoint)


# -----------------------------------------------------------------------------
# helpers


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def watcher(folder, log=None, clock=None, **kwargs):
    return CheckpointPredictionCorruptor(str(folder), 'unmasking', VOCAB['stoi'], BLOCK_SIZE,
                                         log=log if log is not None else (lambda line: None),
                                         clock=clock or FakeClock(), **kwargs)


def provider_config(tmp_path, tiny_corpus, **overrides):
    return follower_provider_config(Provider, tmp_path, tiny_corpus, **{
        'dataset': 'char_inference_replacement', 'mask_probability': 0.5, **overrides})


def make_provider(tmp_path, tiny_corpus, **overrides):
    os.makedirs(tmp_path / 'out', exist_ok=True)
    return logging_provider(Provider, provider_config(tmp_path, tiny_corpus, **overrides))


def corrupt(provider, split='train', rows=64, seed=0):
    """(clean, selected, x, branch) for `rows` windows, as make_rows would make them."""
    generator = torch.Generator().manual_seed(seed)
    clean = provider.sample_windows(split, rows, generator)  # (N, T)
    selected, _ = provider.positions.pick(split, rows, generator)  # (N, T)
    x, branch = provider.corrupt(split, clean, selected, generator)
    return clean, selected, x, branch


def written_files(provider, split):
    folder = queue_io.split_dir(provider.data_dir, split)
    return [queue_io.load_batch_file(os.path.join(folder, name)) for name in queue_io.ready_files(folder)]


# -----------------------------------------------------------------------------
# the watcher


def test_watcher_picks_newest_iteration_among_decoys(tmp_path):
    save_tiny(tmp_path, 'ckpt_unmasking_200.pt', 200)
    old_but_touched = save_tiny(tmp_path, 'ckpt_unmasking_100.pt', 100)
    os.utime(old_but_touched, (time.time() + 100, time.time() + 100))  # newest file time, older iteration
    save_tiny(tmp_path, 'ckpt_remasking_all_positions_900.pt', 900, training_type='remasking')
    save_tiny(tmp_path, 'ckpt.pt', 950)
    save_tiny(tmp_path, 'ckpt_unmasking_999.pt.bak', 999)
    save_tiny(tmp_path, '.ckpt_unmasking_998.pt.tmp-1-0', 998)
    predictor = watcher(tmp_path)
    assert predictor.refresh()
    assert predictor.source() == {'path': str(tmp_path / 'ckpt_unmasking_200.pt'), 'iter': 200, 'fallback': False,
                                  'refused': None}


def test_watcher_falls_back_to_ckpt_pt_of_its_kind_only(tmp_path):
    save_tiny(tmp_path, 'ckpt.pt', 50, training_type='remasking')
    lines = []
    predictor = watcher(tmp_path, log=lines.append)
    assert not predictor.refresh()
    assert 'remasking_all_positions checkpoint, not unmasking' in lines[-1]
    save_tiny(tmp_path, 'ckpt.pt', 60)
    assert predictor.refresh() and predictor.source()['iter'] == 60


def test_corrupt_checkpoint_is_refused_once_and_previous_model_kept(tmp_path):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', 100)
    lines = []
    predictor = watcher(tmp_path, log=lines.append, refresh_seconds=0.0)
    assert predictor.refresh()
    model = predictor.model
    whole = (tmp_path / 'ckpt_unmasking_100.pt').read_bytes()
    (tmp_path / 'ckpt_unmasking_200.pt').write_bytes(whole[:len(whole) // 2])  # half-written, not atomic
    (tmp_path / 'ckpt_unmasking_300.pt').write_bytes(b'not a checkpoint')
    predictor.refresh()
    predictor.refresh()  # the same bad files are not read again
    refusals = [line for line in lines if line.startswith('refusing')]
    assert len(refusals) == 2 and all('keeping ckpt_unmasking_100.pt (iter 100)' in line for line in refusals)
    assert predictor.model is model and predictor.iter_num == 100
    save_tiny(tmp_path, 'ckpt_unmasking_300.pt', 300)  # rewritten: a new signature, tried again
    assert predictor.refresh() and predictor.iter_num == 300


def test_mismatched_block_size_and_vocabulary_are_refused(tmp_path):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', 100, block_size=BLOCK_SIZE * 2)
    other_stoi = dict(VOCAB['stoi'], **{'\u00e9': len(VOCAB['stoi'])})
    save_tiny(tmp_path, 'ckpt_unmasking_50.pt', 50, stoi=other_stoi)
    lines = []
    assert not watcher(tmp_path, log=lines.append).refresh()
    assert f"block_size={BLOCK_SIZE * 2} differs from the dataset's block_size={BLOCK_SIZE}" in lines[0]
    assert 'vocabulary (stoi) differs' in lines[1]


def test_reloads_respect_the_refresh_interval(tmp_path):
    clock = FakeClock()
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', 100)
    predictor = watcher(tmp_path, clock=clock, refresh_seconds=10.0)
    assert predictor.refresh() and predictor.iter_num == 100
    save_tiny(tmp_path, 'ckpt_unmasking_200.pt', 200)
    clock.now = 9.0
    predictor.refresh()
    assert predictor.iter_num == 100
    clock.now = 10.0
    predictor.refresh()
    assert predictor.iter_num == 200


def test_trainer_saving_while_watcher_polls_never_gives_a_load_error(tmp_path):
    """train.py's pattern: atomic saves of new iterations, the oldest pruned, while the watcher reads."""
    stop = threading.Event()

    def trainer():
        iter_num = 0
        while not stop.is_set():
            iter_num += 1
            save_tiny(tmp_path, f'ckpt_unmasking_{iter_num}.pt', iter_num)
            save_tiny(tmp_path, 'ckpt.pt', iter_num)
            stale = tmp_path / f'ckpt_unmasking_{iter_num - 2}.pt'
            if stale.exists():
                stale.unlink()

    lines = []
    predictor = watcher(tmp_path, log=lines.append, refresh_seconds=0.0)
    thread = threading.Thread(target=trainer)
    thread.start()
    try:
        seen = set()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            predictor.refresh()
            seen.add(predictor.iter_num)
    finally:
        stop.set()
        thread.join()
    assert not [line for line in lines if line.startswith('refusing')], lines
    assert len(seen - {None}) >= 3  # it did follow the run


# -----------------------------------------------------------------------------
# the provider


def test_config_errors_are_clear(tmp_path, tiny_corpus):
    with pytest.raises(UserError, match='needs checkpoint_dir'):
        Provider(provider_config(tmp_path, tiny_corpus, checkpoint_dir=None, out_dir=None))
    with pytest.raises(UserError, match='train_corruption_mixture'):
        Provider(provider_config(tmp_path, tiny_corpus, train_corruption_mixture=(0.5, 0.5, 0.0)))
    with pytest.raises(UserError, match='train_corruption_mixture'):
        Provider(provider_config(tmp_path, tiny_corpus, train_corruption_mixture=(0.5, -0.1, 0.3, 0.3)))
    with pytest.raises(UserError, match='train_corruption_mixture'):
        Provider(provider_config(tmp_path, tiny_corpus, train_corruption_mixture=(0, 0, 0, 0)))
    # out_dir (train.py's key, same namespace) stands in for checkpoint_dir
    provider = Provider(provider_config(tmp_path, tiny_corpus, checkpoint_dir=None, out_dir=str(tmp_path / 'o')))
    assert provider.predictor.checkpoint_dir == str(tmp_path / 'o')


def test_prediction_positions_hold_the_argmax_given_the_masked_context(tmp_path, tiny_corpus):
    provider = make_provider(tmp_path, tiny_corpus, train_corruption_mixture=(0.5, 0.2, 0.2, 0.1))
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    assert provider.predictor.refresh()
    clean, selected, x, branch = corrupt(provider)
    # reference: the model on the input where every picked position is [MASK]
    model = GPT(GPTConfig(**tiny_checkpoint(100)['model_args']))
    model.load_state_dict(tiny_checkpoint(100)['model'])
    model.eval()
    with torch.no_grad():
        logits, _ = model(clean.masked_fill(selected, VOCAB['mask_token_id']).long())  # (N, T, V)
    logits[..., len(VOCAB['stoi']):] = float('-inf')  # special tokens are never predicted
    predicted = branch == BRANCH_NAMES.index('prediction')
    assert predicted.sum() > 50
    assert torch.equal(x[predicted].long(), logits.argmax(dim=-1)[predicted])
    assert (x[selected] < len(VOCAB['stoi'])).logical_or(branch[selected] == BRANCH_NAMES.index('mask')).all()


def test_prediction_sampling_uses_the_temperature(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    outputs = {}
    for sampling, temperature in ((False, 100.0), (True, 1e-6), (True, 100.0)):
        provider = make_provider(tmp_path, tiny_corpus, train_corruption_mixture=(1.0, 0.0, 0.0, 0.0),
                                 prediction_sampling=sampling, prediction_temperature=temperature)
        provider.predictor.refresh()
        clean, selected, x, branch = corrupt(provider)
        outputs[(sampling, temperature)] = x[selected]
    argmax = outputs[(False, 100.0)]
    assert (outputs[(True, 1e-6)] == argmax).float().mean() > 0.95  # a cold sample is the argmax
    assert (outputs[(True, 100.0)] == argmax).float().mean() < 0.5  # a hot one is spread out
    assert (outputs[(True, 100.0)] < len(VOCAB['stoi'])).all()


def test_branch_shares_follow_the_mixture(tmp_path, tiny_corpus):
    mixture = (0.4, 0.3, 0.2, 0.1)
    provider = make_provider(tmp_path, tiny_corpus, train_corruption_mixture=mixture, fallback_to_random=True)
    for split in ('train', 'val'):  # one mixture for both splits
        _, selected, x, branch = corrupt(provider, split, rows=256)
        shares = torch.bincount(branch[selected].long(), minlength=4).double() / selected.sum()
        assert torch.allclose(shares, torch.tensor(mixture, dtype=torch.double), atol=0.04), (split, shares)
        assert (x[branch == BRANCH_NAMES.index('mask')] == VOCAB['mask_token_id']).all()


def test_fallback_produces_files_before_any_checkpoint(tmp_path, tiny_corpus, capsys):
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=True)
    assert provider.run() == 2
    files = written_files(provider, 'train') + written_files(provider, 'val')
    assert len(files) == 3
    for tensors, info in files:
        assert info['checkpoint'] == {'path': None, 'iter': None, 'fallback': True, 'refused': None}
        assert tensors['x'].shape == (16, BLOCK_SIZE) and torch.equal(tensors['y'].long() >= 0,
                                                                      torch.ones(16, BLOCK_SIZE, dtype=torch.bool))
    meta = queue_io.read_meta(provider.data_dir)
    assert meta['corruption_type'] == 'inference_replacement' and meta['mixture_has_mask']
    assert meta['corruption']['mixture'] == dict(zip(BRANCH_NAMES, (0.6, 0.2, 0.1, 0.1)))
    assert 'checkpoint=none (random fallback in the prediction branch)' in capsys.readouterr().out


def test_bad_checkpoint_is_refused_and_the_provider_keeps_producing(tmp_path, tiny_corpus):
    out = tmp_path / 'out'
    good = save_tiny(out, 'ckpt_unmasking_100.pt', 100)
    save_tiny(out, 'ckpt_unmasking_200.pt', 200, block_size=BLOCK_SIZE // 2)
    provider = make_provider(tmp_path, tiny_corpus, max_files=3)
    assert provider.run() == 3
    bad = f"{out / 'ckpt_unmasking_200.pt'}: its block_size={BLOCK_SIZE // 2} differs from the dataset's"
    for _, info in written_files(provider, 'train') + written_files(provider, 'val'):
        assert info['checkpoint']['path'] == good and info['checkpoint']['iter'] == 100
        assert info['checkpoint']['refused'].startswith(bad)  # the file says it is not from the newest
    assert sum(line.startswith('refusing checkpoint') for line in provider.logged) == 1


def test_log_line_has_every_field(tmp_path, tiny_corpus, capsys):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    provider = make_provider(tmp_path, tiny_corpus, max_files=1, train_corruption_mixture=(0.4, 0.3, 0.2, 0.1))
    provider.run()
    line = [line for line in capsys.readouterr().out.splitlines() if 'mask ratios' in line][-1]
    assert line.startswith('[char_inference_replacement')
    fields = ['initial min/max=', 'final min/max='] + [f'{name} total=' for name in BRANCH_NAMES] + \
             [f'{name} change frac=' for name in BRANCH_NAMES]
    for field in fields:
        assert field in line, (field, line)
    assert line.endswith(f"checkpoint={tmp_path / 'out' / 'ckpt_unmasking_100.pt'} iter=100")


def test_without_fallback_the_provider_waits_with_a_fresh_heartbeat(tmp_path, tiny_corpus):
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=False)
    beats = []

    def look_then_stop():
        beats.extend(queue_io.live_producers(provider.data_dir))
        provider.request_stop()

    provider.start()
    try:
        started = time.time()
        threading.Timer(2.5, look_then_stop).start()  # longer than the heartbeat period
        assert provider.produce() == 0
    finally:
        provider.close()
    reason = (f"no checkpoint in {tmp_path / 'out'} yet (ckpt_unmasking_<iter>.pt or ckpt.pt): "
              f"train the run that saves there, ")
    assert any(line.startswith(f"waiting: {reason}") for line in provider.logged)
    assert beats and beats[0]['status'] == 'waiting for a checkpoint' and beats[0]['time'] > started + 1.0
    # the same reason in the heartbeat, for train.py's console; gone once the waiting is over
    assert beats[0]['waiting_for'].startswith(reason) and 'fallback_to_random=True' in beats[0]['waiting_for']
    assert provider.heartbeat_extras() == {}
    assert written_files(provider, 'train') == [] and written_files(provider, 'val') == []


def test_waiting_provider_starts_once_a_checkpoint_appears(tmp_path, tiny_corpus):
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=False, max_files=1)
    threading.Timer(0.5, save_tiny, (tmp_path / 'out', 'ckpt_unmasking_7.pt', 7)).start()
    beats = []
    provider.beat = lambda status, force=False: beats.append(status)
    assert provider.run() == 1
    assert 'waiting for a checkpoint' in beats
    assert all(info['checkpoint']['iter'] == 7 for _, info in written_files(provider, 'train'))


# -----------------------------------------------------------------------------
# checkpoints that do not fit: never silent (issue 12, items 6 and 13)


def test_damaged_vocab_size_is_refused_like_the_others_also_after_a_restart(tmp_path, tiny_corpus):
    out = tmp_path / 'out'
    good = save_tiny(out, 'ckpt_unmasking_100.pt', 100)
    save_tiny(out, 'ckpt_unmasking_200.pt', 200, vocab_size=VOCAB['vocab_size'] + 5)  # model_args disagree
    for start in ('first', 'restart while the damaged file is still the newest'):
        provider = make_provider(tmp_path, tiny_corpus, max_files=1)
        assert provider.run() == 1, start  # no IndexError from predict: the file is never used
        refusals = [line for line in provider.logged if line.startswith('refusing checkpoint')]
        assert len(refusals) == 1 and f"vocab_size={VOCAB['vocab_size'] + 5} does not fit" in refusals[0], start
        assert all(info['checkpoint']['path'] == good for _, info in written_files(provider, 'train'))


def test_damaged_vocab_size_alone_gives_the_fallback_and_says_why(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_200.pt', 200, vocab_size=VOCAB['vocab_size'] - 1)
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=True, max_files=1)
    assert provider.run() == 1
    for _, info in written_files(provider, 'train'):
        assert info['checkpoint']['fallback'] and 'does not fit its vocabulary' in info['checkpoint']['refused']


def test_refused_checkpoint_with_fallback_is_repeated_in_every_line_and_the_heartbeat(tmp_path, tiny_corpus, capsys):
    from producer import ProducerWarnings
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_500.pt', 500, block_size=BLOCK_SIZE * 2)
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=True, max_files=3)
    reason = f"its block_size={BLOCK_SIZE * 2} differs from the dataset's block_size={BLOCK_SIZE}"
    provider.start()
    try:
        assert provider.produce() == 3
        beats = queue_io.live_producers(provider.data_dir)  # the beat after the first file carried it at once
        warnings = ProducerWarnings(provider.data_dir)
        first, again = warnings.check(), warnings.check()
    finally:
        provider.close()
    assert sum(line.startswith('refusing checkpoint') for line in provider.logged) == 1  # refused once...
    lines = [line for line in capsys.readouterr().out.splitlines() if 'mask ratios' in line]
    assert len(lines) == 4 and all(reason in line and 'random fallback' in line for line in lines)  # ...said always
    assert len(beats) == 1 and reason in beats[0]['warning'] and 'random characters' in beats[0]['warning']
    assert first == [beats[0]['warning']] and again == []  # the trainer prints it once


def test_heartbeat_warning_goes_when_a_good_checkpoint_loads(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_500.pt', 500, block_size=BLOCK_SIZE * 2)
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=True)
    provider.make_file('train', 0, 0, 1)
    assert 'block_size' in provider.heartbeat_extras()['warning']
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_600.pt', 600)
    provider.make_file('train', 0, 1, 1)
    assert provider.heartbeat_extras() == {}
