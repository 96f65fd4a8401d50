"""
Training throughput of the quick config on this machine, side by side for learned vs rotary
positions and float32 vs bfloat16 autocast: ms/iter, tokens/s, the share of step time spent waiting
for data (target: under 1%), and MFU on CUDA; then the ratios (rotary / learned, bfloat16 / float32).

$ python bench/bench_train.py                    # 4 variants x 2 rounds of 60 iterations of the quick config
$ python bench/bench_train.py --pos_encodings=rotary --dtypes=float32 --rounds=1   # one variant
$ python bench/bench_train.py --iters=200 --device=cuda
$ python bench/bench_train.py --batch_size=32    # any other --key=value goes to train.py

The variants run in turn, `--rounds` times over (a background load then weighs on every variant
alike); each figure is over all of a variant's measured iterations.

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
    parser.add_argument('--pos_encodings', default='learned,rotary', help='comma-separated pos_encoding values')
    parser.add_argument('--dtypes', default='float32,bfloat16', help='comma-separated dtype values (autocast)')
    parser.add_argument('--rounds', type=int, default=2, help='times every variant runs, in turn')
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


def summary(steps):
    """ms/iter (mean and median), tokens/s, data wait share and MFU over `steps`, as train.py printed them
    (rounded to 0.1 ms and 0.1%)."""
    step_seconds = [s['seconds'] for s in steps]
    total = sum(step_seconds)
    mfu = None
    if steps[-1]['mfu'] is not None:
        mfu = sum(s['mfu'] * s['seconds'] for s in steps) / total
    return dict(ms=1000 * total / len(steps), median_ms=1000 * statistics.median(step_seconds),
                tokens_per_sec=sum(s['tokens_per_sec'] * s['seconds'] for s in steps) / total,
                data_wait=sum(s['data_wait'] * s['seconds'] for s in steps) / total, mfu=mfu, iterations=len(steps))


def report(results, config, warmup):
    """One line per variant, then the ratios of the variants that differ in one setting."""
    print(f"\nconfig {os.path.relpath(config)}; first {warmup} iterations of every run left out\n")
    print(f"{'pos_encoding':<13}{'dtype':<10}{'ms/iter':>9}{'median':>9}{'tokens/s':>10}{'data wait':>11}"
          f"{'MFU':>7}{'iters':>7}")
    for (pos, dtype), r in results.items():
        mfu = f"{100 * r['mfu']:.1f}%" if r['mfu'] is not None else '-'
        print(f"{pos:<13}{dtype:<10}{r['ms']:>9.1f}{r['median_ms']:>9.1f}{r['tokens_per_sec']:>10,.0f}"
              f"{100 * r['data_wait']:>10.2f}%{mfu:>7}{r['iterations']:>7}")
    print()
    for (pos, dtype), r in results.items():
        if pos == 'rotary' and ('learned', dtype) in results:
            print(f"rotary / learned ({dtype}): {r['ms'] / results[('learned', dtype)]['ms']:.3f} x ms/iter")
    for (pos, dtype), r in results.items():
        if dtype == 'bfloat16' and (pos, 'float32') in results:
            print(f"bfloat16 / float32 ({pos}): {r['ms'] / results[(pos, 'float32')]['ms']:.3f} x ms/iter")


def main(argv):
    args, passed_on = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that run_train stops train.py and its producer on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    variants = [(pos, dtype) for pos in args.pos_encodings.split(',') for dtype in args.dtypes.split(',')]
    steps = {variant: [] for variant in variants}
    for round_index in range(args.rounds):
        for pos, dtype in variants:
            print(f"=== round {round_index + 1}/{args.rounds}: pos_encoding={pos}, dtype={dtype}", flush=True)
            with tempfile.TemporaryDirectory(prefix='bench_train_') as tmp:
                argv = [args.config, f'--out_dir={tmp}/out', f'--data_dir={tmp}/queue', f'--max_iters={args.iters}',
                        f'--eval_interval={args.iters + 1}', '--eval_iters=2', '--log_interval=1',
                        f'--device={args.device}', f'--compile={args.compile}', '--wandb_log=False',
                        '--init_from=scratch', '--start_producer=True', f'--pos_encoding={pos}',
                        f'--dtype={dtype}', *passed_on]
                run = run_train(argv, show_every=max(1, args.iters // SHOWN_LINES))
            steps[(pos, dtype)] += [s for s in run if s['iter'] > args.warmup]
    report({variant: summary(s) for variant, s in steps.items()}, args.config, args.warmup)


if __name__ == '__main__':
    run_cli(main)  # Ctrl-C: one line, exit 130
