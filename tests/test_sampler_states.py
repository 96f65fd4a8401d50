"""The char_sampler_states provider (data/char_sampler_states/) and what it shares with
char_inference_replacement through data/checkpoint_follower.py, on tiny models and shapes."""
import os

import pytest
import torch

import queue_io
from checkpoints import load_checkpoint, model_from_checkpoint
from common import UserError
from data.char_sampler_states.prepare_streaming import Provider
from objectives import check_queue_fits, merged_labels
from sampling_utils import sample_tokens, select_random
from conftest import (TINY_BLOCK_SIZE as BLOCK_SIZE, TINY_VOCAB as VOCAB, follower_provider_config, logging_provider,
                      save_tiny)

MASK = VOCAB['mask_token_id']
N_CHARS = len(VOCAB['stoi'])


def provider_config(tmp_path, tiny_corpus, **overrides):
    return follower_provider_config(Provider, tmp_path, tiny_corpus, **{
        'dataset': 'char_sampler_states', 'inference_batch_size': 1024, **overrides})


def make_provider(tmp_path, tiny_corpus, **overrides):
    os.makedirs(tmp_path / 'out', exist_ok=True)
    return logging_provider(Provider, provider_config(tmp_path, tiny_corpus, **overrides))


def rows(provider, seed=0, n_rows=64, split='train'):
    """(clean, tensors, stats) of make_rows on n_rows windows."""
    generator = torch.Generator().manual_seed(seed)
    clean = provider.sample_windows(split, n_rows, generator)  # (N, T)
    tensors, stats = provider.make_rows(split, clean, generator)
    return clean, tensors, stats


def written_files(provider, split):
    folder = queue_io.split_dir(provider.data_dir, split)
    return [queue_io.load_batch_file(os.path.join(folder, name)) for name in queue_io.ready_files(folder)]


# -----------------------------------------------------------------------------
# the rows


