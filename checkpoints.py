"""
Checkpoint names, atomic saving, finding the newest one, and loading a model from one.
Shared by train.py (writes), sample.py, evaluate.py and the checkpoint-prediction provider (read),
which all ask `fit_problem` whether a checkpoint can serve them.

Names in out_dir:
    ckpt_unmasking_<iter>.pt                 weights of an unmasking run at <iter>
    ckpt_remasking_<loss_type>_<iter>.pt     weights of a remasking run (loss_type: corrupted_only | all_positions)
    ckpt_autoregressive_<iter>.pt            weights of the autoregressive reference model
    ckpt_merged_<iter>.pt                    weights of a merged (unmasking + remasking in one) run
    ckpt.pt                                  the latest save of the run, plus optimizer and RNG state to resume

Every checkpoint holds: model, model_args, iter_num, best_val_loss, config (fully resolved),
meta (vocabulary and dataset facts needed to decode), training_type, remasking_loss_type, run_id.
ckpt.pt also holds optimizer, scaler and rng_state (so do the versioned ones of a run with
lr_schedule='wsd': any of them can start a branch), and a branch's checkpoints hold branched_at.

Opening a checkpoint never runs code from it. Checkpoints hold only tensors, dicts, lists, tuples,
strings, numbers, booleans and None (`save_checkpoint` checks), and `load_checkpoint` opens them with
torch.load(weights_only=True), which builds nothing else. A file that needs more (one written by an
earlier version of this project, whose numpy RNG state is an ndarray, or a crafted one whose pickle
calls a function) is refused with one line, unless the caller passes `trust_pickle=True` (the scripts'
`trust_checkpoint_pickle` key): then it is fully unpickled, and a note says so.
"""

import collections
import os
import re

import torch

from common import UserError, print0
from model import GPT, GPTConfig
from queue_io import PLAIN_CONTAINERS, PLAIN_SCALARS, atomic_torch_save, plain_problem, remove_stale_temp_files

LATEST_NAME = 'ckpt.pt'
# the architecture keys of model_args that two models must share to continue or replace each other
ARCH_KEYS = ('n_layer', 'n_head', 'n_embd', 'block_size', 'vocab_size', 'bias', 'attention_type', 'pos_encoding')
_VERSIONED = re.compile(r'^ckpt_(unmasking|remasking_corrupted_only|remasking_all_positions|autoregressive|merged)_(\d+)\.pt$')
TRUST_KEY = 'trust_checkpoint_pickle'  # the scripts' key for trust_pickle
# what torch.load(weights_only=True) builds, and so all a checkpoint may hold (state_dict() is an OrderedDict)
CHECKPOINT_SCALARS = PLAIN_SCALARS + (torch.Tensor,)
CHECKPOINT_CONTAINERS = PLAIN_CONTAINERS + (collections.OrderedDict,)
_WEIGHTS_ONLY_REFUSAL = re.compile(r'GLOBAL (\S+) was not an allowed global')
_noted_trusted = set()  # paths whose full unpickling this process has already reported


def run_kind(training_type, remasking_loss_type=None):
    """'unmasking', 'remasking_<loss_type>', 'autoregressive' or 'merged': the middle of a checkpoint name."""
    return f'remasking_{remasking_loss_type}' if training_type == 'remasking' else training_type


def checkpoint_kind(checkpoint):
    """The run kind of a loaded checkpoint."""
    return run_kind(checkpoint.get('training_type'), checkpoint.get('remasking_loss_type'))


def start_checkpoint_path(init_from, out_dir, branch_from=None):
    """The checkpoint a training run starts from: out_dir/ckpt.pt to resume, branch_from to branch, None from scratch."""
    return {'resume': os.path.join(out_dir, LATEST_NAME), 'branch': branch_from}.get(init_from)


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
        if kind is not None and not kind_matches(parsed[0], kind):
            continue
        found.append((parsed[1], os.path.join(out_dir, name)))
    return sorted(found)


def checkpoint_candidates(out_dir, kind):
    """[(iter, path)] to try for the newest checkpoint of `kind`, newest first: the versioned ones,
    or ckpt.pt (iter None) while the run has none yet."""
    found = versioned_checkpoints(out_dir, kind)
    if found:
        return found[::-1]
    latest = os.path.join(out_dir, LATEST_NAME)
    return [(None, latest)] if os.path.exists(latest) else []


def kind_matches(found, wanted):
    return found == wanted or (wanted == 'remasking' and found.startswith('remasking_'))


