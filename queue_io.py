"""
The file-system queue between producers and consumers: atomic writes, file names, batch files,
meta.pkl and producer heartbeats. Everything another process may read goes through here.

Layout of a dataset folder (data/<dataset>/ by default, or the `data_dir` key):

    meta.pkl                      vocabulary, special ids, label semantics, corruption knobs, schema
    queue/train/<seq>_w<worker>.pt  batch files, consumed (claimed, then deleted) by the trainer
    queue/train/.claimed/...      files a consumer has claimed and not yet finished
    queue/val/val_<index>.pt      the validation set: written once, never deleted
    queue/workers/                producer locks and heartbeats (pid + time)
    queue/curriculum.json         the stage the trainer's curriculum chose (producers read it per file)

Names starting with '.' are never ready files: temporary files are `.<name>.tmp-<pid>-<n>`.
"""

import itertools
import json
import os
import pickle
import time

import torch

META_NAME = 'meta.pkl'
QUEUE_NAME = 'queue'
FILE_SUFFIX = '.pt'
CLAIMED_DIR = '.claimed'
_tmp_counter = itertools.count()


# -----------------------------------------------------------------------------
# atomic writes


def temp_path_for(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f'.{name}.tmp-{os.getpid()}-{next(_tmp_counter)}')


def atomic_write(path, write_fn, fsync=False):
    """Write `path` via `write_fn(file_object)` under a temporary name, then rename into place.

    Readers see either no file or the whole file. The temporary file is removed on any error,
    KeyboardInterrupt included.
    """
    tmp = temp_path_for(path)
    try:
        with open(tmp, 'wb') as f:
            write_fn(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_torch_save(obj, path, fsync=False):
    atomic_write(path, lambda f: torch.save(obj, f), fsync=fsync)


def atomic_pickle(obj, path):
    atomic_write(path, lambda f: pickle.dump(obj, f))


def atomic_json(obj, path):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=str).encode()))


def temp_file_pid(name):
    """The pid in a temporary file name `.<name>.tmp-<pid>-<n>`, or None for other names."""
    if not name.startswith('.') or '.tmp-' not in name:
        return None
    try:
        return int(name.rsplit('.tmp-', 1)[1].split('-')[0])
    except ValueError:
        return None


def remove_stale_temp_files(folder):
    """Remove temporary files left by processes that were killed (SIGKILL cannot clean up)."""
    removed = 0
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        pid = temp_file_pid(name)
        if pid is not None and not pid_alive(pid):
            try:
                os.remove(os.path.join(folder, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# -----------------------------------------------------------------------------
# paths and names


def dataset_dir(dataset, data_dir=None):
    """The folder of a dataset's queue and meta.pkl: the `data_dir` key, else data/<dataset>/."""
    if data_dir:
        return data_dir
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', dataset)


def queue_dir(data_dir):
    return os.path.join(data_dir, QUEUE_NAME)


def split_dir(data_dir, split):
    return os.path.join(data_dir, QUEUE_NAME, split)


def meta_path(data_dir):
    return os.path.join(data_dir, META_NAME)


def train_file_name(seq, worker_id):
    # sorted by sequence number first, so files of several workers interleave fairly
    return f'{seq:09d}_w{worker_id:03d}{FILE_SUFFIX}'


def val_file_name(index):
    return f'val_{index:05d}{FILE_SUFFIX}'


def ready_files(folder):
    """Complete batch files in `folder`, oldest (lowest name) first."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(FILE_SUFFIX) and not n.startswith('.'))


# -----------------------------------------------------------------------------
# batch files and meta


def storage_dtype(vocab_size):
    """Smallest integer dtype that holds every token id and ignore_index (-100)."""
    if vocab_size <= 127:
        return torch.int8
    if vocab_size <= 32767:
        return torch.int16
    return torch.int32


def write_batch_file(path, tensors, info):
    """A batch file: {'tensors': {name: tensor with rows first}, 'info': small dict}."""
    atomic_torch_save({'tensors': tensors, 'info': info}, path)


def load_batch_file(path):
    """Returns (tensors, info). Raises on a damaged file; callers quarantine it."""
    obj = torch.load(path, map_location='cpu', weights_only=True)
    return obj['tensors'], obj['info']


def write_meta(data_dir, meta):
    atomic_pickle(meta, meta_path(data_dir))


def read_meta(data_dir):
    """meta.pkl as a dict, or None when it does not exist yet."""
    try:
        with open(meta_path(data_dir), 'rb') as f:
            return pickle.load(f)
    except FileNotFoundError:
        return None


# -----------------------------------------------------------------------------
# the curriculum's stage: written by the trainer, read by every producer before each train file

CURRICULUM_NAME = 'curriculum.json'


def curriculum_path(data_dir):
    return os.path.join(data_dir, QUEUE_NAME, CURRICULUM_NAME)


def write_curriculum_state(data_dir, state):
    os.makedirs(os.path.join(data_dir, QUEUE_NAME), exist_ok=True)
    atomic_json(state, curriculum_path(data_dir))


def read_curriculum_state(data_dir):
    """curriculum.json as a dict, or None when there is none (or it cannot be read as one)."""
    try:
        with open(curriculum_path(data_dir)) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


# -----------------------------------------------------------------------------
# producer heartbeats: how train.py knows a producer is already filling the queue

HEARTBEAT_MAX_AGE = 30.0  # seconds without a beat before a producer counts as gone
# set by train.py for the producer it starts: the producer stops when that process is gone,
# so a trainer killed with SIGKILL does not leave a producer running
PARENT_PID_ENV = 'DIFFUSION_PRODUCER_PARENT_PID'


def workers_dir(data_dir):
    return os.path.join(data_dir, QUEUE_NAME, 'workers')


def write_heartbeat(data_dir, worker_id, **extra):
    path = os.path.join(workers_dir(data_dir), f'heartbeat_w{worker_id:03d}.json')
    atomic_json(dict(pid=os.getpid(), worker_id=worker_id, time=time.time(), **extra), path)


def live_producers(data_dir, max_age=HEARTBEAT_MAX_AGE):
    """Heartbeats of producers whose process is alive and whose beat is fresh."""
    live = []
    folder = workers_dir(data_dir)
    if not os.path.isdir(folder):
        return live
    for name in os.listdir(folder):
        if not (name.startswith('heartbeat_') and name.endswith('.json')):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                beat = json.load(f)
        except (OSError, ValueError):
            continue
        if pid_alive(beat['pid']) and time.time() - beat['time'] < max_age:
            live.append(beat)
    return live


def claim_worker_id(data_dir):
    """The lowest worker id not held by a live producer, locked with an O_EXCL lock file.

    Lets `python prepare.py ...` be started several times on one queue: every process gets its
    own id, so its own file names and its own seed stream. A lock whose pid is dead is taken over.
    """
    folder = workers_dir(data_dir)
    os.makedirs(folder, exist_ok=True)
    for worker_id in itertools.count():
        lock = os.path.join(folder, f'lock_w{worker_id:03d}')
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(lock) as f:
                    owner = int(f.read().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and pid_alive(owner) and owner != os.getpid():
                continue
            # stale lock from a dead producer (or one still being written): take it over
            try:
                os.remove(lock)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return worker_id


def release_worker_id(data_dir, worker_id):
    for name in (f'lock_w{worker_id:03d}', f'heartbeat_w{worker_id:03d}.json'):
        try:
            os.remove(os.path.join(workers_dir(data_dir), name))
        except FileNotFoundError:
            pass
