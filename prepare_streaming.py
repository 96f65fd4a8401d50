"""
DataProviderBase: everything a dataset provider shares, so a provider only says how rows are corrupted.

A provider process (one "worker")

  1. claims a worker id (queue_io.claim_worker_id) and starts a heartbeat, so train.py sees it;
  2. checks meta.pkl: one made with other data-shaping settings is refused (or cleared with
     clear_queue=True); otherwise writes it, before any batch file;
  3. worker 0 writes the validation set once (eval_iters batches, deterministic in `data_seed`);
  4. writes train files `queue/train/<seq>_w<worker>.pt` forever (or `max_files` of them),
     never more than `max_backlog_files` waiting, each from its own seed (seed, split, worker, seq);
  5. stops cleanly on SIGTERM / Ctrl-C: the current file is finished or its temp file removed,
     the worker id and heartbeat are released.

A provider subclasses DataProviderBase directly, declares its keys in `DEFAULTS` (those of the
helpers it composes, data/positions.py and data/corruption.py, plus its own) and implements
`configure()`, `make_rows(split, clean, generator)`, `corruption_meta()` and, when it prints one,
`summary_line(stats)`. See docs/data.md.
"""

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import threading
import time

import numpy as np
import torch

import queue_io
from common import REPO_ROOT, UserError
from configurator import config_fingerprint
from data.corpus import load_splits

SPLIT_CODES = {'train': 0, 'val': 1}  # part of every file's seed: train and val streams never overlap
HEARTBEAT_EVERY = 2.0  # seconds; well under queue_io.HEARTBEAT_MAX_AGE
STOP_POLL = 0.1  # seconds between checks of the stop flag while sleeping
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def file_seed(seed, split, worker_id, seq):
    """Seed of one batch file: a pure function of its identity, the same in every process."""
    state = np.random.SeedSequence([seed, SPLIT_CODES[split], worker_id, seq]).generate_state(1, np.uint64)
    return int(state[0]) & 0x7FFF_FFFF_FFFF_FFFF  # torch seeds are signed 64-bit


def seeded_generator(seed):
    return torch.Generator().manual_seed(seed)


def load_provider_class(dataset):
    """The `Provider` class of data/<dataset>/prepare_streaming.py; a UserError names the choices."""
    available = available_datasets()
    if not isinstance(dataset, str) or not dataset.isidentifier() or dataset not in available:
        raise UserError(f"unknown dataset {dataset!r}; available: {', '.join(available) or 'none'}")
    module = importlib.import_module(f'data.{dataset}.prepare_streaming')
    if not hasattr(module, 'Provider'):
        raise UserError(f"data/{dataset}/prepare_streaming.py defines no Provider class")
    return module.Provider


def available_datasets():
    """Folders under data/ that have a prepare_streaming.py."""
    data_root = os.path.join(REPO_ROOT, 'data')
    return sorted(name for name in os.listdir(data_root)
                  if os.path.isfile(os.path.join(data_root, name, 'prepare_streaming.py')))


def provider_defaults(dataset):
    """Every key the provider of `dataset` reads, with its default (UserError for an unknown dataset)."""
    return load_provider_class(dataset).config_defaults()


def provider_keys_if_known(values):
    """The provider keys of the dataset a config names, or none when it names no known dataset:
    for the unread-key warning of scripts that do not run a provider themselves."""
    dataset = values.get('dataset')
    return provider_defaults(dataset) if dataset in available_datasets() else {}


