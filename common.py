"""
The ground floor: what every script and module uses, importing nothing of the project.

- `UserError` and `run_cli`: a mistake in what the user asked for, or a file system that refuses a
  write (a full disk, a read-only folder), is one line on stderr and exit 2, never a traceback;
- `REPO_ROOT`;
- the one rule for devices and autocast precision (`resolve_device`, `resolve_dtype`,
  `autocast_context`), used by train.py, sample.py, evaluate.py and the checkpoint predictor alike;
- `compute_init` / `compute_cleanup`: a single process on CPU or one GPU, or a torchrun DDP group;
- `print0`, `seed_everything`, and saving/restoring the RNG state of a run (`rng_state`, `restore_rng_state`).
"""

import errno
import os
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, never as a traceback."""
    # run_cli prints every exception carrying this mark as one line; configurator.ConfigError carries
    # it too, so that the configurator needs no import from the project
    user_error = True


# the file system refusing (a full disk, a read-only or forbidden folder): the user's to fix, not a bug
REFUSING_ERRNOS = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space",
                   errno.EROFS: "choose a writable folder", errno.EACCES: "check its permissions",
                   errno.EPERM: "check its permissions"}
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # only a write meets these


def user_error_line(error):
    """The one line to print for an exception the user can act on (one carrying the `user_error`
    mark, or a file-system refusal); None for anything else, which keeps its traceback."""
    if getattr(error, 'user_error', False):
        return str(error)
    if isinstance(error, OSError) and error.errno in REFUSING_ERRNOS:
        name = error.filename or 'a file'
        if error.errno in WRITE_ERRNOS:  # files are written atomically: the ones written before are whole
            return (f"could not write {name}: {error.strerror} ({REFUSING_ERRNOS[error.errno]}); "
                    f"files written before are intact")
        return f"{name}: {error.strerror} ({REFUSING_ERRNOS[error.errno]})"
    return None


def run_cli(main):
    """Run `main(argv)` as a command-line entry point: user errors become one line and exit 2."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        line = user_error_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def print0(*args, **kwargs):
    """print on the master process only (every DDP rank runs the same script)."""
    if int(os.environ.get('RANK', 0)) == 0:
        print(*args, **kwargs, flush=True)


def seed_everything(value):
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def rng_state():
    """Every random stream a run draws from (torch, CUDA, numpy, random), to save with a checkpoint:
    tensors, tuples and numbers only, so the checkpoint loads with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()  # keys: a (624,) uint32 ndarray
    numpy_state = (name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian))
    state = dict(torch=torch.get_rng_state(), numpy=numpy_state, python=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    # .cpu(): generators take their state only as a CPU tensor, and a checkpoint loaded with
    # map_location='cuda' has moved every tensor onto the GPU
    torch.set_rng_state(state['torch'].cpu())
    np.random.set_state(tuple(state['numpy']))  # keys as a list (or an ndarray, in older checkpoints)
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


# -----------------------------------------------------------------------------
# device and precision: one rule for every script


def resolve_device(name, key='device'):
    """'auto' -> 'cuda' when CUDA is available, else 'cpu'; a CUDA device without CUDA is a UserError."""
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f"{key}={name!r} but CUDA is not available here; use {key}='cpu'")
    return name


def device_type_of(device):
    return device.split(':')[0]  # 'cuda:1' -> 'cuda'


def resolve_dtype(name, device, key='dtype'):
    """The autocast precision for `device`: 'auto' is bfloat16 on a CUDA device that has it, float16
    on an older one, float32 elsewhere. float16 needs CUDA (on the CPU it is slow and loses range)."""
    cuda = device_type_of(device) == 'cuda'
    if name == 'auto':
        if not cuda:
            return 'float32'
        return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if name not in DTYPES:
        raise UserError(f"{key}={name!r} is unknown; use 'auto' or one of {', '.join(DTYPES)}")
    if name == 'float16' and not cuda:
        raise UserError(f"{key}='float16' needs CUDA; use 'float32' or 'bfloat16' on the CPU")
    return name


def autocast_context(device, dtype_name):
    """torch.autocast for a resolved dtype name; float32 runs without autocast."""
    if dtype_name == 'float32':
        return nullcontext()
    return torch.autocast(device_type=device_type_of(device), dtype=DTYPES[dtype_name])


# -----------------------------------------------------------------------------
# compute: one process or a torchrun group


@dataclass
class Compute:
    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    device: str
    dtype: str          # the resolved autocast dtype name
    autocast: object    # context manager for forward passes

    @property
    def master(self):
        return self.rank == 0

    @property
    def device_type(self):
        return device_type_of(self.device)


def compute_init(device='auto', dtype='auto', seed=1337, backend=None):
    """Device, DDP rank/world size, seeds and autocast. Works alone, under torchrun, on CPU or CUDA."""
    ddp = int(os.environ.get('RANK', -1)) != -1
    rank, local_rank, world_size = 0, 0, 1
    device = resolve_device(device)
    if ddp:
        rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
        world_size = int(os.environ['WORLD_SIZE'])
        if device.startswith('cuda'):
            device = f'cuda:{local_rank}'
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend or ('nccl' if device.startswith('cuda') else 'gloo'))
    dtype = resolve_dtype(dtype, device)
    # a different seed per rank: different dropout masks (the data differs anyway: own queue files)
    seed_everything(seed + rank)
    if device_type_of(device) == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True  # tf32 matmuls: much faster, precision is plenty
        torch.backends.cudnn.allow_tf32 = True
    return Compute(ddp, rank, local_rank, world_size, device, dtype, autocast_context(device, dtype))


def compute_cleanup(compute):
    if compute.ddp and dist.is_initialized():
        dist.destroy_process_group()
