"""
The producer's process lifecycle, for train.py: when nobody is filling the queue, start
`python prepare.py --key=value ...` with the provider keys as the run resolved them, wait for its
first heartbeat, and stop it when training ends.

    proc = start_producer_if_needed(queue_dir, settings, log_path)   # None: someone else's, or none
    ...
    stop_producer(proc)                                               # SIGTERM, then SIGKILL

A trainer killed with SIGKILL cannot stop its producer, so the producer watches it instead: it gets
the trainer's pid in the PARENT_PID_ENV environment variable (prepare.py reads it) and leaves when
that process is gone.

A producer that makes other data than the run asked for (say, random characters because the watched
checkpoint does not fit) puts a 'warning' into its heartbeat; `ProducerWarnings` prints each one once.
"""

import os
import signal
import subprocess
import sys
import time

from common import REPO_ROOT, UserError, print0
from queue_io import PARENT_PID_ENV, live_producers

STOP_TIMEOUT = 10.0  # seconds the producer gets to finish its file after SIGTERM, before SIGKILL


def producer_argv(settings):
    """--key=value for every provider key as the run resolved it (config files, composition and
    overrides included), so the producer makes exactly the data the run expects."""
    return [f'--{key}={value!r}' for key, value in settings.items()]


def start_producer_if_needed(queue_dir, settings, log_path, start=True, timeout=None):
    """Start `python prepare.py ...` unless a live producer already serves `queue_dir` (or `start` is
    False); returns the Popen, or None when this run started nothing. `timeout`: seconds to wait for
    the first heartbeat, None waits forever."""
    live = live_producers(queue_dir)
    if live:
        print0(f"data: using the live producer(s) on {queue_dir}: pid {', '.join(str(b['pid']) for b in live)}")
        return None
    if not start:
        print0(f"data: no live producer on {queue_dir} and start_producer=False: reading what is queued")
        return None
    proc = spawn_producer(settings, log_path)
    print0(f"data: started producer pid {proc.pid} (log: {log_path})")
    try:
        wait_for_producer(proc, queue_dir, log_path, timeout)
    except BaseException:  # a failed start, Ctrl-C while waiting: the caller never got the Popen to stop
        stop_producer(proc)
        raise
    return proc


def spawn_producer(settings, log_path):
    """The producer process, its output appended to `log_path`, told to stop when this process is gone."""
    command = [sys.executable, os.path.join(REPO_ROOT, 'prepare.py'), *producer_argv(settings)]
    env = dict(os.environ, **{PARENT_PID_ENV: str(os.getpid())})  # the orphan guard
    with open(log_path, 'ab') as log:  # the child holds its own copy of the file
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_for_producer(proc, queue_dir, log_path, timeout):
    """Return once the producer is past its start (meta.pkl checked or written), or finished fine;
    a producer that fails (say, on a queue made with other settings) is one clear line."""
    deadline = time.time() + (timeout if timeout is not None else float('inf'))
    while not [beat for beat in live_producers(queue_dir) if beat.get('status') != 'starting']:
        code = proc.poll()
        if code is not None:
            if code == 0:
                return  # it wrote what it was asked to (max_files) and left
            raise UserError(f"the data producer exited with code {code}: {last_line(log_path)} (full log: {log_path})")
        if time.time() > deadline:
            raise UserError(f"the data producer sent no heartbeat within {timeout}s (log: {log_path})")
        time.sleep(0.2)


def last_line(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else '(no output)'


def stop_producer(proc, timeout=STOP_TIMEOUT):
    """SIGTERM (the provider shuts down cleanly), then SIGKILL if it does not go within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    print0(f"data: stopped producer pid {proc.pid}")


class ProducerWarnings:
    """The warnings the live producers of a queue put into their heartbeats, each printed once
    (several workers with the same warning print it once)."""

    def __init__(self, queue_dir):
        self.queue_dir = queue_dir
        self.seen = set()

    def check(self):
        """Print the warnings not printed yet; returns them."""
        new = []
        for beat in live_producers(self.queue_dir):
            warning = beat.get('warning')
            if warning and warning not in self.seen:
                self.seen.add(warning)
                new.append(warning)
                print0(f"data: WARNING from the producer (pid {beat['pid']}): {warning}")
        return new