def newest_checkpoint(out_dir, kind, trust_pickle=False):
    """Path of the newest versioned checkpoint of `kind`, else ckpt.pt when it is of that kind, else None."""
    candidates = checkpoint_candidates(out_dir, kind)
    if not candidates:
        return None
    iter_num, path = candidates[0]
    if iter_num is not None:
        return path
    try:
        return path if kind_matches(checkpoint_kind(load_checkpoint(path, trust_pickle=trust_pickle)), kind) else None
    except UntrustedCheckpoint:
        raise  # the user must hear why, not "no checkpoint found"
    except UserError:
        return None


def describe_out_dir(out_dir):
    """One line listing the checkpoints in out_dir, for 'not found' errors."""
    if not os.path.isdir(out_dir):
        return f"{out_dir} does not exist"
    names = sorted(n for n in os.listdir(out_dir) if n.endswith('.pt'))
    return f"{out_dir} holds: {', '.join(names) if names else 'no checkpoints'}"


def storable_problem(obj, where):
    """Why `obj` could not be part of a checkpoint (a value torch.load(weights_only=True) does not
    build), as a clause; None when it can."""
    return plain_problem(obj, where, CHECKPOINT_SCALARS, CHECKPOINT_CONTAINERS)


def save_checkpoint(checkpoint, path):
    """Atomically write a checkpoint (fsynced: it may be the only copy of days of training), after
    checking that it will open with weights_only=True."""
    problem = storable_problem(checkpoint, 'checkpoint')
    if problem:  # a bug: a file written now would need trust_checkpoint_pickle to be opened
        raise TypeError(f"a checkpoint holds only tensors and plain containers and scalars, but {problem}")
    atomic_torch_save(checkpoint, path, fsync=True)


def is_run_file(name, kind):
    """Whether a file of out_dir is written by runs of `kind`: its versioned checkpoints, ckpt.pt
    and the config_<run_id>.json records."""
    parsed = parse_checkpoint_name(name)
    if parsed is not None:
        return parsed[0] == kind
    return name == LATEST_NAME or (name.startswith('config_') and name.endswith('.json'))


def remove_stale_temp_checkpoints(out_dir, kind):
    """Temporary files of checkpoints (and config records) of `kind` whose writer was killed; a live
    process's, and other programs' files, stay. Returns how many went."""
    return remove_stale_temp_files(out_dir, is_ours=lambda name: is_run_file(name, kind))


def save_run_checkpoints(checkpoint, resume_state, out_dir, keep_last=0, resume_state_in_every=False):
    """ckpt_<kind>_<iter>.pt (the weights, for sampling; with `resume_state_in_every` also the resume
    state, so a branch can start from it) and ckpt.pt (the same plus `resume_state`: optimizer, scaler,
    RNG), each written atomically; then the oldest versioned checkpoints of this kind beyond `keep_last`
    go. Returns the versioned name."""
    name = checkpoint_name(checkpoint['training_type'], checkpoint['remasking_loss_type'], checkpoint['iter_num'])
    save_checkpoint(dict(checkpoint, **resume_state) if resume_state_in_every else checkpoint,
                    os.path.join(out_dir, name))
    save_checkpoint(dict(checkpoint, **resume_state), os.path.join(out_dir, LATEST_NAME))
    prune_checkpoints(out_dir, checkpoint_kind(checkpoint), keep_last)
    return name


def prune_checkpoints(out_dir, kind, keep_last):
    """Remove all but the newest `keep_last` versioned checkpoints of `kind` (0 keeps all); other
    kinds sharing out_dir, and ckpt.pt, stay."""
    if keep_last <= 0:
        return
    for _, path in versioned_checkpoints(out_dir, kind)[:-keep_last]:
        os.remove(path)


class UntrustedCheckpoint(UserError):
    """A checkpoint that only full unpickling opens, which the caller did not allow. `reason` says
    what it needs, without the advice (the inference provider has no key to offer)."""

    def __init__(self, path, reason):
        self.reason = f"{reason}, which loading with weights_only=True does not build"
        super().__init__(f"checkpoint {path} {self.reason} (an older checkpoint of this project, or a file from "
                         f"elsewhere): unpickling it could run any code in it, so it was not opened; if you trust "
                         f"who made it, pass --{TRUST_KEY}=True (a resumed run then saves checkpoints that load safely)")


