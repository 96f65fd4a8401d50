"""
Training throughput of the quick config on this machine: ms/iter, tokens/s, the share of step time
spent waiting for data (target: under 1%), and MFU on CUDA.

$ python bench/bench_train.py                    # 60 iterations of config/train_shakespeare_char_quick.py
$ python bench/bench_train.py --iters=200 --device=cuda

It runs train.main() as `python train.py` would, producer included (started on a private queue
in a temporary folder, so it never touches your data/ or out-* folders), and skips the first
iterations, which include the producer's start-up.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402  (after the path fix, so the script runs from anywhere)

QUICK_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', 'train_shakespeare_char_quick.py')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=QUICK_CONFIG)
    parser.add_argument('--iters', type=int, default=60, help='training iterations to run')
    parser.add_argument('--warmup', type=int, default=10, help='first iterations left out of the figures')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--compile', default='False')
    args = parser.parse_args()
    if args.iters <= args.warmup:
        parser.error('--iters must be larger than --warmup')

    with tempfile.TemporaryDirectory(prefix='bench_train_') as tmp:
        argv = [args.config, f'--out_dir={tmp}/out', f'--data_dir={tmp}/queue', f'--max_iters={args.iters}',
                f'--eval_interval={args.iters + 1}', '--eval_iters=2', f'--log_interval={max(1, args.iters // 6)}',
                f'--device={args.device}', f'--compile={args.compile}', '--wandb_log=False',
                '--init_from=scratch', '--start_producer=True']
        state = train.main(argv)

    steps = state['step_log'][args.warmup:]
    step_seconds = [dt for dt, _ in steps]
    total, waited = sum(step_seconds), sum(w for _, w in steps)
    ms_per_iter = 1000 * total / len(steps)
    tokens_per_sec = state['tokens_per_iter'] * len(steps) / total
    print()
    print(f"config          {os.path.relpath(args.config)}")
    print(f"iterations      {len(steps)} measured (first {args.warmup} left out)")
    print(f"ms/iter         {ms_per_iter:.1f} (median {1000 * statistics.median(step_seconds):.1f})")
    print(f"tokens/s        {tokens_per_sec:,.0f}")
    print(f"data wait       {100 * waited / total:.2f}% of step time (target < 1%)")
    if state.get('mfu') is not None:
        print(f"MFU             {100 * state['mfu']:.1f}% (of A100 bf16 peak)")


if __name__ == '__main__':
    main()
