"""
CheckpointPredictionCorruptor: the newest checkpoint of a training run, kept loaded, and the
tokens it predicts at chosen positions.

The providers that corrupt with a model (char_inference_replacement, char_sampler_states, through
data/checkpoint_follower.py) run next to a trainer that keeps saving `ckpt_<kind>_<iter>.pt` into its
out_dir. This class

- finds the newest checkpoint of one run kind by *iteration* (file times lie: a copied or touched
  old file looks new), falling back to `ckpt.pt` when the run has no versioned checkpoint yet;
- loads only the weights (memory-mapped, so ckpt.pt's optimizer state is never read) onto
  `device` in `dtype`, and checks that block_size and vocabulary fit the dataset;
- refuses a bad checkpoint with one printed line and keeps the model it had; a refused file is
  remembered by (path, mtime, size) so it is not re-read every batch, but a rewritten one is, and
  while the newest checkpoint is a refused one, `problem` says which and why;
- opens files only with weights_only=True, never trusting one that needs full unpickling: it loads,
  unattended, whatever appears in the folder it watches, so such a file is refused like a corrupt one;
- re-scans the folder at most every `refresh_seconds` once it has a model.

`predict` runs the model, in chunks of rows, under torch.inference_mode and returns the token it
puts at each asked-for position: the argmax, or a sample at `temperature` (sampling_utils.sample_tokens,
as sample.py draws); [MASK] and [WRONG] are never chosen.
"""

import os
import time

import torch

from checkpoints import (UntrustedCheckpoint, checkpoint_candidates, fit_problem, load_checkpoint,
                         model_from_checkpoint, parse_checkpoint_name)
from common import DTYPES, UserError, resolve_device
from sampling_utils import sample_tokens


