"""DatasetConsumer: order, deletion, validation set, waiting, quarantine, DDP claims, recovery, prefetch."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

import dataset_consumer
from bench.consumer_overhead import (measure_overhead, synthetic_meta, write_file,
                                     write_synthetic_queue)
from common import UserError
from dataset_consumer import DatasetConsumer, claimed_dir, validate_meta
from queue_io import (ready_files, split_dir, train_file_name, val_file_name, workers_dir, write_heartbeat,
                      write_meta)
from conftest import REPO_ROOT, stop_process_group

B, T, PER_FILE = 4, 8, 2  # batch size, block size, batches per file


def make_queue(data_dir, n_files=3, num_val_files=2):
    return write_synthetic_queue(str(data_dir), B, T, n_files, PER_FILE, num_val_files)


def consumer_for(data_dir, **kwargs):
    kwargs.setdefault('wait_timeout', 20)
    kwargs.setdefault('poll_seconds', 0.02)
    kwargs.setdefault('verbose', False)
    return DatasetConsumer(str(data_dir), B, T, 'cpu', **kwargs)


def origin(batch):
    """(file id, first row) a batch came from, read off the synthetic data."""
    return int(batch['x'][0, 0]), int(batch['x'][0, 1])


def train_files_left(data_dir):
    claimed = os.listdir(claimed_dir(str(data_dir))) if os.path.isdir(claimed_dir(str(data_dir))) else []
    return ready_files(split_dir(str(data_dir), 'train')) + claimed


@pytest.mark.parametrize('prefetch', [True, False])
def test_batches_in_order_then_files_deleted(tmp_path, prefetch):
    make_queue(tmp_path, n_files=3)
    with consumer_for(tmp_path, prefetch=prefetch) as consumer:
        batches = [consumer.get_batch_dict('train') for _ in range(3 * PER_FILE)]
        assert consumer.files_consumed == 3
    assert [origin(b) for b in batches] == [(f, k * B) for f in (1, 2, 3) for k in range(PER_FILE)]
    for batch in batches:
        assert batch['x'].shape == batch['y'].shape == (B, T)
        assert batch['stage'].shape == (B,)
        assert all(t.dtype == torch.int64 and t.device.type == 'cpu' for t in batch.values())
    assert train_files_left(tmp_path) == []
    val_dir = split_dir(str(tmp_path), 'val')
    assert ready_files(val_dir) == [val_file_name(0), val_file_name(1)]


def test_get_batch_returns_x_y_matching_the_file(tmp_path):
    make_queue(tmp_path, n_files=1)
    stored = torch.load(os.path.join(split_dir(str(tmp_path), 'train'), train_file_name(1, 0)))['tensors']
    with consumer_for(tmp_path) as consumer:
        x, y = consumer.get_batch('train')
    assert torch.equal(x, stored['x'][:B].long()) and torch.equal(y, stored['y'][:B].long())
    assert (y == -100).any()  # ignore_index survives the int8 storage


def test_val_batches_fixed_and_never_deleted(tmp_path):
    make_queue(tmp_path, n_files=1, num_val_files=2)
    with consumer_for(tmp_path) as consumer:
        first = list(consumer.val_batches())
        for batch in consumer.val_batches():
            batch['x'].zero_()  # a caller editing a batch in place must not change the cached set
        second = list(consumer.val_batches())
        cycled = [consumer.get_batch_dict('val') for _ in range(2 * len(first))]
    assert [origin(b) for b in first] == [(f, k * B) for f in (100, 101) for k in range(PER_FILE)]
    assert all(torch.equal(a['x'], b['x']) and torch.equal(a['y'], b['y']) for a, b in zip(first, second))
    assert [origin(b) for b in cycled] == [origin(b) for b in first] * 2
    assert len(ready_files(split_dir(str(tmp_path), 'val'))) == 2
    assert len(train_files_left(tmp_path)) == 1  # val reading claims no train file


def write_later(delay, write):
    thread = threading.Thread(target=lambda: (time.sleep(delay), write()))
    thread.start()
    return thread


def test_blocks_until_a_train_file_appears(tmp_path):
    meta = make_queue(tmp_path, n_files=0)
    writer = write_later(0.3, lambda: write_file(str(tmp_path), 'train', train_file_name(7, 0), 7, meta))
    with consumer_for(tmp_path) as consumer:
        batch = consumer.get_batch_dict('train')
        assert consumer.wait_seconds >= 0.2
    writer.join()
    assert origin(batch) == (7, 0)


def test_val_waits_for_the_whole_set(tmp_path):
    meta = make_queue(tmp_path, n_files=0, num_val_files=1)
    write_meta(str(tmp_path), dict(meta, num_val_files=2))
    writer = write_later(0.3, lambda: write_file(str(tmp_path), 'val', val_file_name(1), 101, meta))
    with consumer_for(tmp_path) as consumer:
        files = {origin(b)[0] for b in consumer.val_batches()}
    writer.join()
    assert files == {100, 101}


def test_meta_waits_for_the_producer_and_times_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dataset_consumer, 'FIRST_WAIT_MESSAGE_AFTER', 0.05)
    consumer = consumer_for(tmp_path, wait_timeout=0.3, verbose=True)
    with pytest.raises(UserError) as error:
        consumer.meta
    message = str(error.value)
    assert os.path.join(str(tmp_path), 'meta.pkl') in message and 'python prepare.py' in message
    assert '0.3 s' in message
    assert f"waiting for the producer at {os.path.join(str(tmp_path), 'meta.pkl')}" in capsys.readouterr().out


def beat_waiting_for(data_dir, worker_id, reason=None):
    """A heartbeat of this (live) process as worker `worker_id`, waiting for `reason` (None: not waiting)."""
    os.makedirs(workers_dir(data_dir), exist_ok=True)
    extras = {'waiting_for': reason} if reason else {}
    write_heartbeat(data_dir, worker_id, status='waiting for a checkpoint' if reason else 'writing', **extras)


def wait_lines_at(wait_lines, seconds):
    """{second waited: lines} for every second in `seconds` at which WaitLines printed something."""
    said = {second: wait_lines.lines(second) for second in seconds}
    return {second: lines for second, lines in said.items() if lines}


def test_wait_lines_say_the_producers_reason_at_once_and_then_rarely(tmp_path):
    """Issue 19, item 2: a producer waiting for a checkpoint says why in its heartbeat; the trainer's
    console gets it within seconds, in one line, and then at growing intervals, not every 10 s."""
    data_dir, path = str(tmp_path), os.path.join(str(tmp_path), 'queue', 'val')
    plain = dataset_consumer.WaitLines(data_dir, path)
    assert list(wait_lines_at(plain, range(0, 31))) == [2, 12, 22]  # no reason given: every 10 s
    reason = 'no checkpoint in out-x yet: train the run that saves there, or set fallback_to_random=True'
    for worker_id in (0, 1):  # two workers saying the same
        beat_waiting_for(data_dir, worker_id, reason)
    explained = dataset_consumer.WaitLines(data_dir, path)
    said = wait_lines_at(explained, range(0, 1000))
    assert list(said) == [2, 62, 182, 422, 902]  # a minute, then twice as long each time
    assert said[2] == [f"waiting for the producer at {path} (2 s so far); the producer says: {reason}"]
    assert all(len(lines) == 1 for lines in said.values())
    # the producer stops explaining (its checkpoint came, its first file is on the way): plain lines again
    for worker_id in (0, 1):
        beat_waiting_for(data_dir, worker_id)
    assert wait_lines_at(explained, range(1000, 1025)) == {
        second: [f"waiting for the producer at {path} ({second} s so far)"] for second in (1000, 1010, 1020)}


def test_a_waiting_consumer_prints_the_producers_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dataset_consumer, 'FIRST_WAIT_MESSAGE_AFTER', 0.05)
    beat_waiting_for(str(tmp_path), 0, 'no checkpoint in out-x yet')
    with pytest.raises(UserError) as error:
        consumer_for(tmp_path, wait_timeout=0.3, verbose=True).meta
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].endswith('s so far); the producer says: no checkpoint in out-x yet'), out
    assert str(error.value).endswith('within 0.3 s: the producer says: no checkpoint in out-x yet')


@pytest.mark.parametrize('prefetch', [True, False])
def test_train_wait_times_out(tmp_path, prefetch):
    make_queue(tmp_path, n_files=0)
    with consumer_for(tmp_path, wait_timeout=0.2, prefetch=prefetch) as consumer:
        with pytest.raises(UserError, match='no producer wrote .*train within 0.2 s'):
            consumer.get_batch('train')


def test_damaged_files_are_quarantined(tmp_path, capsys):
    make_queue(tmp_path, n_files=4)
    train_dir = split_dir(str(tmp_path), 'train')
    with open(os.path.join(train_dir, train_file_name(2, 0)), 'wb') as f:
        f.write(b'not a torch file')
    third = os.path.join(train_dir, train_file_name(3, 0))
    os.truncate(third, os.path.getsize(third) // 2)
    with consumer_for(tmp_path) as consumer:
        seen = [origin(consumer.get_batch_dict('train'))[0] for _ in range(2 * PER_FILE)]
    assert seen == [1, 1, 4, 4]
    quarantined = sorted(os.listdir(os.path.join(train_dir, dataset_consumer.QUARANTINE_DIR)))
    assert quarantined == [train_file_name(2, 0), train_file_name(3, 0)]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 2 and train_file_name(2, 0) in warnings[0]


def test_file_with_wrong_shape_is_quarantined(tmp_path):
    meta = make_queue(tmp_path, n_files=0)
    write_file(str(tmp_path), 'train', train_file_name(1, 0), 1, dict(meta, block_size=T + 1))
    write_file(str(tmp_path), 'train', train_file_name(2, 0), 2, meta)
    with consumer_for(tmp_path) as consumer:
        assert origin(consumer.get_batch_dict('train'))[0] == 2


def test_two_ranks_in_one_process_share_the_queue(tmp_path):
    # each rank may hold one prefetched file beyond the 3 it reads, so 8 files leave no rank waiting
    make_queue(tmp_path, n_files=8)
    seen = {0: [], 1: []}
    with consumer_for(tmp_path, rank=0) as rank0, consumer_for(tmp_path, rank=1) as rank1:
        for _ in range(3 * PER_FILE):
            for rank, consumer in ((0, rank0), (1, rank1)):
                seen[rank].append(origin(consumer.get_batch_dict('train'))[0])
    files = {rank: set(ids) for rank, ids in seen.items()}
    assert not files[0] & files[1]
    assert len(files[0]) == len(files[1]) == 3
    # close() put the prefetched files back: nothing consumed twice, nothing lost
    assert len(train_files_left(tmp_path)) == 8 - 6


RANK_SCRIPT = """
import json, os, sys, time
from common import UserError
from dataset_consumer import DatasetConsumer
data_dir, rank = sys.argv[1], int(sys.argv[2])
open(os.path.join(data_dir, f'ready_{rank}'), 'w').close()
while not os.path.exists(os.path.join(data_dir, 'go')):
    time.sleep(0.01)
