"""Opening a file never runs code: crafted checkpoints and meta.pkl files whose pickle would create a
marker file are refused by every script that opens them (one line, no marker); the project's own
checkpoints load with weights_only=True; trust_checkpoint_pickle opens a trusted old checkpoint."""
import os
import pickle

import numpy as np
import pytest
import torch

import checkpoints
import queue_io
from common import UserError
from configurator import Config
from conftest import copy_folder, run_main
from test_inference_replacement import BLOCK_SIZE, save_tiny, tiny_checkpoint
from test_train import data_args, error_lines, train_args


class Payload:
    """Unpickling this creates `marker`: what a crafted file would do with os.system instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def plant_checkpoint(path, marker, iter_num=200):
    """A checkpoint that looks like train.py's, with the payload in its config."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(dict(tiny_checkpoint(iter_num), config={'payload': Payload(marker)}), path)
    return str(path)


def plant_meta(data_dir, marker):
    os.makedirs(data_dir, exist_ok=True)
    with open(queue_io.meta_path(str(data_dir)), 'wb') as f:
        pickle.dump({'stoi': {'a': 0}, 'payload': Payload(marker)}, f)


@pytest.fixture
def trained(trained_run):
    """(data_dir, out_dir) of a 4-iteration tiny run: real checkpoints, a queue with its meta.pkl."""
    return trained_run.data_dir, trained_run.out_dir


def one_error_line(code, out, *words):
    lines = error_lines(out)
    assert code == 2 and len(lines) == 1, out
    assert 'Traceback' not in out, out
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -----------------------------------------------------------------------------
# the project's own files


@pytest.mark.xdist_group('trained_run')
def test_project_checkpoints_load_weights_only(trained):
    _, out_dir = trained
    for name in ('ckpt_unmasking_4.pt', 'ckpt.pt'):
        checkpoint = torch.load(out_dir / name, weights_only=True)
        assert checkpoints.storable_problem(checkpoint, name) is None
    latest = torch.load(out_dir / 'ckpt.pt', weights_only=True)
    name, keys, *_ = latest['rng_state']['numpy']
    assert name == 'MT19937' and len(keys) == 624 and latest['optimizer']['state']
    assert queue_io.read_meta(str(trained[0]))['stoi'] == latest['meta']['stoi']


