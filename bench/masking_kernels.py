"""
Timings of the masking kernels, vectorised and reference, on one CPU thread.

    python bench/masking_kernels.py [n_rows] [block_size]

`time_masking_kernels()` returns the rows that bench/bench_pipeline.py (or a test) can print.
Each timing is the best of several repeats of the process CPU time (with one torch thread),
because on a shared machine wall time also counts the time other processes hold the core.
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data import masking as mu  # noqa: E402
from data import corruption  # noqa: E402

HEAVY_STICKY = {'type': 'sticky', 'target_masked_ratio': 0.9, 'p1_probability': 0.05, 'p2_probability': 0.6}
STAGES = [
    {'type': 'random', 'max_masked_ratio': 0.9},
    {'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.1, 'p2_probability': 0.5},
    HEAVY_STICKY,
    {'type': 'span', 'spans_count': 3},
]


def best_seconds(call, repeats):
    """The fastest of `repeats` timed calls (after one warm-up call), in CPU seconds."""
    call()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return min(times)


def kernel_calls(n_rows, block_size, generator):
    """name -> (vectorised call, reference call or None); the corruption kernels have no reference."""
    n, t, g = n_rows, block_size, generator
    mask = mu.random_mask(n, t, 0.5, g)
    x = torch.randint(0, 65, (n, t), generator=g)
    allowed = torch.arange(1, 65)
    branch = corruption.route_branches(mask, (0.6, 0.3, 0.1), g, row_level_branch=2)
    names = ('random', 'mask', 'fragment')
    sticky = tuple(HEAVY_STICKY[k] for k in mu.STAGE_PARAMETERS['sticky'])
    return {
        'bernoulli 0.15': (lambda: mu.bernoulli_mask(n, t, 0.15, g), None),
        'random max=0.9': (lambda: mu.random_mask(n, t, 0.9, g),
                           lambda: mu.reference_random_mask(n, t, 0.9, g)),
        'sticky 0.9/0.05/0.6': (lambda: mu.sticky_mask(n, t, *sticky, g),
                                lambda: mu.reference_sticky_mask(n, t, *sticky, g)),
        'span k=3': (lambda: mu.span_mask(n, t, 3, g), lambda: mu.reference_span_mask(n, t, 3, g)),
        'assign_stages': (lambda: mu.assign_stages(n, len(STAGES), 64, g),
                          lambda: mu.reference_assign_stages(n, len(STAGES), 64, g)),
        f'staged_masks ({len(STAGES)} stages)': (lambda: mu.staged_masks(STAGES, n, t, 64, g), None),
        'bert_corrupt': (lambda: mu.bert_corrupt(x, mask, 65, 65, g), None),
        'route_branches (row-level)': (lambda: corruption.route_branches(mask, (0.6, 0.3, 0.1), g, 2), None),
        'random_tokens': (lambda: corruption.random_tokens(x, allowed, 2.0, g), None),
        'fragment_tokens': (lambda: corruption.fragment_tokens(x.view(-1), n, t, g), None),
        'branch_stats': (lambda: corruption.branch_stats(x, x, mask, branch, names), None),
    }


def time_masking_kernels(n_rows=1024, block_size=256, repeats=5, reference_rows=8, seed=0):
    """[(name, µs per call, tokens/s, reference speed-up or None)] with one torch thread.

    The reference loops are timed on `reference_rows` rows and scaled to n_rows (they are linear
    in the number of rows), since running them on the full batch takes minutes.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        fast = kernel_calls(n_rows, block_size, generator)
        slow = kernel_calls(reference_rows, block_size, generator)
        results = []
        for name, (call, _) in fast.items():
            seconds = best_seconds(call, repeats)
            reference = slow[name][1]
            speedup = None
            if reference is not None:
                speedup = best_seconds(reference, 1) * n_rows / reference_rows / seconds
            results.append((name, seconds * 1e6, n_rows * block_size / seconds, speedup))
        return results
    finally:
        torch.set_num_threads(threads)


def main(argv):
    n_rows, block_size = (int(a) for a in (argv + ['1024', '256'][len(argv):])[:2])
    print(f"masking kernels on ({n_rows}, {block_size}), 1 thread, best of 5")
    for name, micros, tokens_per_s, speedup in time_masking_kernels(n_rows, block_size):
        vs_reference = f"{speedup:9.0f}x vs reference" if speedup else ''
        print(f"{name:28s} {micros:10.0f} us {tokens_per_s / 1e6:9.1f} M tokens/s  {vs_reference}")


if __name__ == "__main__":
    main(sys.argv[1:])
