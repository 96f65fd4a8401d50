"""
Fill a dataset's queue with batch files:

    python prepare.py config/train_char_diffusion.py [--key=value ...]

The config's `dataset` picks the provider (data/<dataset>/prepare_streaming.py); its keys
(see docs/data.md) are the only ones this script reads. With num_workers=N it runs N provider
processes on the same queue, each with its own worker id, file names and seed stream. Starting
this script several times by hand does the same. train.py starts it by itself when no producer
is running, and stops it with SIGTERM.
"""

import multiprocessing
import os
import sys

from common import run_cli, user_error_line
from configurator import Config, load_config
from queue_io import PARENT_PID_ENV
from prepare_streaming import load_provider_class, provider_defaults

dataset = 'char_diffusion'  # used when neither a config file nor the command line names one
WORKER_STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its file after SIGTERM


def resolve_config(argv):
    # the dataset a config file names decides which provider's keys exist
    cfg = load_config(dict(dataset=dataset), argv, extra_defaults=lambda values: provider_defaults(values['dataset']))
    return load_provider_class(cfg.dataset), cfg


def run_worker(provider_cls, cfg, parent_pid):
    """Body of an extra worker process; it stops by itself when prepare.py is gone."""
    try:
        provider_cls(Config(cfg), parent_pid=parent_pid).run()
    except Exception as e:  # a user error, or a full disk: one line, like run_cli says it
        if user_error_line(e) is None:
            raise
        print(f"error: {user_error_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def start_workers(provider_cls, cfg, count, parent_pid):
    # spawn, not fork: a fresh interpreter has no copy of this process's torch threads or locks
    context = multiprocessing.get_context('spawn')
    workers = [context.Process(target=run_worker, args=(provider_cls, dict(cfg), parent_pid), daemon=False)
               for _ in range(count)]
    for worker in workers:
        worker.start()
    return workers


def wait_for_workers(workers, provider):
    """Join the workers; once this process is told to stop, pass SIGTERM on to them."""
    forwarded = False
    while any(w.is_alive() for w in workers):
        if provider.should_stop() and not forwarded:
            for w in workers:
                if w.is_alive():
                    w.terminate()  # SIGTERM: the worker finishes its current file
            forwarded = True
        for w in workers:
            w.join(timeout=0.1)
    return [w.exitcode for w in workers]


def stop_workers(workers):
    """After an error in this process: ask, then force."""
    for w in workers:
        if w.is_alive():
            w.terminate()
    for w in workers:
        w.join(timeout=WORKER_STOP_TIMEOUT)
        if w.is_alive():
            w.kill()
            w.join()


def main(argv):
    provider_cls, cfg = resolve_config(argv)
    # started by train.py: stop with it
    provider = provider_cls(cfg, parent_pid=int(os.environ.get(PARENT_PID_ENV, 0)) or None)
    workers = []
    try:
        provider.start()  # meta.pkl is settled before the other workers look at it
        workers = start_workers(provider_cls, cfg, cfg.num_workers - 1, os.getpid())
        provider.produce()
        exit_codes = wait_for_workers(workers, provider)
    finally:
        stop_workers(workers)
        provider.close()
    failed = [code for code in exit_codes if code != 0]
    if failed and not provider.should_stop():
        print(f"error: {len(failed)} worker process(es) failed (exit codes {failed})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
