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

Reading never runs code from a file: batch files load with torch.load(weights_only=True), and
meta.pkl with an unpickler that builds only plain containers and scalars (`read_meta`). A write the
file system refuses (a full disk, a read-only folder) is a `WriteError`: one line, and the file's
previous version is intact.
"""

import errno
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
TEMP_MARK = '.tmp-'
_tmp_counter = itertools.count()
# what the queue's files and the checkpoints are made of: nothing that takes code to rebuild
PLAIN_SCALARS = (str, int, float, bool, type(None))
PLAIN_CONTAINERS = (dict, list, tuple)


# -----------------------------------------------------------------------------
# atomic writes


class WriteError(OSError):
    """A file the file system would not let us write (disk full, read-only folder, no permission).

    Raised by atomic_write after the temporary file is gone, so the file's previous version is
    intact; `common.run_cli` prints it as one line (the mark below), like a UserError.
    """
    user_error = True

    def __init__(self, path, cause, temp_left=None):
        reason = cause.strerror or str(cause)
        super().__init__(cause.errno, reason, path)
        folder = os.path.dirname(path) or '.'
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = "free some disk space and run again"
        elif cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            advice = f"make {folder} writable or choose another folder, and run again"
        else:
            advice = f"check {folder} and run again"
        kept = "its previous version is intact" if os.path.exists(path) else "no earlier version existed"
        leftover = f"the temporary file {temp_left} could not be removed" if temp_left else "no temporary file is left"
        self.message = f"could not write {path}: {reason}; nothing earlier was lost ({kept}, {leftover}): {advice}"

    def __str__(self):
        return self.message


def os_error_in(error):
    """The OSError behind `error`: itself, or the one torch.save wraps in a RuntimeError."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def temp_path_for(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f'.{name}{TEMP_MARK}{os.getpid()}-{next(_tmp_counter)}')


def atomic_write(path, write_fn, fsync=False):
    """Write `path` via `write_fn(file_object)` under a temporary name, then rename into place.

    Readers see either no file or the whole file. The temporary file is removed on any error,
    KeyboardInterrupt included; an error of the file system (disk full, read-only folder) becomes
    a WriteError that says so in one line.
    """
    tmp = temp_path_for(path)
    try:
        with open(tmp, 'wb') as f:
            write_fn(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        temp_left = remove_temp_file(tmp)
        cause = os_error_in(e) if isinstance(e, Exception) and not isinstance(e, WriteError) else None
        if cause is not None:
            raise WriteError(path, cause, temp_left) from e
        raise


def remove_temp_file(tmp):
    """Remove a temporary file after a failed write; its path when even that failed, else None."""
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass
    except OSError:
        return tmp
    return None


def atomic_torch_save(obj, path, fsync=False):
    atomic_write(path, lambda f: torch.save(obj, f), fsync=fsync)


def atomic_pickle(obj, path):
    atomic_write(path, lambda f: pickle.dump(obj, f))


def atomic_json(obj, path):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=str).encode()))


def temp_file_pid(name):
    """The pid in a temporary file name `.<name>.tmp-<pid>-<n>`, or None for other names."""
    if not name.startswith('.') or TEMP_MARK not in name:
        return None
    try:
        return int(name.rsplit(TEMP_MARK, 1)[1].split('-')[0])
    except ValueError:
        return None


def temp_file_target(name):
    """The file a temporary file `.<name>.tmp-<pid>-<n>` was to become: `<name>`."""
    return name[1:].rsplit(TEMP_MARK, 1)[0]


def remove_stale_temp_files(folder, is_ours=None):
    """Remove temporary files left by processes that were killed (SIGKILL cannot clean up).

    Only files whose writer is dead go; with `is_ours`, only those whose target name it accepts
    (a folder shared with other programs keeps their files).
    """
    removed = 0
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        pid = temp_file_pid(name)
        if is_ours is not None and pid is not None and not is_ours(temp_file_target(name)):
            continue
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


def remove_stale_queue_temp_files(data_dir):
    """Temporary files of killed producers: batch files, worker states and heartbeats, meta.pkl.
    data_dir itself may be a source folder (data/<dataset>/): only meta.pkl's temporary files go there."""
    removed = sum(remove_stale_temp_files(split_dir(data_dir, split)) for split in ('train', 'val'))
    removed += remove_stale_temp_files(workers_dir(data_dir))
    return removed + remove_stale_temp_files(data_dir, is_ours=lambda name: name == META_NAME)


def plain_problem(obj, where='value', scalars=PLAIN_SCALARS, containers=PLAIN_CONTAINERS):
    """None when `obj` is made only of `containers` holding `scalars` (by exact type: a numpy
    float is not a float here, it takes code to rebuild); else which value is not, as a clause."""
    kind = type(obj)
    if kind in scalars:
        return None
    if kind not in containers:
        return f"{where} is a {kind.__module__}.{kind.__qualname__}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        problem = ((isinstance(obj, dict) and plain_problem(key, f"a key of {where}", scalars, containers))
                   or plain_problem(value, f"{where}[{key!r}]", scalars, containers))
        if problem:
            return problem
    return None


class MetaError(Exception):
    """A meta.pkl that cannot be read safely: one line (run_cli prints it; the mark below)."""
    user_error = True


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle naming a class or function, which PlainUnpickler never builds."""


class PlainUnpickler(pickle.Unpickler):
    """Builds plain containers and scalars only: every class or function a pickle names is refused,
    so no `__reduce__` payload can run. meta.pkl never needs one (write_meta checks)."""

    def find_class(self, module, name):
        raise RefusedGlobal(f"it asks for {module + '.' + name!r}")  # repr: the names are the file's, any text


def meta_fix(data_dir):
    return (f"delete it (and {queue_dir(data_dir)}), or run prepare.py or train.py with --clear_queue=True "
            f"to start this queue afresh")


def write_meta(data_dir, meta):
    problem = plain_problem(meta, 'meta')
    if problem:  # a provider's bug: its own readers would refuse the file
        raise TypeError(f"meta.pkl holds only plain containers and scalars, but {problem}")
    atomic_pickle(meta, meta_path(data_dir))


def read_meta(data_dir):
    """meta.pkl as a dict, or None when it does not exist yet; MetaError for a file that is damaged
    or asks for anything but plain containers and scalars (it is never executed)."""
    path = meta_path(data_dir)
    try:
        with open(path, 'rb') as f:
            meta = PlainUnpickler(f).load()
    except FileNotFoundError:
        return None
    except OSError:
        raise  # unreadable (permissions): run_cli names the file
    except RefusedGlobal as e:
        raise MetaError(f"{path} is not a meta.pkl of this project: {e}, and building that could run code, "
                        f"so it was refused; {meta_fix(data_dir)}") from None
    except Exception as e:  # truncated or not a pickle at all: EOFError, ValueError, ...
        raise MetaError(f"{path} is damaged ({type(e).__name__}: {e}); {meta_fix(data_dir)}") from None
    if not isinstance(meta, dict):
        raise MetaError(f"{path} holds a {type(meta).__name__}, not the dict a provider writes; {meta_fix(data_dir)}")
    return meta


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
    """pid, worker_id and time, plus what the provider adds: 'status', and while there is one a
    'warning' (train.py prints it once) or 'waiting_for' (why no file comes; see producers_waiting_for)."""
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


def producers_waiting_for(data_dir):
    """What the live producers of a queue say they wait for (their heartbeats' 'waiting_for'), each
    reason once, sorted: several workers waiting for the same checkpoint say it once."""
    return sorted({beat['waiting_for'] for beat in live_producers(data_dir) if beat.get('waiting_for')})


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