def test_save_refuses_what_weights_only_loading_would_not_build(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['config'\]\['ratio'\] is a numpy.float64"):
        checkpoints.save_checkpoint(dict(tiny_checkpoint(1), config={'ratio': np.float64(0.5)}), tmp_path / 'c.pt')
    with pytest.raises(TypeError, match=r"meta\['n'\] is a numpy.int64"):
        queue_io.write_meta(str(tmp_path), {'n': np.int64(3)})
    assert os.listdir(tmp_path) == []


def test_train_refuses_a_config_a_checkpoint_could_not_hold(tmp_path):
    import train
    cfg = Config(train.DEFAULTS, out_dir=str(tmp_path / 'out'), unmasking_stages=[{'max_masked_ratio': {0.5}}])
    with pytest.raises(UserError, match=r"config\['unmasking_stages'\]\[0\]\['max_masked_ratio'\] is a builtins.set"):
        train.save_run_config(cfg, 'abc', [], 1)


def test_meta_reader_builds_plain_containers(tmp_path):
    meta = {'stoi': {'a': 0}, 'itos': {0: 'a'}, 'stages': [{'type': 'random', 'max_masked_ratio': 0.5}],
            'shares': (0.8, 0.1, 0.1), 'flag': True, 'none': None}
    queue_io.write_meta(str(tmp_path), meta)
    assert queue_io.read_meta(str(tmp_path)) == meta
    assert queue_io.read_meta(str(tmp_path / 'missing')) is None


# -----------------------------------------------------------------------------
# crafted checkpoints


def test_the_planted_payload_is_live(tmp_path):
    """The tests below mean something: full unpickling of a planted file does create the marker."""
    marker = tmp_path / 'marker'
    path = plant_checkpoint(tmp_path / 'ckpt_unmasking_200.pt', marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_a_crafted_file(tmp_path):
    marker = tmp_path / 'marker'
    path = plant_checkpoint(tmp_path / 'out' / 'ckpt_unmasking_200.pt', marker)
    with pytest.raises(checkpoints.UntrustedCheckpoint, match="needs 'io.open'.*--trust_checkpoint_pickle=True"):
        checkpoints.load_checkpoint(path)
    # ckpt.pt opened to learn its kind: the refusal is said, not turned into "no checkpoint found"
    os.replace(path, tmp_path / 'out' / 'ckpt.pt')
    with pytest.raises(checkpoints.UntrustedCheckpoint):
        checkpoints.newest_checkpoint(str(tmp_path / 'out'), 'unmasking')
    assert not marker.exists()


@pytest.mark.parametrize('script', ['sample.py', 'evaluate.py'])
def test_sample_and_evaluate_refuse_a_crafted_checkpoint(script, tmp_path):
    marker, out_dir = tmp_path / 'marker', tmp_path / 'out'
    path = plant_checkpoint(out_dir / 'ckpt_unmasking_200.pt', marker)
    no_reference = ['--reference_checkpoint_name=None'] if script == 'evaluate.py' else []
    code, out = run_main([script, f'--out_dir={out_dir}', '--device=cpu', *no_reference])
    one_error_line(code, out, path, "'io.open'", 'trust_checkpoint_pickle')
    assert not marker.exists()


def test_resume_refuses_a_crafted_checkpoint(tiny_corpus, tmp_path):
    marker, out_dir = tmp_path / 'marker', tmp_path / 'out'
    plant_checkpoint(out_dir / 'ckpt.pt', marker)
    code, out = run_main(train_args(tiny_corpus, tmp_path / 'queue', out_dir, '--init_from=resume',
                                    '--start_producer=False'))
    one_error_line(code, out, str(out_dir / 'ckpt.pt'), "'io.open'", 'trust_checkpoint_pickle')
    assert not marker.exists()


def test_watching_provider_skips_a_crafted_checkpoint_and_keeps_producing(tiny_corpus, tmp_path):
    marker, out_dir, data_dir = tmp_path / 'marker', tmp_path / 'out', tmp_path / 'queue'
    good = save_tiny(out_dir, 'ckpt_unmasking_100.pt', 100)
    crafted = plant_checkpoint(out_dir / 'ckpt_unmasking_200.pt', marker)
    code, out = run_main(['prepare.py', '--dataset=char_inference_replacement', f'--input_file={tiny_corpus}',
                          f'--data_dir={data_dir}', f'--checkpoint_dir={out_dir}', f'--block_size={BLOCK_SIZE}',
                          '--batch_size=8', '--batches_per_file=2', '--eval_iters=2', '--max_files=2',
                          '--inference_refresh_seconds=0.0'])
    assert code == 0, out
    refusals = [line for line in out.splitlines() if 'refusing checkpoint' in line]
    assert len(refusals) == 1 and crafted in refusals[0] and 'weights_only=True' in refusals[0], out
    assert 'trust_checkpoint_pickle' not in refusals[0]  # the provider has no such key to offer
    train_dir = queue_io.split_dir(str(data_dir), 'train')
    infos = [queue_io.load_batch_file(os.path.join(train_dir, n))[1] for n in queue_io.ready_files(train_dir)]
    assert len(infos) == 2 and all(info['checkpoint']['path'] == good for info in infos)
    assert not marker.exists()


@pytest.mark.xdist_group('trained_run')
def test_trusted_old_checkpoint_resumes_and_says_so(tiny_corpus, trained, tmp_path):
    """An old-style ckpt.pt (numpy RNG state as an ndarray, as earlier versions wrote it): refused,
    then opened with trust_checkpoint_pickle=True, with a note; the run then saves safe checkpoints."""
    data_dir, out_dir = copy_folder(trained[0], tmp_path), trained[1]  # the run below consumes from its queue
    old = torch.load(out_dir / 'ckpt.pt', weights_only=True)
    old['rng_state']['numpy'] = np.random.get_state()  # ('MT19937', ndarray, ...)
    (tmp_path / 'out').mkdir()
    torch.save(old, tmp_path / 'out' / 'ckpt.pt')
    with pytest.raises(checkpoints.UntrustedCheckpoint, match='numpy.*--trust_checkpoint_pickle=True'):
        checkpoints.load_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'))  # train.py says it as one line (above)

    code, out = run_main(train_args(tiny_corpus, data_dir, tmp_path / 'out', '--init_from=resume',
                                    '--max_iters=6', '--trust_checkpoint_pickle=True'))
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith('note:') and 'full unpickling' in line]
    assert len(notes) == 1 and 'trust_checkpoint_pickle=True' in notes[0], out
    assert 'resumed from' in out and 'at iter 4' in out
    assert torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)['iter_num'] == 6


# -----------------------------------------------------------------------------
# meta.pkl: crafted and damaged


def damage_meta(data_dir, marker):
    os.makedirs(data_dir, exist_ok=True)
    with open(queue_io.meta_path(str(data_dir)), 'wb') as f:
        f.write(b'\x80')  # one byte: the start of a pickle, and nothing more


@pytest.mark.parametrize('plant,words', [(plant_meta, ["'io.open'", 'not a meta.pkl of this project']),
                                         (damage_meta, ['is damaged'])], ids=['crafted', 'damaged'])
@pytest.mark.parametrize('reader', ['prepare.py', 'train.py', 'train.py+producer'])
def test_unsafe_or_damaged_meta_is_one_line(reader, plant, words, tiny_corpus, tmp_path):
    marker, data_dir = tmp_path / 'marker', tmp_path / 'queue'
    plant(data_dir, marker)
    if reader == 'prepare.py':
        args = ['prepare.py', *data_args(tiny_corpus, data_dir), '--max_files=1']
    else:  # alone it reads meta.pkl itself; with a producer, the producer's refusal is reported
        args = train_args(tiny_corpus, data_dir, tmp_path / 'out',
                          *(['--start_producer=False'] if reader == 'train.py' else []))
    code, out = run_main(args)
    one_error_line(code, out, queue_io.meta_path(str(data_dir)), 'clear_queue=True', 'delete it', *words)
    assert not marker.exists()


def test_clear_queue_replaces_a_damaged_meta(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'queue'
    damage_meta(data_dir, None)
    code, out = run_main(['prepare.py', *data_args(tiny_corpus, data_dir), '--max_files=1', '--clear_queue=True'])
    assert code == 0, out
    assert queue_io.read_meta(str(data_dir))['block_size'] == 32
