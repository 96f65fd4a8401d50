"""train.py end to end on a tiny corpus and a tiny model: producer start/stop, checkpoints, resume,
refusals with one clear line, atomic saves, 2-process DDP on CPU, wandb offline."""
import glob
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import queue_io
from common import UserError
from conftest import (REPO_ROOT, TINY_DATA, TINY_MODEL, copy_folder, data_args, run_main, run_script,  # noqa: F401
                      stop_process_group, train_args)


@pytest.fixture
def queued(filled_queue, tmp_path):
    """A pre-filled queue (12 train files) of this test's own, for the tests that need data but no producer."""
    return copy_folder(filled_queue, tmp_path, 'queued')


def train_files(data_dir):
    return len(queue_io.ready_files(queue_io.split_dir(data_dir, 'train')))


def error_lines(out):
    return [line for line in out.splitlines() if line.startswith('error:')]


@pytest.mark.xdist_group('trained_run')
def test_train_spawns_producer_saves_and_resumes(trained_run, tiny_corpus, tmp_path):
    out = trained_run.out  # train.py --max_iters=4 in a process of its own, with the producer it started
    pid = int(re.search(r'started producer pid (\d+)', out).group(1))
    assert not queue_io.pid_alive(pid), "the producer outlived train.py"
    assert queue_io.live_producers(str(trained_run.data_dir)) == []
    assert 'data wait' in out and 'tok/s' in out
    names = sorted(os.listdir(trained_run.out_dir))
    assert 'ckpt_unmasking_4.pt' in names and 'ckpt.pt' in names, names
    run_config = json.loads((trained_run.out_dir / [n for n in names if n.startswith('config_')][0]).read_text())
    assert run_config['batches_per_file'] == 2 and run_config['n_layer'] == 1  # provider keys too

    weights = torch.load(trained_run.out_dir / 'ckpt_unmasking_4.pt', weights_only=True)
    assert 'optimizer' not in weights and weights['iter_num'] == 4
    assert not any(k.startswith(('_orig_mod.', 'module.')) for k in weights['model'])
    assert weights['meta']['stoi'] and weights['config']['training_type'] == 'unmasking'

    # resumed in copies of its folders (the shared run stays as it was), again starting a producer
    data_dir, out_dir = copy_folder(trained_run.data_dir, tmp_path), copy_folder(trained_run.out_dir, tmp_path)
    code, out = run_main(train_args(tiny_corpus, data_dir, out_dir, '--max_iters=6', '--init_from=resume'))
    assert code == 0, out
    assert 'resumed from' in out and 'at iter 4' in out and 'optimizer state loaded' in out
    assert 'started producer pid' in out and queue_io.live_producers(str(data_dir)) == []
    latest = torch.load(out_dir / 'ckpt.pt', weights_only=True)
    assert latest['iter_num'] == 6 and latest['run_id'] == weights['run_id']
    # AdamW counts its steps: 6 means the 4 of the first run came back with the optimizer state
    assert all(int(s['step']) == 6 for s in latest['optimizer']['state'].values())
    assert re.search(r'^iter 5/6', out, re.M) and not re.search(r'^iter [1-4]/', out, re.M)

    # the same out_dir with another architecture: one line, nothing overwritten
    code, out = run_main(train_args(tiny_corpus, data_dir, out_dir, '--max_iters=8', '--init_from=resume',
                                    '--n_layer=2'))
    assert code == 2, out
    assert len(error_lines(out)) == 1 and 'n_layer=1' in error_lines(out)[0], out
    assert torch.load(out_dir / 'ckpt.pt', weights_only=True)['iter_num'] == 6


def test_resume_without_checkpoint_lists_out_dir(tiny_corpus, tmp_path):
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    (out_dir / 'ckpt_unmasking_2.pt').write_bytes(b'')
    code, out = run_main(train_args(tiny_corpus, tmp_path / 'queue', out_dir, '--init_from=resume',
                                    '--start_producer=False'))
    assert code == 2 and len(error_lines(out)) == 1, out
    assert 'ckpt_unmasking_2.pt' in error_lines(out)[0]


