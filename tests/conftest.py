"""Shared fixtures: a tiny corpus, and a guard that no test leaves a child process behind."""
import os
import signal
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
