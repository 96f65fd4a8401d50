"""
Fill a dataset's queue with batch files:

    python prepare.py config/train_char_diffusion.py [--key=value ...]

The config's `dataset` picks the provider (data/<dataset>/prepare_streaming.py); its keys
(see docs/data.md) are the only ones this script reads. With num_workers=N it runs N provider
processes on the same queue, each with its own worker id, file names and seed stream. Starting
this script several times by hand does the same. train.py starts it by itself when no producer
is running, and stops it with SIGTERM (exit 0); Ctrl-C stops every worker the same way, and the
exit code is then 130.
"""

import signal
import sys

if __name__ == "__main__":
    # a Ctrl-C before the provider is up (torch takes a while to import) exits with 130 at once, not in
    # a KeyboardInterrupt traceback; the provider installs its own handler when it starts
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(128 + signum))

import os  # noqa: E402  (after the signal line, so that it covers every import)
import subprocess  # noqa: E402
import time  # noqa: E402

from common import run_cli  # noqa: E402
from configurator import load_config  # noqa: E402
from producer import producer_argv  # noqa: E402
from queue_io import PARENT_PID_ENV  # noqa: E402
from prepare_streaming import load_provider_class, provider_defaults, stop_signals_held  # noqa: E402

dataset = 'char_diffusion'  # used when neither a config file nor the command line names one
WORKER_STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its file after SIGTERM
WORKER_POLL = 0.1  # seconds between looks at the workers


def resolve_config(argv):
    # the dataset a config file names decides which provider's keys exist
    cfg = load_config(dict(dataset=dataset), argv, extra_defaults=lambda values: provider_defaults(values['dataset']))
    return load_provider_class(cfg.dataset), cfg


def start_workers(provider_cls, cfg, count):
    """`count` more `python prepare.py` processes with this one's resolved settings (num_workers=1
    each), told to stop when this process is gone. They start with SIGTERM and SIGINT held and let
    them in once their provider can stop cleanly, so a Ctrl-C reaching them early asks them to stop."""
    settings = {key: cfg[key] for key in provider_cls.config_defaults()}
    command = [sys.executable, os.path.abspath(__file__), *producer_argv({**settings, 'num_workers': 1})]
    env = dict(os.environ, **{PARENT_PID_ENV: str(os.getpid())})  # the orphan guard
    with stop_signals_held():  # held here too for that moment: pending, delivered once they are started
        return [subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL) for _ in range(count)]


def wait_for_workers(workers, provider):
    """Wait for the workers; once this process is told to stop, pass SIGTERM on to them."""
    forwarded = False
    while any(w.poll() is None for w in workers):
        if provider.should_stop() and not forwarded:
            for w in workers:
                if w.poll() is None:
                    w.terminate()  # SIGTERM: the worker finishes its current file
            forwarded = True
        time.sleep(WORKER_POLL)
    return [w.returncode for w in workers]


def stop_workers(workers):
    """After an error in this process: ask, then force; no worker outlives this process."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(timeout=WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def main(argv):
    provider_cls, cfg = resolve_config(argv)
    # started by train.py (or as a worker of another prepare.py): stop with it
    provider = provider_cls(cfg, parent_pid=int(os.environ.get(PARENT_PID_ENV, 0)) or None)
    workers, exit_codes = [], []
    try:
        provider.start()  # meta.pkl is settled before the other workers look at it
        if not provider.should_stop():
            workers = start_workers(provider_cls, cfg, cfg.num_workers - 1)
        provider.produce()
        exit_codes = wait_for_workers(workers, provider)
    finally:
        try:
            stop_workers(workers)
        finally:
            provider.close()
    if provider.interrupted:
        sys.exit(130)  # like any program stopped by Ctrl-C; the log lines above said where it stopped
    failed = [code for code in exit_codes if code != 0]
    if failed and not provider.should_stop():
        print(f"error: {len(failed)} worker process(es) failed (exit codes {failed})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