def test_remasking_refuses_partial_target_queue(tiny_corpus, queued, tmp_path):
    code, out = run_main(train_args(tiny_corpus, queued, tmp_path / 'out', '--training_type=remasking',
                                    '--start_producer=False'))
    assert code == 2, out
    assert len(error_lines(out)) == 1 and 'full targets' in error_lines(out)[0], out
    assert 'Traceback' not in out


def test_autoregressive_needs_causal_attention(tiny_corpus, tmp_path):
    code, out = run_main(train_args(tiny_corpus, tmp_path / 'queue', tmp_path / 'out',
                                    '--training_type=autoregressive', '--start_producer=False'))
    assert code == 2 and len(error_lines(out)) == 1 and 'causal' in error_lines(out)[0], out


def test_interrupted_save_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    import train
    from configurator import Config
    from model import GPT, GPTConfig
    model_args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10, dropout=0.0, bias=False,
                      attention_type='bidirectional', pos_encoding='learned')
    model = GPT(GPTConfig(**model_args))
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    cfg = Config(train.DEFAULTS, out_dir=str(tmp_path), keep_last_checkpoints=2)
    state = train.RunState(run_id='abc', model_args=model_args, tokens_per_iter=16, iter_num=2, best_val_loss=1.0)
    train.save_checkpoints(model, optimizer, scaler, state, cfg, meta={'stoi': {}})
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert set(before) == {'ckpt_unmasking_2.pt', 'ckpt.pt'}

    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save({'half': 'written'}, f)  # some bytes reach the temporary file ...
        raise KeyboardInterrupt  # ... then the run is interrupted mid-write

    monkeypatch.setattr(torch, 'save', save_then_fail)
    state.iter_num = 4
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoints(model, optimizer, scaler, state, cfg, meta={'stoi': {}})
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_merged_checkpoints_are_named_found_and_resumed_as_their_own_kind(tmp_path):
    import types
    import train
    from checkpoints import newest_checkpoint, prune_checkpoints
    from configurator import Config
    from model import GPT, GPTConfig
    model_args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=5, dropout=0.0, bias=False,
                      attention_type='bidirectional', pos_encoding='learned')
    meta = {'stoi': {'a': 0, 'b': 1, 'c': 2}}
    model = GPT(GPTConfig(**model_args))
    cfg = Config(train.DEFAULTS, out_dir=str(tmp_path), training_type='merged', init_from='resume')
    state = train.RunState(run_id='abc', model_args=model_args, tokens_per_iter=16, iter_num=3, best_val_loss=1.0)
    train.save_checkpoints(model, torch.optim.AdamW(model.parameters()), torch.amp.GradScaler('cpu', enabled=False),
                           state, cfg, meta=meta)
    (tmp_path / 'ckpt_unmasking_9.pt').write_bytes(b'x')
    assert newest_checkpoint(str(tmp_path), 'merged') == str(tmp_path / 'ckpt_merged_3.pt')
    compute = types.SimpleNamespace(device='cpu')
    assert train.load_resumable(cfg, compute, meta, model_args)['training_type'] == 'merged'
    with pytest.raises(UserError, match='it is a merged checkpoint, not unmasking'):
        train.load_resumable(Config(cfg, training_type='unmasking'), compute, meta, model_args)
    prune_checkpoints(str(tmp_path), 'unmasking', keep_last=1)  # other kinds are left alone
    assert {'ckpt_merged_3.pt', 'ckpt_unmasking_9.pt'} <= set(os.listdir(tmp_path))


def test_keep_last_checkpoints_prunes_only_this_kind(tmp_path):
    from checkpoints import prune_checkpoints
    for name in ('ckpt_unmasking_1.pt', 'ckpt_unmasking_2.pt', 'ckpt_unmasking_3.pt',
                 'ckpt_remasking_all_positions_1.pt', 'ckpt.pt'):
        (tmp_path / name).write_bytes(b'x')
    prune_checkpoints(str(tmp_path), 'unmasking', keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'ckpt_remasking_all_positions_1.pt', 'ckpt_unmasking_2.pt',
                                            'ckpt_unmasking_3.pt']


