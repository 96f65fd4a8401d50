"""
Producer throughput: tokens per second of a provider making and saving batch files, one thread.

$ python bench/bench_providers.py --dataset=char_diffusion
$ python bench/bench_providers.py --dataset=char_random_replacement --composition_config=complex

Nothing is written to the queue: files are saved to memory, which is what a local disk costs
for files of this size. Prints the total rate and where the time goes.
"""

import io
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import run_cli  # noqa: E402
from configurator import load_config  # noqa: E402
from prepare_streaming import file_seed, load_provider_class, provider_defaults, seeded_generator  # noqa: E402

dataset = 'char_diffusion'
n_files = 5       # files timed after one warm-up file (threads: the provider key num_threads, default 1)


def time_phases(provider, seq):
    """Seconds spent in each step of making one train file (the steps of make_rows, in order)."""
    cfg = provider.cfg
    times, start = {}, time.perf_counter()

    def lap(name):
        nonlocal start
        now = time.perf_counter()
        times[name] = now - start
        start = now

    generator = seeded_generator(file_seed(cfg['data_seed'], 'train', 0, seq))
    clean = provider.sample_windows('train', provider.rows_per_file, generator)
    lap('windows')
    tensors, stats = provider.make_rows('train', clean, generator)
    lap('rows+stats')
    provider.summary_line(stats)
    buffer = io.BytesIO()
    torch.save({'tensors': tensors, 'info': {}}, buffer)
    lap('save')
    return times


def producer_rate(argv):
    """(config, tokens/s, {phase: seconds per file}) of the provider that argv configures."""
    cfg = load_config(dict(dataset=dataset, n_files=n_files), argv, warn_unread=False,
                      extra_defaults=lambda values: provider_defaults(values['dataset']))
    provider_cls = load_provider_class(cfg.dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg['num_threads'])
    try:
        provider = provider_cls(cfg)
        time_phases(provider, seq=0)  # warm-up
        totals = {}
        for seq in range(1, cfg['n_files'] + 1):
            for name, seconds in time_phases(provider, seq).items():
                totals[name] = totals.get(name, 0.0) + seconds
    finally:
        torch.set_num_threads(threads)
    tokens = cfg['n_files'] * provider.rows_per_file * cfg['block_size']
    return cfg, tokens / sum(totals.values()), {k: t / cfg['n_files'] for k, t in totals.items()}


def main(argv):
    cfg, rate, per_file = producer_rate(argv)
    mode = cfg.get('composition_config') or f"mask_probability={cfg.get('mask_probability')}"
    breakdown = ', '.join(f"{name} {1000 * t:.1f}ms" for name, t in per_file.items())
    print(f"{cfg['dataset']} ({mode}), batch {cfg['batch_size']}x{cfg['block_size']}, "
          f"{cfg['batches_per_file']} batches/file, {cfg['num_threads']} thread(s): "
          f"{rate / 1e6:.2f}M tokens/s; per file: {breakdown}")


if __name__ == "__main__":
    run_cli(main)
