"""
The trainer's side of the file-system queue: `DatasetConsumer` hands out (x, y) batches from the
files a producer (prepare.py) writes, and `validate_meta` checks that a queue fits a config.

Train files are claimed by an atomic rename into queue/train/.claimed/, so two consumers (two DDP
ranks, two trainers) never read the same file; a claimed file is deleted once all its batches
have been served, and that deletion is what lets the producer write the next one (backpressure).
While one file is served, a background thread claims and loads the next, so a training step
never waits for the disk as long as the producer keeps up. Validation files are read in place,
never claimed or deleted, and served in the same order at every evaluation.

    with DatasetConsumer('data/char_diffusion', batch_size=64, block_size=256, device='cuda') as consumer:
        meta = consumer.meta                   # blocks until the producer has written meta.pkl
        x, y = consumer.get_batch('train')     # (B, T) int64 on the device
        for batch in consumer.val_batches():   # the whole fixed validation set, as dicts
            ...

See docs/queue_consumer.md for the user's view.
"""

import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass

import torch

from common import UserError
from queue_io import (CLAIMED_DIR, load_batch_file, meta_path, pid_alive, producers_waiting_for, read_meta,
                      ready_files, split_dir, val_file_name)

QUARANTINE_DIR = '.quarantine'   # damaged files are moved here, next to the split they came from
FIRST_WAIT_MESSAGE_AFTER = 2.0   # seconds: short waits between files stay silent
WAIT_MESSAGE_EVERY = 10.0        # seconds between repeated "waiting for the producer" lines
REASON_REPEAT_FIRST = 60.0       # a producer's reason for waiting comes again after a minute,
REASON_REPEAT_MAX = 600.0        # then after twice as long each time, at most 10 minutes
_CLAIMED_NAME = re.compile(r'^(?P<name>.+)\.r(?P<rank>\d+)\.p(?P<pid>\d+)$')

# what to change when a queue's meta.pkl disagrees with the config ({queue} is the queue's value)
_META_FIXES = {
    'block_size': "set block_size = {queue!r}, or restart prepare.py with the new block_size "
                  "and clear_queue = True",
    'batch_size': "set batch_size = {queue!r}, or restart prepare.py with the new batch_size "
                  "and clear_queue = True",
    'vocab_size': "the queue was made from another corpus: set dataset / input_file to the model's corpus",
    'label_semantics': "restart prepare.py with dataset_partial_targets = {wanted_partial} "
                       "and clear_queue = True",
}


def validate_meta(meta, *, block_size=None, batch_size=None, vocab_size=None, label_semantics=None,
                  data_dir=''):
    """Raise UserError, one line, at the first value in which the queue's meta.pkl differs from
    what the caller needs (None means: not checked)."""
    wanted = dict(block_size=block_size, batch_size=batch_size, vocab_size=vocab_size,
                  label_semantics=label_semantics)
    where = f"the queue at {data_dir}" if data_dir else "the queue"
    for key, value in wanted.items():
        if value is None:
            continue
        if key not in meta:
            raise UserError(f"{where} has no '{key}' in its meta.pkl (an older producer wrote it): "
                            f"restart prepare.py with clear_queue = True")
        if meta[key] != value:
            fix = _META_FIXES[key].format(queue=meta[key], wanted_partial=value == 'partial')
            raise UserError(f"{where} was made with {key}={meta[key]!r} but the config needs "
                            f"{value!r}: {fix}")


# -----------------------------------------------------------------------------
# claiming train files (plain functions, so tests can drive them directly)


def claimed_dir(data_dir):
    return os.path.join(split_dir(data_dir, 'train'), CLAIMED_DIR)


def claim_oldest_file(data_dir, rank):
    """Move the oldest ready train file into .claimed/ and return (name, claimed path), or None.

    os.rename is atomic: when several consumers race for one file it succeeds for exactly one
    and raises FileNotFoundError for the others, which then try the next file.
    """
    train_dir = split_dir(data_dir, 'train')
    target_dir = claimed_dir(data_dir)
    os.makedirs(target_dir, exist_ok=True)  # again each time: clear_queue may have removed it
    for name in ready_files(train_dir):
        claimed = os.path.join(target_dir, f'{name}.r{rank}.p{os.getpid()}')
        try:
            os.rename(os.path.join(train_dir, name), claimed)
            return name, claimed
        except FileNotFoundError:
            continue  # another consumer was faster
    return None


def unclaim(data_dir, name, claimed_path):
    """Put a claimed file back into the queue under its own name (it was not used)."""
    try:
        os.rename(claimed_path, os.path.join(split_dir(data_dir, 'train'), name))
    except FileNotFoundError:
        pass  # someone else (a recovering consumer, clear_queue) already moved it


