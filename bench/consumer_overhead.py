"""
What DatasetConsumer costs the training loop per batch, when the producer keeps up.

    python bench/consumer_overhead.py                 # batch 64 x 256, files of 16 batches, CPU

`measure_overhead` times get_batch('train') on a queue whose files are already on disk, with a
little tensor work between calls standing in for the training step (that is when the prefetch
thread loads the next file, as it does in training). `write_synthetic_queue` makes such a queue; the
consumer tests use it too. bench/bench_pipeline.py calls both.
"""

import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dataset_consumer import DatasetConsumer  # noqa: E402
from queue_io import (split_dir, storage_dtype, train_file_name, val_file_name,  # noqa: E402
                      write_batch_file, write_meta)

VOCAB_SIZE = 67  # Tiny Shakespeare: 65 characters + [MASK] + [WRONG]


def synthetic_meta(batch_size, block_size, batches_per_file, num_val_files=1, **extra):
    """A meta.pkl dict with the keys docs/architecture.md lists (values made up where harmless)."""
    meta = dict(dataset='synthetic', stoi={}, itos={}, vocab_size=VOCAB_SIZE,
                mask_token_id=VOCAB_SIZE - 2, wrong_token_id=VOCAB_SIZE - 1, ignore_index=-100,
                block_size=block_size, batch_size=batch_size, batches_per_file=batches_per_file,
                label_semantics='partial', corruption_type='synthetic', corruption={},
                unmasking_stages=[], validation_stages=[], num_val_files=num_val_files,
                schema={'x': ('int8', [block_size]), 'y': ('int8', [block_size]), 'stage': ('int8', [])},
                input_file='', seed=0, fingerprint='synthetic')
    meta.update(extra)
    return meta


def synthetic_tensors(file_id, meta, seed=0):
    """Batch-file tensors whose rows say where they come from: x[:, 0] = file_id, x[:, 1] = row."""
    rows = meta['batches_per_file'] * meta['batch_size']
    dtype = storage_dtype(meta['vocab_size'])
    generator = torch.Generator().manual_seed(seed * 1_000_003 + file_id)
    x = torch.randint(0, meta['vocab_size'], (rows, meta['block_size']), generator=generator).to(dtype)
    x[:, 0] = file_id % 128
    x[:, 1] = torch.arange(rows) % 128
    y = torch.full_like(x, meta['ignore_index'])  # (rows, T) partial labels
    y[:, 2:4] = x[:, 2:4]
    stage = (torch.arange(rows) % 3).to(torch.int8)  # (rows,)
    return dict(x=x, y=y, stage=stage)


def write_file(data_dir, split, name, file_id, meta):
    """Write one batch file the way a producer does (atomic); returns its path."""
    folder = split_dir(data_dir, split)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    info = dict(split=split, worker_id=0, seq=file_id, seed=0, batches=meta['batches_per_file'],
                created=time.time())
    write_batch_file(path, synthetic_tensors(file_id, meta), info)
    return path


def write_synthetic_queue(data_dir, batch_size, block_size, n_files, batches_per_file,
                          num_val_files=1):
    """meta.pkl, `n_files` train files (ids 1..n_files) and the validation set (ids 100...)."""
    meta = synthetic_meta(batch_size, block_size, batches_per_file, num_val_files)
    write_meta(data_dir, meta)
    for seq in range(1, n_files + 1):
        write_file(data_dir, 'train', train_file_name(seq, 0), seq, meta)
    for index in range(num_val_files):
        write_file(data_dir, 'val', val_file_name(index), 100 + index, meta)
    return meta


def pretend_training_step(seconds, work=torch.randn(128, 128)):
    """Tensor work for `seconds`: like a real step it releases the GIL inside torch ops, so the
    prefetch thread can load the next file meanwhile (a time.sleep would overstate the overlap)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        work @ work


def measure_overhead(data_dir, batch_size, block_size, n_batches, step_seconds=0.002,
                     prefetch=True, device='cpu'):
    """Microseconds per get_batch('train') over `n_batches` calls (the queue needs one batch more).

    The first batch is a warm-up and not timed: it loads the first file with nothing to overlap.
    Returns a dict: mean, median and max µs per batch, seconds spent waiting, files consumed.
    """
    durations = []
    with DatasetConsumer(data_dir, batch_size, block_size, device, prefetch=prefetch,
                         verbose=False, wait_timeout=30) as consumer:
        consumer.get_batch('train')
        waited_before = consumer.wait_seconds
        for _ in range(n_batches):
            pretend_training_step(step_seconds)
            start = time.perf_counter()
            consumer.get_batch('train')
            durations.append(time.perf_counter() - start)
    return dict(us_per_batch=1e6 * statistics.fmean(durations),
                us_median=1e6 * statistics.median(durations),
                us_max=1e6 * max(durations),
                wait_seconds=consumer.wait_seconds - waited_before,
                files_consumed=consumer.files_consumed)


def main(batch_size=64, block_size=256, batches_per_file=16, n_batches=320):
    torch.set_num_threads(1)  # like a trainer process that shares the machine
    n_files = n_batches // batches_per_file + 2
    for prefetch in (True, False):
        with tempfile.TemporaryDirectory() as data_dir:
            write_synthetic_queue(data_dir, batch_size, block_size, n_files, batches_per_file)
            result = measure_overhead(data_dir, batch_size, block_size, n_batches, prefetch=prefetch)
        print(f"prefetch={prefetch!s:5}  batch {batch_size}x{block_size}, {batches_per_file} batches/file: "
              f"{result['us_per_batch']:.0f} us/batch mean, {result['us_median']:.0f} median, "
              f"{result['us_max']:.0f} max; waited {result['wait_seconds'] * 1e3:.1f} ms "
              f"over {n_batches} batches")


if __name__ == '__main__':
    main()