# keys every provider reads; a provider declares the rest in its DEFAULTS
BASE_DEFAULTS = dict(
    dataset='char_diffusion',
    data_dir=None,           # None: data/<dataset>/
    corpus=None,             # None: input_file is any UTF-8 text, split 90/10; 'text8': the benchmark (data/corpus.py)
    input_file=None,         # None: Tiny Shakespeare, or data/text8/text8 with corpus='text8'; downloaded when missing
    batch_size=64,
    block_size=256,
    batches_per_file=100,
    max_backlog_files=8,     # no new train file while this many wait to be read
    sleep_seconds=0.2,       # pause between backlog checks when the queue is full
    data_seed=1337,          # seed of the data streams; train.py's `seed` is separate, so a new
                             # training seed reuses the same queue
    data_stream_verbose=False,
    max_files=0,             # 0: run until stopped; N: write N train files (per worker), then exit
    num_workers=1,           # prepare.py runs this many provider processes on one queue
    num_threads=1,           # torch CPU threads per provider process (more producers: num_workers)
    eval_iters=200,          # the validation set holds this many batches
    clear_queue=False,       # True: delete a queue/meta.pkl made with other settings
)
# the base keys that shape the data (with every provider key its fingerprint_exclude() does not name)
SHAPING_KEYS = ('block_size', 'batch_size', 'batches_per_file', 'input_file', 'data_seed', 'eval_iters')


