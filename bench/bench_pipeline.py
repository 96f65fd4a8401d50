"""
The data pipeline's figures on this machine, all measured in one run:

  1. masking kernels: vectorised time per call and speed-up over the plain reference loop (1 thread)
  2. producer tokens/s of each provider with its default and complex stage configs
     (batch_size=64, block_size=256, one process, one thread; target >= 8M tokens/s)
  3. the consumer's overhead per batch, and its share of a training step of the quick config
     (target < 1%)
  4. the checkpoint-prediction provider: tokens/s with the quick model, and the ratio to the
     tokens/s the trainer consumes

    python bench/bench_pipeline.py
    python bench/bench_pipeline.py --device=cuda     # step 4 on the GPU
"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_inference_provider import measure as measure_inference_provider  # noqa: E402
from bench.bench_inference_provider import quick_settings, training_tokens_per_second  # noqa: E402
from bench.bench_providers import producer_rate  # noqa: E402
from bench.consumer_overhead import measure_overhead, write_synthetic_queue  # noqa: E402
from bench.masking_kernels import time_masking_kernels  # noqa: E402

PRODUCER_TARGET = 8e6  # tokens/s, one process, one core
CONSUMER_TARGET = 0.01  # fraction of a training step
PROVIDER_RUNS = [
    ('char_diffusion', 'default', []),
    ('char_diffusion', 'complex', ['--use_all_stages_for_training=True', '--composition_config=complex']),
    ('char_random_replacement', 'default', []),
    ('char_random_replacement', 'complex', ['--use_all_stages_for_training=True', '--composition_config=complex']),
]


def masking_section():
    print("1. masking kernels on (1024, 256), 1 thread, best of 5")
    for name, micros, tokens_per_s, speedup in time_masking_kernels(1024, 256):
        versus = f"{speedup:8.0f}x faster than the reference loop" if speedup else ''
        print(f"   {name:28s} {micros:9.0f} us  {tokens_per_s / 1e6:8.1f}M tokens/s  {versus}")


def producer_section():
    print("2. producers, batch 64 x 256, 100 batches per file, one process, 1 thread")
    for dataset, mode, extra in PROVIDER_RUNS:
        argv = [f'--dataset={dataset}', '--batch_size=64', '--block_size=256', '--batches_per_file=100',
                '--num_threads=1', '--n_files=3', *extra]
        _, rate, per_file = producer_rate(argv)
        verdict = 'meets' if rate >= PRODUCER_TARGET else 'MISSES'
        phases = ', '.join(f"{name} {1000 * t:.0f}ms" for name, t in per_file.items())
        print(f"   {dataset:24s} {mode:8s} {rate / 1e6:6.2f}M tokens/s ({verdict} the 8M target; per file: {phases})")


def consumer_section(quick, train_tok_s):
    batch, block = quick['batch_size'], quick['block_size']
    step_seconds = batch * block / train_tok_s
    n_batches, per_file = 200, 16
    with tempfile.TemporaryDirectory(prefix='bench_consumer_') as data_dir:
        write_synthetic_queue(data_dir, batch, block, n_batches // per_file + 2, per_file)
        result = measure_overhead(data_dir, batch, block, n_batches, step_seconds=0.01)
    share = result['us_per_batch'] * 1e-6 / step_seconds
    verdict = 'meets' if share < CONSUMER_TARGET else 'MISSES'
    print(f"3. consumer, quick config batch {batch} x {block}, prefetch on, {n_batches} batches")
    print(f"   get_batch: {result['us_per_batch']:.0f} us mean, {result['us_median']:.0f} us median, "
          f"{result['us_max']:.0f} us max; waited {1000 * result['wait_seconds']:.1f} ms in all")
    print(f"   quick-config training step: {1000 * step_seconds:.0f} ms -> consumer adds "
          f"{100 * share:.3f}% ({verdict} the 1% target)")


def inference_provider_section(device):
    result = measure_inference_provider(device=device)
    print(f"4. char_inference_replacement, model {result['model']}, batch {result['batch']}, device {device}")
    print(f"   provider {result['provider_tok_s']:,.0f} tokens/s with a checkpoint "
          f"({result['fallback_tok_s']:,.0f} on the random fallback); training consumes "
          f"{result['train_tok_s']:,.0f} tokens/s; ratio {result['ratio']:.2f}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help="device of the inference provider and the training steps")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
    masking_section()
    producer_section()
    quick = quick_settings()
    train_tok_s = training_tokens_per_second(quick, 67, args.device, steps=5)
    consumer_section(quick, train_tok_s)
    inference_provider_section(args.device)


if __name__ == '__main__':
    main()
