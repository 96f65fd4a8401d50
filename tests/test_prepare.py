"""prepare.py as users and train.py run it: files, workers, backpressure, signals, restarts, errors."""
import os
import signal
import subprocess
import sys
import time

import torch

import queue_io
from conftest import REPO_ROOT, run_main, run_script, stop_process_group

TINY = ['--batch_size=8', '--block_size=32', '--batches_per_file=2', '--eval_iters=3']  # 2 val files


def prepare_args(tiny_corpus, data_dir, *overrides, dataset='char_random_replacement'):
    return ['prepare.py', f'--dataset={dataset}', f'--input_file={tiny_corpus}', f'--data_dir={data_dir}',
            '--composition_config=example', *TINY, *overrides]


def start_producer(args):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_until(condition, timeout=60.0, what='condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def train_files(data_dir):
    return queue_io.ready_files(queue_io.split_dir(data_dir, 'train'))


def temp_files(data_dir):
    return [name for split in ('train', 'val') for name in os.listdir(queue_io.split_dir(data_dir, split))
            if name.startswith('.') and name != queue_io.CLAIMED_DIR]


def load_all(data_dir):
    """{split/name: tensors} of every ready file."""
    files = {}
    for split in ('train', 'val'):
        folder = queue_io.split_dir(data_dir, split)
        for name in queue_io.ready_files(folder):
            files[f'{split}/{name}'] = queue_io.load_batch_file(os.path.join(folder, name))[0]
    return files


def test_max_files_run_is_reproducible(tiny_corpus, tmp_path):
    runs = []
    for name, run in (('a', run_main), ('b', run_script)):  # the second in a process of its own
        data_dir = tmp_path / name
        code, out = run(prepare_args(tiny_corpus, data_dir, '--max_files=3'))
        assert code == 0, out
        assert train_files(data_dir) == [queue_io.train_file_name(seq, 0) for seq in range(3)]
        val_names = queue_io.ready_files(queue_io.split_dir(data_dir, 'val'))
        assert val_names == [queue_io.val_file_name(i) for i in range(2)]
        assert queue_io.read_meta(data_dir)['num_val_files'] == 2
        assert 'mask ratios' in out
        assert queue_io.live_producers(data_dir) == []  # heartbeat released on exit
        runs.append(load_all(data_dir))
    first, second = runs
    assert first.keys() == second.keys()
    for name, tensors in first.items():  # same seed: identical data in a separate process
        assert all(torch.equal(tensors[k], second[name][k]) for k in ('x', 'y', 'stage'))


def test_two_workers_write_their_own_files(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'q'
    code, out = run_script(prepare_args(tiny_corpus, data_dir, '--max_files=2', '--num_workers=2'), timeout=120)
    assert code == 0, out
    names = train_files(data_dir)
    assert sorted(names) == sorted(queue_io.train_file_name(seq, w) for seq in range(2) for w in range(2))
    files = load_all(data_dir)
    w0, w1 = files['train/000000000_w000.pt'], files['train/000000000_w001.pt']
    assert not torch.equal(w0['x'], w1['x'])  # own seed stream per worker
    assert not os.path.exists(os.path.join(queue_io.workers_dir(data_dir), 'lock_w001'))


def test_backpressure_atomic_reads_and_sigterm(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'q'
    proc = start_producer(prepare_args(tiny_corpus, data_dir, '--max_files=0', '--max_backlog_files=3',
                                       '--sleep_seconds=0.02', '--batches_per_file=20'))
    try:
        wait_until(lambda: len(train_files(data_dir)) >= 3, what='a full backlog')
        first_beat = queue_io.live_producers(data_dir)[0]
        time.sleep(2.5)
        assert len(train_files(data_dir)) == 3  # held at max_backlog_files
        beat = queue_io.live_producers(data_dir)[0]
        assert beat['pid'] == proc.pid and beat['time'] > first_beat['time']  # waiting, still beating
        consumed = 0
        train_dir = queue_io.split_dir(data_dir, 'train')
        while consumed < 12:  # read like a consumer while the producer writes: every ready file loads
            for name in train_files(data_dir):
                tensors, info = queue_io.load_batch_file(os.path.join(train_dir, name))
                assert tensors['x'].shape == (160, 32) and info['seq'] == int(name[:9])
                os.remove(os.path.join(train_dir, name))
                consumed += 1
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert 'stopped after' in out
    finally:
        stop_process_group(proc)
    assert temp_files(data_dir) == []
    assert not os.path.exists(os.path.join(queue_io.workers_dir(data_dir), 'lock_w000'))


def test_sigkill_then_restart_resumes(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'q'
    args = prepare_args(tiny_corpus, data_dir, '--max_backlog_files=1000', '--batches_per_file=50')
    proc = start_producer(args + ['--max_files=0'])
    try:
        wait_until(lambda: len(train_files(data_dir)) >= 3, what='three train files')
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_process_group(proc)
    killed_files = train_files(data_dir)
    assert all(load_all(data_dir))  # every ready file loads
    # what a kill during a write leaves behind: a temp file named after the dead process
    stale = os.path.join(queue_io.split_dir(data_dir, 'train'), f'.999999999_w000.pt.tmp-{proc.pid}-0')
    open(stale, 'wb').close()
    code, out = run_main(args + ['--max_files=2'])
    assert code == 0, out
    new_files = sorted(set(train_files(data_dir)) - set(killed_files))
    last_seq = max(int(name[:9]) for name in killed_files)
    assert len(new_files) == 2 and all(int(name[:9]) > last_seq for name in new_files)  # continues, overwrites nothing
    assert temp_files(data_dir) == []


def test_config_errors_are_one_line(tiny_corpus, tmp_path):
    for bad, expected in (('--batch_sise=8', "unknown config key 'batch_sise' (did you mean 'batch_size'?)"),
                          ('--max_backlog_files=many', 'max_backlog_files expects a int')):
        code, out = run_main(prepare_args(tiny_corpus, tmp_path / 'q', bad))
        assert code == 2 and out.startswith('error: ') and expected in out, out
        assert len(out.strip().splitlines()) == 1


def test_changed_settings_are_refused_on_the_command_line(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'q'
    data_dir.mkdir()
    queue_io.write_meta(data_dir, {'fingerprint': 'made with other settings'})
    code, out = run_main(prepare_args(tiny_corpus, data_dir, '--max_files=1'))
    assert code == 2 and out.startswith('error: ') and 'clear_queue=True' in out, out
    assert len(out.strip().splitlines()) == 1


def process_group_is_gone(pgid):
    try:
        os.killpg(pgid, 0)  # succeeds while any process of the group exists, zombies included
    except ProcessLookupError:
        return True
    return False


def interrupt_like_a_terminal(proc):
    """Ctrl-C in a terminal: SIGINT to every process of the foreground group. Returns the output."""
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


def test_ctrl_c_right_after_start_stops_every_worker_quietly(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'q'
    proc = start_producer(prepare_args(tiny_corpus, data_dir, '--num_workers=2', '--max_files=0'))
    try:
        first_line = proc.stdout.readline()  # worker 0 is up and starts worker 1, which is still importing
        assert 'writing to' in first_line, first_line
        out = first_line + interrupt_like_a_terminal(proc)
        assert proc.returncode == 130, out
        assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out
        assert process_group_is_gone(proc.pid)  # every worker waited for: nothing outlives prepare.py
    finally:
        stop_process_group(proc)
    assert [name for name in os.listdir(queue_io.workers_dir(data_dir)) if name.startswith('lock_')] == []


def test_ctrl_c_while_prepare_py_is_still_importing_is_quiet(tiny_corpus, tmp_path):
    proc = start_producer(prepare_args(tiny_corpus, tmp_path / 'q', '--num_workers=2'))
    try:
        time.sleep(0.3)  # torch is still loading
        out = interrupt_like_a_terminal(proc)
        assert proc.returncode == 130 and 'Traceback' not in out, out
    finally:
        stop_process_group(proc)
