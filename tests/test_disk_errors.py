"""A full disk or a read-only folder during a write is one line that says what could not be written
and that nothing earlier was lost; temporary files of killed writers are removed at start-up, a
live writer's never."""
import errno
import os
import resource
import subprocess
import sys

import pytest
import torch

import checkpoints
import queue_io
from common import run_cli
from configurator import Config
from conftest import run_main, run_script
from test_inference_replacement import tiny_checkpoint
from test_train import data_args, error_lines, train_args


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    pid = int(proc.stdout)
    assert not queue_io.pid_alive(pid)
    return pid


def temp_files(*folders):
    return [name for folder in folders for name in os.listdir(folder) if queue_io.temp_file_pid(name)]


def file_size_limit(max_bytes):
    """preexec_fn: every write past `max_bytes` fails with EFBIG, as a full disk fails a write
    (Python ignores SIGXFSZ, so the write returns an error instead of killing the process)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


# -----------------------------------------------------------------------------
# a write the file system refuses


@pytest.mark.parametrize('code,advice', [(errno.ENOSPC, 'free some disk space'),
                                         (errno.EROFS, 'writable or choose another folder')])
def test_refused_write_is_one_line_and_the_previous_file_stays(code, advice, tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pt'
    checkpoints.save_checkpoint(tiny_checkpoint(1), path)
    before = path.read_bytes()
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        real_save({'some': 'bytes'}, f)  # the temporary file has grown ...
        raise OSError(code, os.strerror(code))  # ... when the disk is full / the folder turns read-only

    monkeypatch.setattr(torch, 'save', save_until_full)
    with pytest.raises(queue_io.WriteError) as caught:
        checkpoints.save_checkpoint(tiny_checkpoint(2), path)
    message = str(caught.value)
    assert '\n' not in message and str(path) in message and os.strerror(code) in message
    assert 'nothing earlier was lost' in message and 'previous version is intact' in message and advice in message
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_run_cli_prints_file_system_refusals_as_one_line(capsys):
    """Refusals outside the atomic writes (creating a folder, a lock file) are one line too."""
    def main(argv):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), '/mnt/ro/out')

    with pytest.raises(SystemExit) as exited:
        run_cli(main)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: could not write /mnt/ro/out: Read-only file system (choose a writable folder); files written before are intact"]


def test_checkpoint_save_on_a_full_disk_stops_train_with_one_line(tiny_corpus, tmp_path):
    """A real failing write (a file-size limit), through torch.save, which wraps it in a RuntimeError."""
    data_dir, out_dir = tmp_path / 'queue', tmp_path / 'out'
    out_dir.mkdir()
    checkpoints.save_checkpoint(tiny_checkpoint(1), out_dir / 'ckpt.pt')  # an earlier save of this folder
    before = (out_dir / 'ckpt.pt').read_bytes()
    code, out = run_script(train_args(tiny_corpus, data_dir, out_dir, '--max_iters=2'),
                           preexec_fn=file_size_limit(20_000))  # the queue's files fit, a checkpoint does not
    lines = error_lines(out)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in out, out
    assert f"could not write {out_dir / 'ckpt_unmasking_2.pt'}" in lines[0] and 'nothing earlier was lost' in lines[0]
    assert (out_dir / 'ckpt.pt').read_bytes() == before and temp_files(out_dir) == []
    assert 'stopped producer' in out  # the producer it started went with it


def test_queue_write_on_a_full_disk_stops_prepare_with_one_line(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'queue'
    code, out = run_script(['prepare.py', *data_args(tiny_corpus, data_dir), '--batches_per_file=50',
                            '--max_files=1'], timeout=120,
                           preexec_fn=file_size_limit(8_000))  # meta.pkl and the val file fit, a train file does not
    lines = error_lines(out)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in out, out
    train_dir, val_dir = (queue_io.split_dir(str(data_dir), split) for split in ('train', 'val'))
    assert f"could not write {train_dir}/000000000_w000.pt" in lines[0] and 'nothing earlier was lost' in lines[0]
    assert queue_io.read_meta(str(data_dir))['batches_per_file'] == 50
    assert [queue_io.load_batch_file(os.path.join(val_dir, name))[1]['split'] for name in os.listdir(val_dir)] == ['val']
    assert temp_files(train_dir, val_dir, queue_io.workers_dir(str(data_dir)), data_dir) == []


# -----------------------------------------------------------------------------
# temporary files of killed writers


def test_train_removes_stale_temp_files_of_its_kind_only(tmp_path):
    import train
    dead, live = dead_pid(), os.getpid()
    stale = [f'.ckpt_unmasking_4.pt.tmp-{dead}-0', f'.ckpt.pt.tmp-{dead}-3', f'.config_abc.json.tmp-{dead}-1']
    kept = [f'.ckpt_unmasking_6.pt.tmp-{live}-0',                 # a live process is writing it
            f'.ckpt_remasking_all_positions_4.pt.tmp-{dead}-0',   # another run kind's
            f'.notes.txt.tmp-{dead}-0', 'ckpt_unmasking_2.pt']    # not a run file; a real checkpoint
    for name in stale + kept:
        (tmp_path / name).write_bytes(b'x')
    cfg = Config(train.DEFAULTS, out_dir=str(tmp_path))
    train.save_run_config(cfg, 'xyz', [], 1)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ['config_xyz.json'])


def test_producer_removes_stale_temp_files_of_the_queue(tiny_corpus, tmp_path):
    data_dir = tmp_path / 'queue'
    dead, live = dead_pid(), os.getpid()
    workers = queue_io.workers_dir(str(data_dir))
    os.makedirs(workers)
    stale = [os.path.join(workers, f'.state_w000.json.tmp-{dead}-0'),
             os.path.join(workers, f'.heartbeat_w001.json.tmp-{dead}-2'),
             os.path.join(data_dir, f'.meta.pkl.tmp-{dead}-0')]
    kept = [os.path.join(workers, f'.state_w001.json.tmp-{live}-0'),  # a live producer's
            os.path.join(data_dir, f'.input.txt.tmp-{dead}-0')]        # not the queue's: data_dir may be a source folder
    for path in stale + kept:
        open(path, 'wb').close()
    code, out = run_main(['prepare.py', *data_args(tiny_corpus, data_dir), '--max_files=1'])
    assert code == 0, out
    assert [os.path.exists(p) for p in stale] == [False] * 3 and all(os.path.exists(p) for p in kept)