def test_iteration_line_reads_back_as_written(capsys, tmp_path):
    """bench/bench_train.py measures a run from its iteration lines: what TrainingLog prints, parse_iteration_line reads."""
    import train
    from configurator import Config
    from training_log import TrainingLog, parse_iteration_line

    class Consumer:
        wait_seconds = 0.0
        data_dir = str(tmp_path)  # a queue without producers: no warnings

    class Model:
        def estimate_mfu(self, sequences_per_iter, dt):
            return 0.125

    cfg = Config(train.DEFAULTS, max_iters=100)
    for mfu_model, mfu in ((None, None), (Model(), 0.125)):
        consumer = Consumer()
        log = TrainingLog(cfg, consumer, tokens_per_iter=1000, mfu_model=mfu_model)
        log.add_step(0.25, 2.0)
        consumer.wait_seconds = 0.01  # 2% of the two steps' 0.5 s
        log.add_step(0.25, 3.0)
        log.iteration(12, 1e-3)
        line = capsys.readouterr().out.strip()
        assert line.startswith('iter 12/100 | loss 2.5000 | lr 1.00e-03 | 250.0 ms/iter | 4,000 tok/s'), line
        assert parse_iteration_line(line) == dict(iter=12, seconds=0.25, tokens_per_sec=4000, data_wait=0.02, mfu=mfu)
    assert parse_iteration_line('eval iter 12: val loss 2.5') is None


def test_ddp_two_processes_read_different_files(tiny_corpus, queued, tmp_path):
    out_dir = tmp_path / 'out'
    before = train_files(queued)
    # 2 ranks x 1 micro-step x 4 iterations x 1 batch: each rank uses 4 batches = 2 files of its own
    code, out = run_script(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                            *train_args(tiny_corpus, queued, out_dir, '--max_iters=4', '--start_producer=False',
                                        '--gradient_accumulation_steps=2', '--backend=gloo')], timeout=180)
    assert code == 0, out
    assert 'data: rank 0 consumed 2 train files' in out and 'data: rank 1 consumed 2 train files' in out, out
    assert train_files(queued) == before - 4  # claimed but unused (prefetched) files went back
    assert (out_dir / 'ckpt_unmasking_4.pt').exists()
    assert out.count('saved ckpt_unmasking_4.pt') == 1  # rank 0 alone writes


def test_wandb_offline_run_directory(tiny_corpus, queued, tmp_path):
    pytest.importorskip('wandb')
    out_dir = tmp_path / 'out'
    code, out = run_script(train_args(tiny_corpus, queued, out_dir, '--max_iters=2', '--start_producer=False',
                                      '--wandb_log=True', '--wandb_run_name=t'), env={'WANDB_MODE': 'offline'})
    assert code == 0, out
    assert glob.glob(str(out_dir / 'wandb' / 'offline-run-*')), os.listdir(out_dir)


