"""Shared fixtures: a tiny corpus, tiny checkpoints, a tiny trained run and a filled queue made once per
session, and the two ways to run a script: in a process of its own (stopped, with whatever it started, before
run_script returns) or its main() in this one (run_main)."""
import contextlib
import dataclasses
import http.server
import importlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import types

import pytest
import torch

from checkpoints import save_checkpoint
from common import run_cli
from configurator import Config
from data.corpus import build_vocab
from model import GPT, GPTConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One torch thread in the test processes and the scripts they start, unless OMP_NUM_THREADS says otherwise: on
# these tiny tensors more threads mostly wait for each other (test_compare.py's evaluate.py run: 4 CPU-seconds with
# one thread, 10-18 with two, on a busy 2-core machine), and pytest-xdist keeps every core busy with a test process.
if 'OMP_NUM_THREADS' not in os.environ:
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)

SHARED_CORPUS = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'tinyshakespeare', 'input.txt')


def tiny_text(n_chars=60_000):
    """The start of Tiny Shakespeare when it is at hand, else made-up text with the same flavour."""
    for path in (SHARED_CORPUS, os.path.join(REPO_ROOT, 'data', 'tinyshakespeare', 'input.txt')):
        if os.path.exists(path):
            with open(path, encoding='utf-8') as f:
                return f.read(n_chars)
    lines = ["First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
             "All:\nSpeak, speak.\n\n",
             "MENENIUS:\nWhat work's, my countrymen, in hand? where go you?\n\n"]
    return ''.join(lines[i % 3] for i in range(n_chars // 40))[:n_chars]


@pytest.fixture(scope='session')
def tiny_corpus(tmp_path_factory):
    """Path of a small UTF-8 corpus file (use it as input_file)."""
    path = tmp_path_factory.mktemp('corpus') / 'input.txt'
    path.write_text(tiny_text(), encoding='utf-8')
    return str(path)


def run_script(args, timeout=240, env=None, **kwargs):
    """Run `python <args>` in the repo root; the process is always gone when this returns."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', WANDB_MODE='offline')
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop_process_group(proc)
    return proc.returncode, out


def run_main(args):
    """What run_script(args) returns, with the script's main() run in this process behind common.run_cli,
    as its `__main__` block runs it: (exit code, stdout and stderr as one text). For tests of what a
    script prints and exits with; a test about the process itself (its pid, signals, children left
    behind, resource limits) needs run_script. sys.argv, the working directory and the SIGTERM/SIGINT
    handlers are put back afterwards."""
    script, *argv = (str(arg) for arg in args)
    main = importlib.import_module(os.path.splitext(script)[0]).main
    output = io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    sys.argv = [script, *argv]
    os.chdir(REPO_ROOT)
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            run_cli(main)
        code = 0
    except SystemExit as exited:
        code = 0 if exited.code is None else exited.code
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
    return code, output.getvalue()


def stop_process_group(proc, timeout=10):
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# -----------------------------------------------------------------------------
# a web server on 127.0.0.1 for the corpus downloads: no test touches the internet

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving the files a test puts in tmp_path/www; yields its base URL."""
    www = tmp_path / 'www'
    www.mkdir()
    handler = lambda *a, **kw: QuietHandler(*a, directory=str(www), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{httpd.server_address[1]}'
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# -----------------------------------------------------------------------------
# tiny checkpoints of tiny_text()'s vocabulary, as train.py writes them (for the providers that follow one)

TINY_BLOCK_SIZE = 32
TINY_VOCAB = build_vocab(tiny_text())


def tiny_checkpoint(iter_num, block_size=TINY_BLOCK_SIZE, training_type='unmasking', stoi=None, seed=0,
                    vocab_size=None):
    """A checkpoint dict as train.py writes it, for a 1-layer GPT with random weights; `vocab_size`
    other than the vocabulary's makes a damaged one."""
    torch.manual_seed(seed + iter_num)
    config = GPTConfig(block_size=block_size, vocab_size=TINY_VOCAB['vocab_size'], n_layer=1, n_head=2, n_embd=16)
    meta = dict(stoi=stoi or TINY_VOCAB['stoi'], itos=TINY_VOCAB['itos'], vocab_size=TINY_VOCAB['vocab_size'],
                mask_token_id=TINY_VOCAB['mask_token_id'], wrong_token_id=TINY_VOCAB['wrong_token_id'])
    model_args = dict(dataclasses.asdict(config), vocab_size=vocab_size or config.vocab_size)
    return dict(model=GPT(config).state_dict(), model_args=model_args, iter_num=iter_num,
                best_val_loss=1.0, config={}, meta=meta, training_type=training_type,
                remasking_loss_type='all_positions', run_id='test')


def save_tiny(folder, name, iter_num, **kwargs):
    """tiny_checkpoint(iter_num, **kwargs) saved atomically as folder/name; returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    save_checkpoint(tiny_checkpoint(iter_num, **kwargs), path)
    return path


def follower_provider_config(provider_cls, tmp_path, tiny_corpus, **values):
    """A Config for a provider that follows checkpoints (`provider_cls`): its queue in tmp_path/queue,
    the watched folder tmp_path/out, a tiny shape, looking for new checkpoints before every file."""
    config = dict(provider_cls.config_defaults())
    config.update(input_file=tiny_corpus, data_dir=str(tmp_path / 'queue'), checkpoint_dir=str(tmp_path / 'out'),
                  block_size=TINY_BLOCK_SIZE, batch_size=8, batches_per_file=2, eval_iters=2, max_files=2,
                  inference_refresh_seconds=0.0)
    config.update(values)
    return Config(config)


def logging_provider(provider_cls, cfg):
    """provider_cls(cfg) whose log lines (its checkpoint follower's too) are kept in provider.logged."""
    provider = provider_cls(cfg)
    provider.logged = []
    provider.log = provider.predictor.log = provider.follower.log = provider.logged.append
    return provider


# -----------------------------------------------------------------------------
# train.py on a tiny model and a tiny queue, and what one such run leaves behind, made once per session
# (once per pytest-xdist worker: each worker has its own session and its own tmp_path_factory folder)

# a model and a queue small enough that a training run is a few seconds of import and startup; the producer gets
# data_wait_timeout to import torch and start, which on a busy machine (and beside other test processes) can
# take far longer than on a quiet one
TINY_DATA = ['--dataset=char_diffusion', '--batch_size=4', '--block_size=32', '--batches_per_file=2',
             '--eval_iters=2', '--data_seed=7']
TINY_MODEL = ['--n_layer=1', '--n_head=2', '--n_embd=32', '--dropout=0.0', '--device=cpu', '--compile=False',
              '--log_interval=1', '--eval_interval=2', '--warmup_iters=1', '--lr_decay_iters=20',
              '--data_wait_timeout=180.0']


def data_args(corpus, data_dir):
    return TINY_DATA + [f'--input_file={corpus}', f'--data_dir={data_dir}']


def train_args(corpus, data_dir, out_dir, *more):
    return ['train.py', *data_args(corpus, data_dir), *TINY_MODEL, f'--out_dir={out_dir}', *more]


def copy_folder(folder, tmp_path, name=None):
    """A copy of a shared folder under tmp_path, for a test that writes to it (a queue it consumes, an
    out_dir it resumes): tests that share a session fixture never see each other's writes."""
    return shutil.copytree(folder, tmp_path / (name or os.path.basename(folder)))


@pytest.fixture(scope='session')
def trained_run(tiny_corpus, tmp_path_factory):
    """data_dir, out_dir and output (`out`) of `train.py --max_iters=4` with the producer it starts, run
    once in a process of its own. Read it; to write, copy_folder() first."""
    root = tmp_path_factory.mktemp('trained_run')
    code, out = run_script(train_args(tiny_corpus, root / 'queue', root / 'out', '--max_iters=4'))
    assert code == 0, out
    return types.SimpleNamespace(data_dir=root / 'queue', out_dir=root / 'out', out=out)


@pytest.fixture(scope='session')
def filled_queue(tiny_corpus, tmp_path_factory):
    """A queue of train_args()'s data with 12 train files and the validation set (24 batches), made
    once by prepare.py's main(), no producer left. Copy it (copy_folder) to consume from it."""
    data_dir = tmp_path_factory.mktemp('filled') / 'queue'
    code, out = run_main(['prepare.py', *data_args(tiny_corpus, data_dir), '--max_files=12',
                          '--max_backlog_files=12'])
    assert code == 0, out
    return data_dir