class DataProviderBase:
    DEFAULTS = {}  # the provider's own keys (besides BASE_DEFAULTS), with their defaults

    @classmethod
    def config_defaults(cls):
        """Every key the provider reads, with its default: the base keys and the provider's."""
        return {**BASE_DEFAULTS, **cls.DEFAULTS}

    def __init__(self, cfg, parent_pid=None):
        """`parent_pid`: stop when that process is gone (workers of prepare.py, a producer of train.py)."""
        self.cfg = cfg
        self.parent_pid = parent_pid
        self.dataset = cfg['dataset']
        self.data_dir = queue_io.dataset_dir(self.dataset, cfg['data_dir'])
        self.train_dir = queue_io.split_dir(self.data_dir, 'train')
        self.val_dir = queue_io.split_dir(self.data_dir, 'val')
        self.worker_id = None
        self.stop_requested = False
        self.interrupted = False        # a Ctrl-C (SIGINT) asked to stop: prepare.py then exits with 130
        self.last_beat = float('-inf')  # monotonic time of the last heartbeat: never yet
        self.last_beat_extras = {}      # the heartbeat_extras() it carried
        self.old_num_threads = None     # torch's thread count before start(), restored by close()
        self.old_handlers = {}          # signal handlers replaced by start(), restored by close()
        self.check_base_config()
        splits = load_splits(cfg['corpus'], cfg['input_file'])
        self.corpus_path, self.corpus_chars, self.vocab = splits.path, splits.length, splits.vocab
        self.dtype = queue_io.storage_dtype(self.vocab['vocab_size'])
        # token ids kept in the storage dtype: windows come out ready to save, no conversions
        self.ids = {split: storage_ids(splits.ids[split], self.dtype) for split in ('train', 'val')}
        for split, ids in self.ids.items():
            if len(ids) <= cfg['block_size']:
                raise UserError(f"block_size={cfg['block_size']} is longer than the {split} split "
                                f"({len(ids)} characters); use a smaller block_size or a larger input_file")
        self.rows_per_file = cfg['batches_per_file'] * cfg['batch_size']
        self.num_val_files = -(-cfg['eval_iters'] // cfg['batches_per_file'])  # ceil
        self.configure()

    # -------------------------------------------------------------------------
    # what providers implement

    def configure(self):
        """Check the provider's keys and build the helpers it composes (called once the corpus is
        loaded, so they can use self.vocab and self.ids); UserError for bad values."""

    def make_rows(self, split, clean, generator):
        """Corrupt clean windows (N, T) -> (tensors dict with 'x', 'y' (N, T) ..., stats for summary_line)."""
        raise NotImplementedError

    def corruption_meta(self):
        """meta.pkl entries of the provider: label_semantics, corruption_type, corruption, stages..."""
        raise NotImplementedError

    def schema(self):
        """dtype and per-row shape of every tensor in a batch file."""
        dtype = str(self.dtype).replace('torch.', '')
        return {'x': {'dtype': dtype, 'shape': (self.cfg['block_size'],)},
                'y': {'dtype': dtype, 'shape': (self.cfg['block_size'],)}}

    def summary_line(self, stats):
        """The per-file corruption summary (the mask-ratio line, starting with log_prefix()); None prints nothing."""
        return None

    def file_info_extras(self):
        """Extra entries for a file's `info` dict (e.g. the checkpoint that made it)."""
        return {}

    def fingerprint_exclude(self):
        """Provider keys that do not change what the files contain (devices, timeouts, ignored keys)."""
        return ()

    def wait_until_ready(self):
        """Block until rows can be made (e.g. a first checkpoint has appeared); False when told to stop."""
        return True

    def heartbeat_extras(self):
        """Extra entries for the heartbeat, e.g. {'warning': ...}: train.py prints a warning once."""
        return {}

    # -------------------------------------------------------------------------
    # config, meta and fingerprint

    def check_base_config(self):
        cfg = self.cfg
        for key in ('batch_size', 'block_size', 'batches_per_file', 'max_backlog_files', 'num_workers', 'num_threads',
                    'eval_iters'):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise UserError(f"{key} must be a positive integer, got {cfg[key]!r}")
        if not isinstance(cfg['data_seed'], int) or cfg['data_seed'] < 0:
            raise UserError(f"data_seed must be an integer >= 0, got {cfg['data_seed']!r}")
        if cfg['max_files'] < 0:
            raise UserError(f"max_files must be >= 0 (0 runs until stopped), got {cfg['max_files']}")
        if cfg['sleep_seconds'] < 0:
            raise UserError(f"sleep_seconds must be >= 0, got {cfg['sleep_seconds']}")

    def data_config(self):
        """The values that decide what the batch files contain."""
        values = {k: self.cfg[k] for k in SHAPING_KEYS}
        excluded = self.fingerprint_exclude()
        values.update({k: self.cfg[k] for k in self.DEFAULTS if k not in excluded})
        values['input_file'] = self.corpus_path
        if self.cfg['corpus'] is not None:  # only when set: queues made before the key existed keep their fingerprint
            values['corpus'] = self.cfg['corpus']
        values['vocab'] = ''.join(self.vocab['chars'])
        values['corpus_chars'] = self.corpus_chars
        values['dataset'] = self.dataset
        return values

    def build_meta(self):
        data_config = self.data_config()
        meta = dict(
            dataset=self.dataset,
            provider=f'{type(self).__module__}.{type(self).__name__}',
            stoi=self.vocab['stoi'], itos=self.vocab['itos'],
            vocab_size=self.vocab['vocab_size'],
            mask_token_id=self.vocab['mask_token_id'], wrong_token_id=self.vocab['wrong_token_id'],
            ignore_index=self.vocab['ignore_index'],
            block_size=self.cfg['block_size'], batch_size=self.cfg['batch_size'],
            batches_per_file=self.cfg['batches_per_file'],
            eval_iters=self.cfg['eval_iters'], num_val_files=self.num_val_files,
            schema=self.schema(), input_file=data_config['input_file'], seed=self.cfg['data_seed'],
            data_config=data_config, fingerprint=config_fingerprint(data_config),
        )
        meta.update(self.corruption_meta())
        return meta

    def prepare_queue(self):
        """Refuse or clear a queue made with other settings; write meta.pkl when it is missing or describes
        the same data in an older form."""
        meta = self.build_meta()
        try:
            old = queue_io.read_meta(self.data_dir)
        except queue_io.MetaError:  # damaged, or not ours: refused in one line unless asked to clear it
            if not self.cfg['clear_queue']:
                raise
            old = {}  # no fingerprint: cleared below as a queue made with other settings
        if old is not None and old.get('fingerprint') != meta['fingerprint']:
            if not self.cfg['clear_queue']:
                raise UserError(f"{queue_io.meta_path(self.data_dir)} was made with other settings "
                                f"({describe_changes(old.get('data_config', {}), meta['data_config'])}); "
                                f"delete {queue_io.queue_dir(self.data_dir)} and meta.pkl, or pass --clear_queue=True")
            self.clear_queue()
            old = None
        for folder in (self.train_dir, self.val_dir):
            os.makedirs(folder, exist_ok=True)
        queue_io.remove_stale_queue_temp_files(self.data_dir)  # what killed producers were writing
        if old is None:
            queue_io.write_meta(self.data_dir, meta)
        elif old != meta:  # the same data (same fingerprint), described by an older version of this code
            self.log(f"meta.pkl described this queue in an older form ({describe_changes(old, meta)}); "
                     f"rewritten, the batch files are unchanged")
            queue_io.write_meta(self.data_dir, meta)
        self.meta = meta

    def clear_queue(self):
        """Delete the batch files, worker states and meta.pkl of an old queue (locks stay)."""
        self.log(f"clear_queue=True: deleting the old queue in {queue_io.queue_dir(self.data_dir)} and its meta.pkl")
        for folder in (self.train_dir, self.val_dir):
            shutil.rmtree(folder, ignore_errors=True)
        workers = queue_io.workers_dir(self.data_dir)
        for name in os.listdir(workers) if os.path.isdir(workers) else []:
            if name.startswith('state_'):
                os.remove(os.path.join(workers, name))
        os.remove(queue_io.meta_path(self.data_dir))

    # -------------------------------------------------------------------------
    # making and writing files

    def sample_windows(self, split, n_rows, generator):
        """n_rows random windows of block_size tokens from the split: (N, T) in the storage dtype."""
        ids, T = self.ids[split], self.cfg['block_size']
        starts = torch.randint(0, len(ids) - T + 1, (n_rows,), generator=generator)  # (N,)
        return ids.unfold(0, T, 1)[starts]  # (N, T); unfold is a view, the indexing copies N rows

    def make_file(self, split, worker_id, seq, n_batches):
        """Tensors, info and stats of one batch file; a pure function of (config, split, worker, seq), and for
        a train file of the curriculum of its stage."""
        seed = file_seed(self.cfg['data_seed'], split, worker_id, seq)
        generator = seeded_generator(seed)
        clean = self.sample_windows(split, n_batches * self.cfg['batch_size'], generator)
        tensors, stats = self.make_rows(split, clean, generator)
        info = dict(split=split, worker_id=worker_id, seq=seq, seed=seed, batches=n_batches,
                    created=time.time(), **stage_info(tensors), **self.file_info_extras())
        return tensors, info, stats

    def write_file(self, split, seq, path, n_batches):
        start = time.perf_counter()
        worker_id = self.worker_id if split == 'train' else 0
        tensors, info, stats = self.make_file(split, worker_id, seq, n_batches)
        made = time.perf_counter()
        queue_io.write_batch_file(path, tensors, info)
        seconds = time.perf_counter() - start
        tokens = n_batches * self.cfg['batch_size'] * self.cfg['block_size']
        backlog = len(queue_io.ready_files(self.train_dir))
        verbose = self.cfg['data_stream_verbose']
        timing = f", make {made - start:.3f}s save {start + seconds - made:.3f}s" if verbose else ''
        stages = info.get('stages', ())
        stage = f" (stage {stages[0]})" if split == 'train' and len(stages) == 1 else ''  # the curriculum's stage
        self.log(f"{split} {os.path.basename(path)}{stage}: {n_batches} batches, {tokens / seconds / 1e6:.2f}M tok/s, "
                 f"backlog {backlog}/{self.cfg['max_backlog_files']}{timing}")
        line = self.summary_line(stats)
        if line:
            print(line, flush=True)
        return tokens, seconds

    def val_file_batches(self, index):
        """Batches in validation file `index`: eval_iters batches, batches_per_file to a file."""
        return min(self.cfg['batches_per_file'], self.cfg['eval_iters'] - index * self.cfg['batches_per_file'])

    def write_validation_set(self):
        """eval_iters batches in num_val_files files; deterministic, written once, completed after a crash."""
        if not self.wait_until_ready():
            return
        for index in range(self.num_val_files):
            path = os.path.join(self.val_dir, queue_io.val_file_name(index))
            if os.path.exists(path) or self.should_stop():
                continue
            self.write_file('val', index, path, self.val_file_batches(index))
            self.beat('writing validation set')

    def validation_files(self):
        """The tensors of every validation file, exactly as write_validation_set writes them, made in
        memory (evaluate.py rebuilds a checkpoint's validation set this way, with no queue)."""
        for index in range(self.num_val_files):
            yield self.make_file('val', 0, index, self.val_file_batches(index))[0]

    def write_train_files(self):
        written = 0
        while not self.should_stop() and not (self.cfg['max_files'] and written >= self.cfg['max_files']):
            if not self.wait_for_room():
                break
            seq = self.reserve_seq()
            path = os.path.join(self.train_dir, queue_io.train_file_name(seq, self.worker_id))
            self.write_file('train', seq, path, self.cfg['batches_per_file'])
            written += 1
            self.beat('writing')
        return written

    def wait_for_room(self):
        """Block while max_backlog_files train files wait to be read, then until the provider is ready
        (wait_until_ready); False when told to stop."""
        announced = False
        while len(queue_io.ready_files(self.train_dir)) >= self.cfg['max_backlog_files']:
            if self.cfg['data_stream_verbose'] and not announced:
                self.log(f"queue full ({self.cfg['max_backlog_files']} files waiting), pausing")
                announced = True
            self.beat('waiting')
            deadline = time.monotonic() + max(self.cfg['sleep_seconds'], STOP_POLL)
            while time.monotonic() < deadline:
                if self.should_stop():
                    return False
                time.sleep(STOP_POLL)
        return self.wait_until_ready()

    # -------------------------------------------------------------------------
    # worker identity, sequence numbers, heartbeats

    def state_path(self):
        return os.path.join(queue_io.workers_dir(self.data_dir), f'state_w{self.worker_id:03d}.json')

    def reserve_seq(self):
        """The next sequence number of this worker, saved before the file is written.

        Saving first means a killed producer may skip a number but never writes one twice
        (the same seq would repeat the same seed and so the same data).
        """
        seq = max(self.read_next_seq(), self.next_seq_on_disk())
        queue_io.atomic_json({'next_seq': seq + 1}, self.state_path())
        return seq

    def read_next_seq(self):
        try:
            with open(self.state_path()) as f:
                return int(json.load(f)['next_seq'])
        except (OSError, ValueError, KeyError):
            return 0

    def next_seq_on_disk(self):
        """One past the highest seq of this worker's files still in the queue (ready or claimed)."""
        # claimed files are renamed <name>.r<rank>.p<pid>, so match the start of the name only
        own_file = re.compile(rf'(\d+)_w{self.worker_id:03d}{re.escape(queue_io.FILE_SUFFIX)}')
        seqs = [int(match.group(1))
                for folder in (self.train_dir, os.path.join(self.train_dir, queue_io.CLAIMED_DIR))
                for name in (os.listdir(folder) if os.path.isdir(folder) else [])
                if (match := own_file.match(name))]
        return max(seqs) + 1 if seqs else 0

    def beat(self, status, force=False):
        now = time.monotonic()
        extras = self.heartbeat_extras()
        # a new warning goes out at once: train.py may be about to read its first files
        if force or now - self.last_beat >= HEARTBEAT_EVERY or extras != self.last_beat_extras:
            queue_io.write_heartbeat(self.data_dir, self.worker_id, dataset=self.dataset, status=status, **extras)
            self.last_beat, self.last_beat_extras = now, extras

    # -------------------------------------------------------------------------
    # running and stopping

    def start(self):
        """Claim a worker id, install stop handlers, check/write meta.pkl. Pair with close()."""
        # one thread: the rows are cheap vector ops where extra threads mostly contend with the
        # trainer for cores; a faster producer is more workers (num_workers)
        self.old_num_threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg['num_threads'])
        self.worker_id = queue_io.claim_worker_id(self.data_dir)
        self.install_signal_handlers()
        self.beat('starting', force=True)
        self.prepare_queue()
        self.log(f"writing to {queue_io.queue_dir(self.data_dir)} ({self.rows_per_file} rows "
                 f"x {self.cfg['block_size']} tokens per file, backlog limit {self.cfg['max_backlog_files']})")

    def produce(self):
        if self.worker_id == 0:
            self.write_validation_set()
        written = self.write_train_files()
        self.log(f"stopped after {written} train files" if self.should_stop() else f"done: {written} train files")
        return written

    def close(self):
        if self.worker_id is not None:
            queue_io.release_worker_id(self.data_dir, self.worker_id)
        self.restore_signal_handlers()
        if self.old_num_threads is not None:
            torch.set_num_threads(self.old_num_threads)
            self.old_num_threads = None

    def run(self, parent_pid=None):
        """start, produce, close. A `parent_pid` given here replaces the constructor's."""
        if parent_pid is not None:
            self.parent_pid = parent_pid
        try:
            self.start()
            return self.produce()
        finally:
            self.close()

    def should_stop(self):
        orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        return self.stop_requested or orphaned

    def request_stop(self, signum=None, frame=None):
        # a second Ctrl-C stops at once (atomic writes remove their temp file); SIGTERMs (prepare.py
        # forwards its own to its workers, which a terminal's Ctrl-C reaches too) only ask again
        if signum == signal.SIGINT:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True
        self.stop_requested = True

    def install_signal_handlers(self):
        # the first SIGTERM / Ctrl-C finishes the current file, then the loops return
        self.old_handlers = {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self.old_handlers = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
            if hasattr(signal, 'pthread_sigmask'):  # a worker starts with them held (stop_signals_held)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def restore_signal_handlers(self):
        for sig, handler in self.old_handlers.items():
            signal.signal(sig, handler)
        self.old_handlers = {}

    def log_prefix(self):
        worker = '' if self.worker_id is None else f' w{self.worker_id:03d}'
        return f"[{self.dataset}{worker}]"

    def log(self, message):
        print(f"{self.log_prefix()} {message}", flush=True)


@contextlib.contextmanager
def stop_signals_held():
    """Hold SIGTERM and SIGINT back (pending, not lost) while worker processes are started.

    A child inherits the held mask and lets the signals in only once its provider's handlers are in
    place (install_signal_handlers): a Ctrl-C that reaches it while it is still importing then asks
    it to stop, instead of ending it in a KeyboardInterrupt traceback. (The stdlib starts its
    resource tracker the same way.)
    """
    if not hasattr(signal, 'pthread_sigmask'):  # no signal masks on Windows
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def storage_ids(ids, dtype):
    """A split's numpy token ids as a tensor of the batch files' dtype. uint8 ids read as int8 are the
    same numbers below 128 (every id of an int8 vocabulary): a view, so the corpus is not copied."""
    tensor = torch.from_numpy(ids)
    if tensor.dtype == torch.uint8 and dtype == torch.int8:
        return tensor.view(torch.int8)
    return tensor.to(dtype)


def stage_info(tensors):
    """A batch file's info entry naming the stages its rows come from: {'stages': [indices]} when
    it stores a `stage` tensor (one index for a train file of the curriculum), else {}."""
    if 'stage' not in tensors:
        return {}
    return {'stages': torch.unique(tensors['stage']).tolist()}


def describe_changes(old, new):
    """Which data-shaping keys differ between two data_config dicts, briefly."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed:
        return 'unknown differences'
    shown = [f"{k}: {shorten(old.get(k))} -> {shorten(new.get(k))}" for k in changed[:3]]
    return '; '.join(shown) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else '')


def shorten(value, width=40):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'