def test_producer_stops_when_its_trainer_is_killed(tiny_corpus, tmp_path):
    """SIGKILL gives train.py no chance to clean up: the producer it started notices and leaves."""
    data_dir, out_dir = tmp_path / 'queue', tmp_path / 'out'
    proc = subprocess.Popen([sys.executable, *train_args(tiny_corpus, data_dir, out_dir, '--max_iters=100000')],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not queue_io.live_producers(str(data_dir)) and time.time() < deadline:
            time.sleep(0.2)
        (beat,) = queue_io.live_producers(str(data_dir))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while queue_io.pid_alive(beat['pid']) and time.time() < deadline:
            time.sleep(0.2)
        assert not queue_io.pid_alive(beat['pid']), "the producer outlived its killed trainer"
    finally:
        stop_process_group(proc)


SAMPLER_STATES = ['--dataset=char_sampler_states', '--batch_size=4', '--block_size=32', '--batches_per_file=2',
                  '--eval_iters=2', '--data_seed=7', '--fallback_to_random=True', '--inference_refresh_seconds=0.0']


def test_merged_run_writes_merged_checkpoints_and_prints_a_refused_checkpoint_once(tiny_corpus, tmp_path):
    """A merged model on sampler states whose watched checkpoint does not fit: the producer falls back to
    random characters, and the trainer says so once (issue 12, item 6)."""
    from conftest import save_tiny
    watched, out_dir = tmp_path / 'watched', tmp_path / 'out'
    save_tiny(watched, 'ckpt_unmasking_100.pt', 100, block_size=64)  # the queue's block_size is 32
    code, out = run_main(['train.py', *SAMPLER_STATES, f'--input_file={tiny_corpus}',
                          f'--data_dir={tmp_path / "queue"}', *TINY_MODEL, f'--out_dir={out_dir}',
                          f'--checkpoint_dir={watched}', '--training_type=merged',
                          "--left_masked_ratio_range=(0.0, 1.0)", '--max_iters=4', '--always_save_checkpoint=True'])
    assert code == 0, out
    assert {'ckpt_merged_2.pt', 'ckpt_merged_4.pt', 'ckpt.pt'} <= set(os.listdir(out_dir)), os.listdir(out_dir)
    weights = torch.load(out_dir / 'ckpt_merged_4.pt', weights_only=False)
    assert weights['training_type'] == 'merged' and weights['meta']['corruption_type'] == 'sampler_states'
    warnings = [line for line in out.splitlines() if line.startswith('data: WARNING from the producer')]
    assert len(warnings) == 1, out
    assert "block_size=64 differs from the dataset's block_size=32" in warnings[0]
    assert 'random characters' in warnings[0]


def test_trainer_says_why_its_producer_waits_for_a_checkpoint(tiny_corpus, tmp_path):
    """Issue 19, item 2: no checkpoint in checkpoint_dir and fallback_to_random=False, so the producer
    writes nothing; the trainer's own console says why at the first line of its wait (after 2 s), not
    only the producer's log. (That it is not repeated every 10 s: test_consumer.py, WaitLines.)"""
    watched = tmp_path / 'watched'
    watched.mkdir()
    args = ['train.py', *[arg for arg in SAMPLER_STATES if not arg.startswith('--fallback_to_random')],
            '--fallback_to_random=False', f'--input_file={tiny_corpus}', f'--data_dir={tmp_path / "queue"}',
            *TINY_MODEL, f'--out_dir={tmp_path / "out"}', f'--checkpoint_dir={watched}', '--training_type=merged',
            "--left_masked_ratio_range=(0.0, 1.0)", '--max_iters=4']
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        deadline = time.monotonic() + 120
        while not seen or 'waiting for the producer' not in seen[-1]:
            seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.1)))
        producers = queue_io.live_producers(str(tmp_path / 'queue'))
    finally:
        stop_process_group(proc)  # train.py and the producer it started: one process group
        reader.join(timeout=10)
    first_wait = re.fullmatch(r"waiting for the producer at \S+ \((\d+) s so far\); the producer says: (.*)\n",
                              seen[-1])
    assert first_wait and int(first_wait[1]) <= 10, ''.join(seen)
    assert first_wait[2] == (f"no checkpoint in {watched} yet (ckpt_unmasking_<iter>.pt or ckpt.pt): train the run "
                             f"that saves there, or set fallback_to_random=True to start with random characters "
                             f"meanwhile")
    deadline = time.monotonic() + 10  # the producer may take a moment to be reaped
    while any(queue_io.pid_alive(beat['pid']) for beat in producers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert producers and not any(queue_io.pid_alive(beat['pid']) for beat in producers)


def test_merged_refuses_a_queue_without_mask(tiny_corpus, queued, tmp_path):
    code, out = run_main(train_args(tiny_corpus, queued, tmp_path / 'out', '--training_type=merged',
                                    '--start_producer=False'))
    assert code == 2 and len(error_lines(out)) == 1, out
    assert 'config/train_merged.py' in error_lines(out)[0]