seen = []
with DatasetConsumer(data_dir, 4, 8, 'cpu', wait_timeout=1.0, poll_seconds=0.02, verbose=False) as c:
    try:
        while True:
            seen.append(int(c.get_batch('train')[0][0, 0]))
    except UserError:
        pass
print(json.dumps(seen))
"""


def test_two_rank_processes_never_get_the_same_file(tmp_path):
    n_files = 30
    make_queue(tmp_path, n_files=n_files)
    procs = [subprocess.Popen([sys.executable, '-c', RANK_SCRIPT, str(tmp_path), str(rank)],
                              cwd=REPO_ROOT, env=dict(os.environ, RANK=str(rank), WORLD_SIZE='2'),
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
             for rank in (0, 1)]
    try:
        deadline = time.time() + 120
        while not all(os.path.exists(tmp_path / f'ready_{rank}') for rank in (0, 1)):
            assert time.time() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        (tmp_path / 'go').touch()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for proc in procs:
            stop_process_group(proc)
    per_rank = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    files = [set(ids) for ids in per_rank]
    assert all(len(ids) == PER_FILE * len(f) for ids, f in zip(per_rank, files))  # whole files
    assert not files[0] & files[1]
    assert files[0] | files[1] == set(range(1, n_files + 1))
    assert train_files_left(tmp_path) == []


def dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_claims_of_dead_consumers_are_recovered(tmp_path):
    make_queue(tmp_path, n_files=3)
    train_dir = split_dir(str(tmp_path), 'train')
    os.makedirs(claimed_dir(str(tmp_path)), exist_ok=True)
    dead_claim = os.path.join(claimed_dir(str(tmp_path)), f'{train_file_name(1, 0)}.r0.p{dead_pid()}')
    live_claim = os.path.join(claimed_dir(str(tmp_path)), f'{train_file_name(2, 0)}.r1.p{os.getpid()}')
    os.rename(os.path.join(train_dir, train_file_name(1, 0)), dead_claim)
    os.rename(os.path.join(train_dir, train_file_name(2, 0)), live_claim)
    with consumer_for(tmp_path, wait_timeout=0.5) as consumer:
        assert ready_files(train_dir) == [train_file_name(1, 0), train_file_name(3, 0)]
        seen = {origin(consumer.get_batch_dict('train'))[0] for _ in range(2 * PER_FILE)}
    assert seen == {1, 3}
    assert os.path.exists(live_claim)  # its owner is alive: not ours to take


def test_close_returns_the_prefetched_file(tmp_path):
    make_queue(tmp_path, n_files=3)
    consumer = consumer_for(tmp_path)
    consumer.get_batch('train')  # file 1 served, file 2 prefetched
    deadline = time.time() + 20
    while consumer._ready.empty():
        assert time.time() < deadline
        time.sleep(0.01)
    consumer.close()
    consumer.close()  # idempotent
    assert train_files_left(tmp_path) == [train_file_name(2, 0), train_file_name(3, 0)]


def test_prefetch_loads_the_next_file_during_the_current_one(tmp_path, monkeypatch):
    """While file 1 is served (with a pretend training step between batches), file 2 is loaded:
    it is in memory before get_batch hands out the last batch of file 1."""
    make_queue(tmp_path, n_files=2)
    loaded_at = {}
    real_load = dataset_consumer.load_batch_file

    def slow_load(path):
        time.sleep(0.2)
        result = real_load(path)
        loaded_at[os.path.basename(path).split('.pt')[0]] = time.perf_counter()
        return result

    monkeypatch.setattr(dataset_consumer, 'load_batch_file', slow_load)
    second = train_file_name(2, 0)[:-3]
    for prefetch in (True, False):
        loaded_at.clear()
        with consumer_for(tmp_path, prefetch=prefetch) as consumer:
            consumer.get_batch('train')
            time.sleep(0.6)  # the training step
            consumer.get_batch('train')  # the last batch of file 1
            assert (second in loaded_at) == prefetch
        make_queue(tmp_path, n_files=2)


def test_batch_size_mismatch_names_the_key(tmp_path):
    make_queue(tmp_path, n_files=1)
    consumer = DatasetConsumer(str(tmp_path), B * 2, T, 'cpu', verbose=False)
    with pytest.raises(UserError, match=r"made with batch_size=4 but the config needs 8: set batch_size = 4"):
        consumer.get_batch('train')
    assert train_files_left(tmp_path) == [train_file_name(1, 0)]  # nothing was claimed


@pytest.mark.parametrize('kwargs, expected', [
    (dict(block_size=128), r"block_size=256 but the config needs 128: set block_size = 256"),
    (dict(batch_size=32), r"batch_size=64 but the config needs 32: set batch_size = 64"),
    (dict(vocab_size=70), r"vocab_size=67 but the config needs 70: .*input_file"),
    (dict(label_semantics='full'), r"label_semantics='partial' but the config needs 'full': "
                                   r"restart prepare.py with dataset_partial_targets = False"),
])
def test_validate_meta_errors(kwargs, expected):
    meta = synthetic_meta(64, 256, 16)
    with pytest.raises(UserError, match=expected) as error:
        validate_meta(meta, data_dir='data/x', **kwargs)
    assert str(error.value).startswith('the queue at data/x was made with') and '\n' not in str(error.value)


def test_validate_meta_accepts_a_fitting_queue_and_reports_a_missing_key():
    meta = synthetic_meta(64, 256, 16)
    validate_meta(meta, block_size=256, batch_size=64, vocab_size=67, label_semantics='partial')
    del meta['label_semantics']
    with pytest.raises(UserError, match="no 'label_semantics'"):
        validate_meta(meta, label_semantics='full')


def test_measure_overhead_runs(tmp_path):
    write_synthetic_queue(str(tmp_path), B, T, n_files=3, batches_per_file=PER_FILE)
    result = measure_overhead(str(tmp_path), B, T, n_batches=4, step_seconds=0.001)
    assert result['us_per_batch'] > 0 and result['files_consumed'] >= 2