def recover_abandoned_claims(data_dir):
    """Return files claimed by consumers that died (their pid is gone) to the queue; count them."""
    folder = claimed_dir(data_dir)
    recovered = 0
    for claimed_name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = _CLAIMED_NAME.match(claimed_name)
        if match is None or pid_alive(int(match['pid'])):
            continue
        path = os.path.join(folder, claimed_name)
        if os.path.exists(path):
            unclaim(data_dir, match['name'], path)
            recovered += 1
    return recovered


def quarantine(path, split_folder, name, error):
    """Move a file that failed to load out of the way, say so in one line, and carry on."""
    target_dir = os.path.join(split_folder, QUARANTINE_DIR)
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, name)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return
    print(f"warning: queue file {name} is damaged ({type(error).__name__}: {error}); "
          f"moved to {target}", file=sys.stderr, flush=True)


# -----------------------------------------------------------------------------
# what a waiting consumer says


class WaitLines:
    """The lines a consumer prints while it waits for `path` in the queue at `data_dir`: nothing for
    FIRST_WAIT_MESSAGE_AFTER seconds, then "waiting for the producer at <path> (N s so far)" every
    WAIT_MESSAGE_EVERY seconds. When the producer's heartbeat says why it writes nothing (say, the
    run whose checkpoints it needs has saved none yet), that reason goes into the line at once, and
    the line comes back rarely (REASON_REPEAT_FIRST, doubling up to REASON_REPEAT_MAX): such a wait
    lasts as long as another training run, and it is the trainer's console a user reads."""

    def __init__(self, data_dir, path):
        self.data_dir, self.path = data_dir, path
        self.next_line_at = FIRST_WAIT_MESSAGE_AFTER  # in seconds waited
        self.every = WAIT_MESSAGE_EVERY
        self.reasons = []

    def lines(self, waited):
        """The lines to print `waited` seconds into the wait (most calls: none)."""
        if waited < FIRST_WAIT_MESSAGE_AFTER:
            return []  # short waits between files read no heartbeats either
        reasons = producers_waiting_for(self.data_dir)
        if reasons != self.reasons:  # said at once: a new reason, or none any more (the plain line is back)
            self.reasons, self.every = reasons, REASON_REPEAT_FIRST if reasons else WAIT_MESSAGE_EVERY
            self.next_line_at = waited
        if waited < self.next_line_at:
            return []
        self.next_line_at = waited + self.every
        line = f"waiting for the producer at {self.path} ({waited:.0f} s so far)"
        if not reasons:
            return [line]
        self.every = min(2 * self.every, REASON_REPEAT_MAX)
        return [f"{line}; the producer says: {reason}" for reason in reasons]

    def what_to_do(self):
        """The end of the timeout error: the producer's own reason when it gave one."""
        if self.reasons:
            return f"the producer says: {' | '.join(self.reasons)}"
        return "start one with `python prepare.py <config>`"


# -----------------------------------------------------------------------------
# one loaded file, served batch by batch


@dataclass
class LoadedFile:
    name: str
    path: str                 # where the file lies now (the claimed path for train files)
    tensors: dict             # name -> (rows, ...) tensor, already prepared for the device
    n_batches: int
    next_batch: int = 0


def is_integer(tensor):
    return not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)


def widen(tensor):
    """Token ids are stored as int8/int16 on disk; the model and the losses want int64."""
    return tensor.long() if is_integer(tensor) else tensor


def check_batch_tensors(tensors, batch_size, block_size):
    """The number of batches in a loaded file; ValueError when it cannot be cut into batches."""
    if not isinstance(tensors, dict) or 'x' not in tensors or 'y' not in tensors:
        raise ValueError("no 'x' and 'y' tensors")
    rows = tensors['x'].shape[0]
    if rows == 0 or rows % batch_size:
        raise ValueError(f"{rows} rows is not a whole number of batches of {batch_size}")
    for key in ('x', 'y'):
        if tuple(tensors[key].shape) != (rows, block_size):
            shape = tuple(tensors[key].shape)
            raise ValueError(f"'{key}' has shape {shape}, expected ({rows}, {block_size})")
    for key, tensor in tensors.items():
        if tensor.shape[0] != rows:
            raise ValueError(f"'{key}' has {tensor.shape[0]} rows, 'x' has {rows}")
    return rows // batch_size


def prepare_for_device(tensors, device):
    """Do the per-file work once, off the hot path: on CUDA pin the (small, int8) storage so the
    per-batch copy can be asynchronous; elsewhere widen to int64 now so a batch is a mere view."""
    if device.type == 'cuda':
        return {key: t.pin_memory() for key, t in tensors.items()}
    return {key: widen(t) for key, t in tensors.items()}