def file_signature(path):
    """(path, mtime_ns, size): a file rewritten under the same name gets a new signature. None when gone."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (path, stat.st_mtime_ns, stat.st_size)


def check_run_kind(kind, key='inference_training_type'):
    """A run kind a checkpoint name can carry ('unmasking', 'merged', 'remasking_all_positions', ...)."""
    if not isinstance(kind, str) or parse_checkpoint_name(f'ckpt_{kind}_0.pt') is None:
        raise UserError(f"{key}={kind!r} is not a checkpoint kind; use 'unmasking', 'merged', "
                        f"'remasking_all_positions' or 'remasking_corrupted_only'")
    return kind


class CheckpointPredictionCorruptor:

    def __init__(self, checkpoint_dir, kind, stoi, block_size, device='cpu', dtype='float32',
                 refresh_seconds=30.0, temperature=0.0, batch_size=64, log=print, clock=time.monotonic):
        """`temperature`: 0 predicts the argmax, above 0 samples at that temperature."""
        if dtype not in DTYPES:
            raise UserError(f"inference_dtype={dtype!r} is unknown; use one of {tuple(DTYPES)}")
        if not (isinstance(temperature, (int, float)) and temperature >= 0):
            raise UserError(f"the prediction temperature must be >= 0 (0: argmax), got {temperature!r}")
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise UserError(f"inference_batch_size must be a positive integer, got {batch_size!r}")
        if not (isinstance(refresh_seconds, (int, float)) and refresh_seconds >= 0):
            raise UserError(f"inference_refresh_seconds must be >= 0, got {refresh_seconds!r}")
        self.checkpoint_dir = checkpoint_dir
        self.kind = check_run_kind(kind)
        self.stoi = stoi
        self.n_chars = len(stoi)  # ids >= n_chars are [MASK] and [WRONG]: never predicted
        self.block_size = block_size
        self.device = resolve_device(device, key='inference_device')
        self.dtype = DTYPES[dtype]
        self.refresh_seconds = refresh_seconds
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self.log = log
        self.clock = clock
        self.model = None
        self.loaded = None       # signature of the loaded file
        self.iter_num = None     # its training iteration
        self.last_scan = None    # clock() of the last folder scan
        self.refused = {}        # signature -> reason, of files that failed; a rewritten file is tried again
        self.problem = None      # (path, reason) while the newest checkpoint is a refused one

    # -------------------------------------------------------------------------
    # finding and loading

    @property
    def ready(self):
        return self.model is not None

    def source(self):
        """What predictions come from now, for a batch file's info: {'path', 'iter', 'fallback',
        'refused'}; 'refused' is '<path>: <reason>' while the newest checkpoint is a refused one, else None."""
        refused = f"{self.problem[0]}: {self.problem[1]}" if self.problem else None
        if self.model is None:
            return {'path': None, 'iter': None, 'fallback': True, 'refused': refused}
        return {'path': self.loaded[0], 'iter': self.iter_num, 'fallback': False, 'refused': refused}

    def describe(self):
        if self.model is None:
            return 'no checkpoint'
        return f"{os.path.basename(self.loaded[0])} (iter {self.iter_num})"

    def candidates(self):
        """Paths to try, newest iteration first; ckpt.pt only while the run has no versioned checkpoint."""
        return checkpoint_candidates(self.checkpoint_dir, self.kind)

    def refresh(self):
        """Load a newer checkpoint when there is one (scans at most every refresh_seconds once a model
        is loaded; always while there is none). Returns whether a model is loaded."""
        now = self.clock()
        if self.model is not None and self.last_scan is not None and now - self.last_scan < self.refresh_seconds:
            return True
        self.last_scan = now
        self.problem = None
        for iter_num, path in self.candidates():
            signature = file_signature(path)
            if signature is None:
                continue  # gone since the listing (pruned)
            if signature in self.refused:  # already refused as it is now: not read again
                self.note_problem(path, self.refused[signature])
                continue
            if signature == self.loaded:
                break  # the newest usable file is the one we have
            if iter_num is not None and self.iter_num is not None and iter_num < self.iter_num:
                break  # never go back to an older model because newer files were bad or pruned
            if self.try_load(path, signature):
                break
        return self.model is not None

    def note_problem(self, path, reason):
        """Remember why the newest candidate was refused (the first refused one of a scan, newest first)."""
        if self.problem is None:
            self.problem = (path, reason)

    def try_load(self, path, signature):
        """Load and switch to `path`; on failure print one line, remember it, keep the current model."""
        try:
            model, iter_num = self.load(path)
        except Exception as e:  # anything a bad file can raise: the provider must keep going
            if not os.path.exists(path):
                return False  # pruned between listing and loading: not a bad file
            reason = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            self.refused[signature] = reason
            self.note_problem(path, reason)
            keeping = f"keeping {self.describe()}" if self.model is not None else "no model loaded yet"
            self.log(f"refusing checkpoint {path}: {reason}; {keeping}")
            return False
        self.model, self.iter_num, self.loaded = model, iter_num, signature
        self.log(f"predictions now come from {self.describe()} in {self.checkpoint_dir} "
                 f"on {self.device} ({str(self.dtype).replace('torch.', '')})")
        return True

    def load(self, path):
        """(model, iter_num) of a checkpoint that fits the dataset; UserError says why one does not."""
        try:  # memory-mapped: only the tensors the model needs are read
            checkpoint = load_checkpoint(path)  # never trust_pickle: nobody is there to vouch for the file
        except UntrustedCheckpoint as e:
            raise UserError(f"it {e.reason}; the provider opens only checkpoints that load that way") from None
        self.check_fits(checkpoint)
        model = model_from_checkpoint(checkpoint, device=self.device, dtype=self.dtype)
        return model, checkpoint.get('iter_num')

    def check_fits(self, checkpoint):
        problem = fit_problem(checkpoint, kind=self.kind, block_size=self.block_size, stoi=self.stoi)
        if problem:
            raise UserError(problem)

    # -------------------------------------------------------------------------
    # predicting

    @torch.inference_mode()
    def predict(self, model_input, positions, generator=None):
        """Token ids (P,) the model puts at the True entries of `positions` (N, T), row-major order.

        `model_input` (N, T) is what the model sees: the caller has put [MASK] at every position it
        corrupts, so no prediction reads a character the corrupted row will not have. Only rows with
        something to predict are run, `batch_size` rows at a time.
        """
        rows = positions.any(dim=1).nonzero().squeeze(1)  # (R,) ascending, so output stays row-major
        predicted = [self.choose(self.position_logits(model_input[chunk], positions[chunk]), generator)
                     for chunk in rows.split(self.batch_size)]
        return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)

    def position_logits(self, rows_input, rows_positions):
        """float32 logits (P, V) at the asked-for positions of a chunk, on the CPU."""
        logits, _ = self.model(rows_input.to(self.device, torch.long))  # (n, T, V)
        return logits[rows_positions.to(self.device)].float().cpu()  # (P, V)

    def choose(self, logits, generator):
        """(P,) the argmax, or a draw at `temperature` from the real characters' softmax (float64 CDF),
        exactly as sample.py draws; on the CPU, so the file's generator drives it."""
        return sample_tokens(logits, self.temperature, n_real=self.n_chars, generator=generator)[0]
