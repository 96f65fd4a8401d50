"""
Checkpoint names, atomic saving, finding the newest one, and loading a model from one.
Shared by train.py (writes), sample.py, evaluate.py and the checkpoint-prediction provider (read).

Names in out_dir:
    ckpt_unmasking_<iter>.pt                 weights of an unmasking run at <iter>
    ckpt_remasking_<loss_type>_<iter>.pt     weights of a remasking run (loss_type: corrupted_only | all_positions)
    ckpt_autoregressive_<iter>.pt            weights of the autoregressive reference model
    ckpt.pt                                  the latest save of the run, plus optimizer and RNG state to resume

Every checkpoint holds: model, model_args, iter_num, best_val_loss, config (fully resolved),
meta (vocabulary and dataset facts needed to decode), training_type, remasking_loss_type, run_id.
ckpt.pt also holds optimizer, scaler and rng_state.
"""

import os
import re

import torch

from configurator import UserError
from queue_io import atomic_torch_save

LATEST_NAME = 'ckpt.pt'
_VERSIONED = re.compile(r'^ckpt_(unmasking|remasking_corrupted_only|remasking_all_positions|autoregressive)_(\d+)\.pt$')


def run_kind(training_type, remasking_loss_type=None):
    """'unmasking', 'remasking_<loss_type>' or 'autoregressive': the middle of a checkpoint name."""
    return f'remasking_{remasking_loss_type}' if training_type == 'remasking' else training_type


def checkpoint_name(training_type, remasking_loss_type, iter_num):
    return f'ckpt_{run_kind(training_type, remasking_loss_type)}_{iter_num}.pt'


def parse_checkpoint_name(name):
    """(kind, iter) for a versioned checkpoint name, else None."""
    match = _VERSIONED.match(name)
    return (match.group(1), int(match.group(2))) if match else None


def versioned_checkpoints(out_dir, kind=None):
    """[(iter, path)] of versioned checkpoints in out_dir, optionally of one kind, oldest first.

    `kind` is a run kind ('unmasking', 'remasking_all_positions', ...) or 'remasking' for both
    remasking kinds. Ordered by iteration, never by file time.
    """
    found = []
    if not os.path.isdir(out_dir):
        return found
    for name in os.listdir(out_dir):
        parsed = parse_checkpoint_name(name)
        if parsed is None:
            continue
        if kind is not None and parsed[0] != kind and not (kind == 'remasking' and parsed[0].startswith('remasking_')):
            continue
        found.append((parsed[1], os.path.join(out_dir, name)))
    return sorted(found)


def newest_checkpoint(out_dir, kind):
    """Path of the newest versioned checkpoint of `kind`, else ckpt.pt when it is of that kind, else None."""
    found = versioned_checkpoints(out_dir, kind)
    if found:
        return found[-1][1]
    latest = os.path.join(out_dir, LATEST_NAME)
    if os.path.exists(latest):
        try:
            ckpt = load_checkpoint(latest)
        except UserError:
            return None
        ckpt_kind = run_kind(ckpt.get('training_type'), ckpt.get('remasking_loss_type'))
        if ckpt_kind == kind or (kind == 'remasking' and ckpt_kind.startswith('remasking_')):
            return latest
    return None


def describe_out_dir(out_dir):
    """One line listing the checkpoints in out_dir, for 'not found' errors."""
    if not os.path.isdir(out_dir):
        return f"{out_dir} does not exist"
    names = sorted(n for n in os.listdir(out_dir) if n.endswith('.pt'))
    return f"{out_dir} holds: {', '.join(names) if names else 'no checkpoints'}"


def save_checkpoint(checkpoint, path):
    """Atomically write a checkpoint (fsynced: it may be the only copy of days of training)."""
    atomic_torch_save(checkpoint, path, fsync=True)


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint memory-mapped (optimizer state is not read unless used); UserError when unreadable."""
    if not os.path.exists(path):
        raise UserError(f"checkpoint {path} not found; {describe_out_dir(os.path.dirname(path) or '.')}")
    try:
        return torch.load(path, map_location=map_location, mmap=True, weights_only=False)
    except Exception as e:  # truncated, corrupt or not a checkpoint at all
        raise UserError(f"checkpoint {path} could not be loaded ({type(e).__name__}: {e})") from None


def model_from_checkpoint(checkpoint, device='cpu', dtype=None):
    """Build the GPT a checkpoint describes, load its weights, put it in eval mode on `device`."""
    from model import GPT, GPTConfig
    model = GPT(GPTConfig(**checkpoint['model_args']))
    state = {k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()}
    model.load_state_dict(state)
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    model.eval()
    return model