def test_rows_are_sampler_states_with_full_labels(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    provider = make_provider(tmp_path, tiny_corpus, fill_ratio_range=(0.25, 0.5), fill_iterations=2)
    generator = torch.Generator().manual_seed(0)
    clean = provider.sample_windows('train', 64, generator)
    filled, last_fill = provider.fill_passes(clean, generator)
    counts = last_fill.sum(1)  # (N,) the row's mask level in positions
    assert counts.min() >= round(0.25 * BLOCK_SIZE) and counts.max() <= round(0.5 * BLOCK_SIZE)
    assert counts.unique().numel() > 3  # drawn per row
    assert (filled < N_CHARS).all()  # every position a real character: nothing left masked
    changed = filled != clean
    assert changed.any() and (changed & ~last_fill).any()  # the first pass's fills stay, wrong ones too

    _, tensors, stats = rows(provider)
    x, y = tensors['x'], tensors['y']
    assert (x < N_CHARS).all() and (y < N_CHARS).all()  # no [MASK] asked for, labels full
    assert stats['masked'] == (0.0, 0.0) and stats['checkpoint']['iter'] == 100
    assert stats['wrong'][1] > 0
    meta = provider.build_meta()
    assert meta['corruption_type'] == 'sampler_states' and meta['label_semantics'] == 'full'
    check_queue_fits(meta, 'remasking')  # a separate remasker (Approach B) can learn from it...
    with pytest.raises(UserError, match=r'\[MASK\] positions'):
        check_queue_fits(meta, 'merged')  # ...a merged model cannot: it has nothing to unmask


def test_left_masked_share_follows_its_range_and_makes_a_merged_queue(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    provider = make_provider(tmp_path, tiny_corpus, fill_ratio_range=(0.5, 0.5), left_masked_ratio_range=(0.2, 0.4))
    clean, tensors, stats = rows(provider)
    x, y = tensors['x'], tensors['y']
    masked = (x == MASK).sum(1)  # (N,)
    assert masked.min() >= round(0.2 * BLOCK_SIZE) and masked.max() <= round(0.4 * BLOCK_SIZE)
    assert torch.equal(y, clean)  # full labels: the clean window
    # the labels train.py derives: [WRONG] exactly where a visible character differs from the original
    wrong = (x != clean) & (x != MASK)
    labels = merged_labels(x.long(), y.long(), MASK, VOCAB['wrong_token_id'])
    assert wrong.any() and torch.equal(labels == VOCAB['wrong_token_id'], wrong)
    assert torch.equal(labels[~wrong], clean.long()[~wrong])  # the original at [MASK] and right characters
    meta = provider.build_meta()
    assert meta['mixture_has_mask']
    check_queue_fits(meta, 'merged')
    with pytest.raises(UserError, match='without a \\[MASK\\] share'):
        check_queue_fits(meta, 'remasking')


def test_fills_are_the_models_samples_given_the_masked_context(tmp_path, tiny_corpus):
    path = save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    provider = make_provider(tmp_path, tiny_corpus, fill_ratio_range=(0.2, 0.8), fill_temperature=0.7)
    assert provider.predictor.refresh()
    generator = torch.Generator().manual_seed(5)
    clean = provider.sample_windows('train', 16, generator)
    state = generator.get_state()
    filled, last_fill = provider.fill_passes(clean, generator)

    # reference: the same draws, by hand: the row's level, the positions, one forward pass, sample_tokens
    generator.set_state(state)
    low, high = 0.2, 0.8
    levels = low + (high - low) * torch.rand(16, generator=generator, dtype=torch.float64)
    masked = select_random(torch.ones(16, BLOCK_SIZE, dtype=torch.bool), (levels * BLOCK_SIZE).round().long(),
                           generator)
    model = model_from_checkpoint(load_checkpoint(path))
    with torch.no_grad():
        logits, _ = model(clean.long().masked_fill(masked, MASK))  # (N, T, V)
    tokens, _ = sample_tokens(logits[masked], 0.7, n_real=N_CHARS, generator=generator)
    expected = clean.long().masked_scatter(masked, tokens)
    assert torch.equal(last_fill, masked) and torch.equal(filled.long(), expected)
    assert (filled != clean).float().mean() > 0.1  # a random model gets most of them wrong


def test_same_seed_same_file_and_another_seed_another(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100)
    files = [make_provider(tmp_path, tiny_corpus, left_masked_ratio_range=(0.0, 0.5), fill_iterations=2)
             .make_file('train', 0, seq, 2)[0] for seq in (3, 3, 4)]
    assert torch.equal(files[0]['x'], files[1]['x']) and torch.equal(files[0]['y'], files[1]['y'])
    assert not torch.equal(files[0]['x'], files[2]['x'])


def test_config_errors_are_clear(tmp_path, tiny_corpus):
    for key, value in (('fill_ratio_range', (0.5, 0.2)), ('fill_ratio_range', 0.5),
                       ('left_masked_ratio_range', (0.0, 1.5)), ('fill_iterations', 0), ('fill_temperature', -1.0)):
        with pytest.raises(UserError, match=key):
            Provider(provider_config(tmp_path, tiny_corpus, **{key: value}))
    with pytest.raises(UserError, match='needs checkpoint_dir'):
        Provider(provider_config(tmp_path, tiny_corpus, checkpoint_dir=None, out_dir=None))
    with pytest.raises(UserError, match='inference_training_type'):
        Provider(provider_config(tmp_path, tiny_corpus, inference_training_type='remasking'))


# -----------------------------------------------------------------------------
# following the checkpoints (data/checkpoint_follower.py)


def test_fallback_before_a_checkpoint_then_the_model(tmp_path, tiny_corpus, capsys):
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=True, max_files=1)
    assert provider.run() == 1
    for tensors, info in written_files(provider, 'train') + written_files(provider, 'val'):
        assert info['checkpoint'] == {'path': None, 'iter': None, 'fallback': True, 'refused': None}
        assert (tensors['x'] != tensors['y']).any()  # random characters where the fills go
    assert 'checkpoint=none (random fallback in the fills)' in capsys.readouterr().out
    save_tiny(tmp_path / 'out', 'ckpt_merged_7.pt', 7, training_type='merged')  # another kind: not followed
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_9.pt', 9)
    assert provider.make_file('train', 0, 5, 1)[1]['checkpoint']['iter'] == 9


def test_follows_a_merged_run(tmp_path, tiny_corpus):
    save_tiny(tmp_path / 'out', 'ckpt_unmasking_9.pt', 9)
    save_tiny(tmp_path / 'out', 'ckpt_merged_7.pt', 7, training_type='merged')
    provider = make_provider(tmp_path, tiny_corpus, inference_training_type='merged')
    assert provider.make_file('train', 0, 0, 1)[1]['checkpoint']['path'].endswith('ckpt_merged_7.pt')


def test_refused_checkpoint_keeps_the_previous_model_and_says_why(tmp_path, tiny_corpus, capsys):
    out = tmp_path / 'out'
    good = save_tiny(out, 'ckpt_unmasking_100.pt', 100)
    save_tiny(out, 'ckpt_unmasking_200.pt', 200, vocab_size=VOCAB['vocab_size'] + 3)  # damaged model_args
    provider = make_provider(tmp_path, tiny_corpus, max_files=2)
    assert provider.run() == 2
    for _, info in written_files(provider, 'train') + written_files(provider, 'val'):
        assert info['checkpoint']['path'] == good
        assert 'vocab_size' in info['checkpoint']['refused']
    assert sum(line.startswith('refusing checkpoint') for line in provider.logged) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if 'sampler states:' in line]
    assert lines and all(f'iter=100, REFUSED {out / "ckpt_unmasking_200.pt"}' in line for line in lines)


def test_waits_for_a_checkpoint_without_fallback(tmp_path, tiny_corpus):
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=False)
    provider.should_stop = lambda: len(provider.logged) > 0  # stop after the first line
    provider.beat = lambda status, force=False: None  # not started: no worker id to beat for
    assert not provider.wait_until_ready()
    assert provider.logged[0].startswith(f"waiting: no checkpoint in {tmp_path / 'out'} yet (ckpt_unmasking_<iter>.pt")


def test_waiting_for_a_fitting_checkpoint_says_which_one_is_refused_and_why(tmp_path, tiny_corpus):
    bad = save_tiny(tmp_path / 'out', 'ckpt_unmasking_100.pt', 100, block_size=BLOCK_SIZE * 2)
    provider = make_provider(tmp_path, tiny_corpus, fallback_to_random=False)
    beats = []
    provider.should_stop = lambda: len(beats) > 0  # stop after the first heartbeat
    provider.beat = lambda status, force=False: beats.append(provider.heartbeat_extras())
    assert not provider.wait_until_ready()
    reason = beats[0]['waiting_for']
    assert reason.startswith(f"the newest checkpoint in {tmp_path / 'out'} does not fit ({bad}: its block_size=")
    assert reason.endswith("train one there that fits, or set fallback_to_random=True to start with random "
                           "characters meanwhile")
    assert f"waiting: {reason}" in provider.logged
