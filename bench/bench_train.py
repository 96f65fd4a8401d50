"""
Training throughput of the quick config on this machine: ms/iter, tokens/s, the share of step time
spent waiting for data (target: under 1%), and MFU on CUDA.

$ python bench/bench_train.py                    # 60 iterations of config/train_shakespeare_char_quick.py
$ python bench/bench_train.py --iters=200 --device=cuda
$ python bench/bench_train.py --batch_size=32    # any other --key=value goes to train.py

It runs `python train.py <config> --key=value ...` as you would, producer included (started on a
private queue in a temporary folder, so it never touches your data/ or out-* folders), reads the
figures back from the line train.py prints for every iteration, and leaves out the first
iterations, which include the producer's start-up. train.py and its producer are stopped whatever
happens (Ctrl-C included).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from common import run_cli  # noqa: E402  (after the path fix, so the script runs from anywhere)
from training_log import parse_iteration_line  # noqa: E402

QUICK_CONFIG = os.path.join(REPO_ROOT, 'config', 'train_shakespeare_char_quick.py')
SHOWN_LINES = 6  # iteration lines of train.py's output echoed here, as progress


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # unknown keys go to train.py, never guessed as ours
    parser.add_argument('--config', default=QUICK_CONFIG)
    parser.add_argument('--iters', type=int, default=60, help='training iterations to run')
    parser.add_argument('--warmup', type=int, default=10, help='first iterations left out of the figures')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--compile', default='False')
    args, passed_on = parser.parse_known_args(argv)
    if args.iters <= args.warmup:
        parser.error('--iters must be larger than --warmup')
    return args, passed_on


def run_train(argv, show_every):
    """Run `python train.py argv`, echo its output (every show_every-th iteration line of it) and
    return its parsed iteration lines; exit with an error line when it fails."""
    proc = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'train.py'), *argv], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'),
                            start_new_session=True)  # its own process group: the producer is in it too
    steps = []
    try:
        for line in proc.stdout:
            step = parse_iteration_line(line)
            if step is not None:
                steps.append(step)
            if step is None or step['iter'] % show_every == 0:
                print(line, end='', flush=True)
        proc.wait()
    finally:
        stop_process_group(proc)
    if proc.returncode != 0:
        sys.exit(f"train.py failed with exit code {proc.returncode}")
    return steps


def stop_process_group(proc, timeout=30):
    """SIGTERM to train.py and whatever it started (train.py then stops its producer), SIGKILL to what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left
    proc.wait()


def report(steps, config, warmup):
    """The figures over `steps`, as train.py printed them (rounded to 0.1 ms and 0.1%)."""
    step_seconds = [s['seconds'] for s in steps]
    total = sum(step_seconds)
    waited = sum(s['data_wait'] * s['seconds'] for s in steps)
    tokens = sum(s['tokens_per_sec'] * s['seconds'] for s in steps)
    print()
    print(f"config          {os.path.relpath(config)}")
    print(f"iterations      {len(steps)} measured (first {warmup} left out)")
    print(f"ms/iter         {1000 * total / len(steps):.1f} (median {1000 * statistics.median(step_seconds):.1f})")
    print(f"tokens/s        {tokens / total:,.0f}")
    print(f"data wait       {100 * waited / total:.2f}% of step time (target < 1%)")
    if steps[-1]['mfu'] is not None:
        mfu = sum(s['mfu'] * s['seconds'] for s in steps) / total
        print(f"MFU             {100 * mfu:.1f}% (of A100 bf16 peak)")


def main(argv):
    args, passed_on = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that run_train stops train.py and its producer on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix='bench_train_') as tmp:
        argv = [args.config, f'--out_dir={tmp}/out', f'--data_dir={tmp}/queue', f'--max_iters={args.iters}',
                f'--eval_interval={args.iters + 1}', '--eval_iters=2', '--log_interval=1',
                f'--device={args.device}', f'--compile={args.compile}', '--wandb_log=False',
                '--init_from=scratch', '--start_producer=True', *passed_on]
        steps = run_train(argv, show_every=max(1, args.iters // SHOWN_LINES))
    report([s for s in steps if s['iter'] > args.warmup], args.config, args.warmup)


if __name__ == '__main__':
    run_cli(main)  # Ctrl-C: one line, exit 130