def batch_on_device(tensors, index, batch_size, device, own_copy=False):
    """Batch `index` of a file: rows [index * B, (index + 1) * B) of every tensor, on the device.

    On CPU the result is a view into the file (no copy at all) unless `own_copy`: the cached
    validation set asks for one, so a caller that edits a batch in place cannot change it.
    """
    rows = slice(index * batch_size, (index + 1) * batch_size)
    non_blocking = device.type == 'cuda'  # pinned source: the copy overlaps with compute
    # on CUDA the int8 rows travel and are widened on the GPU; on CPU both steps are no-ops
    batch = {key: widen(t[rows].to(device, non_blocking=non_blocking)) for key, t in tensors.items()}
    if own_copy and device.type == 'cpu':
        batch = {key: t.clone() for key, t in batch.items()}
    return batch


# -----------------------------------------------------------------------------


class DatasetConsumer:
    """Blocking, prefetching, deleting, DDP-safe reader of data/<dataset>/queue (see module doc)."""

    def __init__(self, data_dir, batch_size, block_size, device, *, rank=None, world_size=None,
                 wait_timeout=None, prefetch=True, verbose=True, poll_seconds=0.5):
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.block_size = block_size
        self.device = torch.device(device)
        self.rank = int(os.environ.get('RANK', 0)) if rank is None else rank
        self.world_size = int(os.environ.get('WORLD_SIZE', 1)) if world_size is None else world_size
        self.wait_timeout = wait_timeout
        self.prefetch = prefetch
        self.verbose = verbose
        self.poll_seconds = poll_seconds
        self.wait_seconds = 0.0   # time get_batch spent blocked on data (train.py reports it)
        self.files_consumed = 0
        self._meta = None
        self._current = None      # the train file being served
        self._val_set = None      # [(file, batch index)] of the validation set, loaded once
        self._val_cursor = 0
        # prefetch thread: it loads one file ahead when asked (`_want_next`) and hands it over
        self._thread = None
        self._stop = threading.Event()
        self._want_next = threading.Event()
        self._ready = queue.Queue()
        self._data_arrived = threading.Event()
        self._closed = False
        recovered = recover_abandoned_claims(data_dir)
        if recovered:
            self._say(f"put {recovered} file(s) left claimed by a consumer that died back into the queue")

    # ---- meta

    @property
    def meta(self):
        """meta.pkl of the queue (waits for the producer to write it), checked against our shapes."""
        if self._meta is None:
            meta = self._wait_for(lambda: read_meta(self.data_dir), meta_path(self.data_dir))
            validate_meta(meta, block_size=self.block_size, batch_size=self.batch_size,
                          data_dir=self.data_dir)
            self._meta = meta
        return self._meta

    # ---- batches

    def get_batch(self, split):
        """(x, y): int64 tensors of shape (B, T) on the device."""
        batch = self.get_batch_dict(split)
        return batch['x'], batch['y']

    def get_batch_dict(self, split):
        """Every tensor of the next batch (x, y and extras such as 'stage'), on the device."""
        if split == 'train':
            return self._next_train_batch()
        if split == 'val':
            return self._next_val_batch()
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")

    def val_batches(self):
        """Every validation batch as a dict, always in the same order, starting from the first."""
        for loaded, index in self._val_order():
            yield batch_on_device(loaded.tensors, index, self.batch_size, self.device, own_copy=True)

    # ---- train

    def _next_train_batch(self):
        self.meta  # check the queue fits before any file is claimed
        starting_file = self._current is None
        if starting_file:
            self._current = self._next_train_file()
        current = self._current
        batch = batch_on_device(current.tensors, current.next_batch, self.batch_size, self.device)
        current.next_batch += 1
        if current.next_batch == current.n_batches:
            self._finish(current)
        if starting_file and self.prefetch:
            # ask for the file after this one only now: its load (which holds the GIL at times)
            # then overlaps the training step instead of delaying this call
            self._want_next.set()
        return batch

    def _finish(self, loaded):
        """All batches served: delete the file, which tells the producer to write another."""
        self._current = None
        try:
            os.remove(loaded.path)
        except FileNotFoundError:
            pass  # the queue was cleared under us
        self.files_consumed += 1

    def _next_train_file(self):
        if self._closed:
            raise RuntimeError("DatasetConsumer is closed")
        train_dir = split_dir(self.data_dir, 'train')
        if not self.prefetch:
            return self._timed_wait(self._claim_and_load, train_dir)
        if self._thread is None:
            self._start_prefetch()
        item = self._timed_wait(self._take_prefetched, train_dir)
        if isinstance(item, BaseException):
            self._want_next.set()  # the thread goes on with the next file if the caller does
            raise item
        return item

    def _claim_and_load(self):
        """Claim and load the oldest ready train file; None when the queue is empty."""
        while True:
            claim = claim_oldest_file(self.data_dir, self.rank)
            if claim is None:
                return None
            loaded = self._load(*claim, split='train')
            if loaded is not None:
                return loaded
            # that one was damaged and is quarantined: try the next

    def _load(self, name, path, split):
        """Load and check one batch file; quarantine it and return None when it is damaged."""
        try:
            tensors, _info = load_batch_file(path)
            n_batches = check_batch_tensors(tensors, self.batch_size, self.block_size)
        except FileNotFoundError:
            return None
        except Exception as e:  # any failure to read a file means the file is bad, not the run
            quarantine(path, split_dir(self.data_dir, split), name, e)
            return None
        return LoadedFile(name, path, prepare_for_device(tensors, self.device), n_batches)

    # ---- prefetch thread

    def _start_prefetch(self):
        self._want_next.set()  # the first file
        self._thread = threading.Thread(target=self._prefetch_loop, name='queue-prefetch', daemon=True)
        self._thread.start()

    def _prefetch_loop(self):
        while not self._stop.is_set():
            if not self._want_next.wait(self.poll_seconds):
                continue
            self._want_next.clear()
            try:
                item = self._poll_in_background(self._claim_and_load)
            except Exception as e:  # handed to the training thread, which raises it
                item = e
            if item is None:  # stopped
                return
            self._ready.put(item)
            self._data_arrived.set()

    def _poll_in_background(self, poll):
        while not self._stop.is_set():
            item = poll()
            if item is not None:
                return item
            self._stop.wait(self.poll_seconds)
        return None

    def _take_prefetched(self):
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            return None

    # ---- val

    def _next_val_batch(self):
        order = self._val_order()
        loaded, index = order[self._val_cursor % len(order)]
        self._val_cursor += 1
        return batch_on_device(loaded.tensors, index, self.batch_size, self.device, own_copy=True)

    def _val_order(self):
        """[(file, batch index)] of the whole validation set, in file then batch order."""
        if self._val_set is None:
            count = self.meta.get('num_val_files', 0)
            if not count:
                raise UserError(f"the queue at {self.data_dir} has no validation set (num_val_files = 0)")
            files = self._timed_wait(lambda: self._load_val_set(count), split_dir(self.data_dir, 'val'))
            self._val_set = [(loaded, index) for loaded in files for index in range(loaded.n_batches)]
        return self._val_set

    def _load_val_set(self, count):
        """All `count` validation files, or None while some are still missing (or were damaged)."""
        val_dir = split_dir(self.data_dir, 'val')
        names = [val_file_name(i) for i in range(count)]
        if not all(os.path.exists(os.path.join(val_dir, name)) for name in names):
            return None
        files = [self._load(name, os.path.join(val_dir, name), split='val') for name in names]
        return None if None in files else files

    # ---- waiting

    def _timed_wait(self, poll, path):
        """_wait_for, with the time spent added to wait_seconds (time the training step lost)."""
        start = time.perf_counter()
        try:
            return self._wait_for(poll, path)
        finally:
            self.wait_seconds += time.perf_counter() - start

    def _wait_for(self, poll, path):
        """Call `poll()` until it returns something; report the wait and honour wait_timeout."""
        start = time.monotonic()
        wait_lines = WaitLines(self.data_dir, path)
        while True:
            result = poll()
            if result is not None:
                return result
            waited = time.monotonic() - start
            if self.wait_timeout is not None and waited >= self.wait_timeout:
                raise UserError(f"no producer wrote {path} within {self.wait_timeout:g} s: {wait_lines.what_to_do()}")
            for line in wait_lines.lines(waited):
                self._say(line)
            # the prefetch thread wakes us as soon as it has a file; otherwise this is a sleep
            if self._data_arrived.wait(self.poll_seconds):
                self._data_arrived.clear()

    def _say(self, line):
        if self.verbose:
            prefix = f"[rank {self.rank}] " if self.world_size > 1 else ""
            print(prefix + line, flush=True)

    # ---- shutdown

    def close(self):
        """Stop the prefetch thread and put files it claimed but nobody used back in the queue."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        while True:
            item = self._take_prefetched()
            if item is None:
                break
            if isinstance(item, LoadedFile):
                unclaim(self.data_dir, item.name, item.path)
        # the file being served is partly used: it goes like a finished one
        if self._current is not None:
            self._finish(self._current)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