def weights_only_refusal(error):
    """What a checkpoint needs that weights_only loading refused, as a clause; None when `error` is
    another failure (a truncated or damaged file)."""
    text = str(error)
    if 'Weights only load failed' not in text:
        return None
    found = _WEIGHTS_ONLY_REFUSAL.search(text)
    if found:
        return f"needs {found.group(1)!r}"
    detail = text.split('WeightsUnpickler error:', 1)[-1].strip().split('\n', 1)[0]
    return f"holds more than tensors and plain values ({detail[:200]})"


def load_checkpoint(path, map_location='cpu', trust_pickle=False):
    """Load a checkpoint memory-mapped (optimizer state is not read unless used) with
    weights_only=True; UserError when unreadable, UntrustedCheckpoint when it needs full unpickling
    and `trust_pickle` is False. With `trust_pickle` such a file is unpickled, and a note says so."""
    if not os.path.exists(path):
        raise UserError(f"checkpoint {path} not found; {describe_out_dir(os.path.dirname(path) or '.')}")
    try:
        return torch.load(path, map_location=map_location, mmap=True, weights_only=True)
    except Exception as e:  # truncated, corrupt, not a checkpoint at all, or more than weights
        needs = weights_only_refusal(e)
        if needs is None:
            raise unreadable(path, e) from None
        if not trust_pickle:
            raise UntrustedCheckpoint(path, needs) from None
    try:
        checkpoint = torch.load(path, map_location=map_location, mmap=True, weights_only=False)
    except Exception as e:
        raise unreadable(path, e) from None
    if path not in _noted_trusted:  # once per file: train.py opens ckpt.pt twice
        _noted_trusted.add(path)
        print0(f"note: {path} {needs}: loaded with full unpickling because {TRUST_KEY}=True")
    return checkpoint


def unreadable(path, error):
    return UserError(f"checkpoint {path} could not be loaded ({type(error).__name__}: {error})")


def fit_problem(checkpoint, *, stoi=None, block_size=None, min_block_size=None, kind=None, model_args=None):
    """Why `checkpoint` cannot serve as asked, as one clause for the caller's message; None when it can.

    Always: it is a checkpoint of train.py whose model_args fit its own vocabulary. And as asked:
    `stoi`, the vocabulary it must share; `block_size`, the exact block size it must have (a queue's);
    `min_block_size`, how many characters it must see at once (a sample's length); `kind`, its run
    kind ('unmasking', 'remasking_all_positions', ... or 'remasking' for either); `model_args`, the
    architecture it must have (to be resumed).
    """
    for key in ('model', 'model_args', 'meta'):
        if key not in checkpoint:
            return f"it has no '{key}' entry (not a checkpoint of train.py)"
    args, meta = checkpoint['model_args'], checkpoint['meta']
    n_chars = len(meta.get('stoi') or {})
    if kind is not None and checkpoint.get('training_type') is not None:
        if not kind_matches(checkpoint_kind(checkpoint), kind):
            return f"it is a {checkpoint_kind(checkpoint)} checkpoint, not {kind}"
    for key in ARCH_KEYS if model_args is not None else ():
        if args.get(key) != model_args[key]:
            return f"it has {key}={args.get(key)!r} but the config/queue gives {model_args[key]!r} (set {key}={args.get(key)!r})"
    if block_size is not None and args['block_size'] != block_size:
        return f"its block_size={args['block_size']} differs from the dataset's block_size={block_size}"
    if min_block_size is not None and args['block_size'] < min_block_size:
        return f"its block size {args['block_size']} is shorter than the {min_block_size} characters asked for"
    if stoi is not None and meta['stoi'] != stoi:
        return f"its vocabulary (stoi) differs from the one asked for ({n_chars} vs {len(stoi)} characters; another corpus?)"
    if args.get('vocab_size') != n_chars + 2:
        return (f"its model_args vocab_size={args.get('vocab_size')!r} does not fit its vocabulary of {n_chars} "
                f"characters + [MASK] + [WRONG] (a damaged or hand-edited checkpoint)")
    return None


def strip_compile_prefix(state_dict):
    """A state dict without torch.compile's '_orig_mod.' prefixes (older saves may carry them)."""
    return {k.removeprefix('_orig_mod.'): v for k, v in state_dict.items()}


def model_from_checkpoint(checkpoint, device='cpu', dtype=None):
    """Build the GPT a checkpoint describes, load its weights, put it in eval mode on `device`."""
    model = GPT(GPTConfig(**checkpoint['model_args']))
    model.load_state_dict(strip_compile_prefix(checkpoint['model']))
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    model.eval()
    return model
