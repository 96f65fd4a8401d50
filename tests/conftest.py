"""Shared fixtures: a tiny corpus, tiny checkpoints, and a guard that no test leaves a child process behind."""
import dataclasses
import os
import signal
import subprocess
import sys

import pytest
import torch

from checkpoints import save_checkpoint
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
