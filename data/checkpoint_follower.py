"""
CheckpointFollower: a provider's rows made with the newest checkpoint of a training run, and what the
provider does while it has none. One copy, composed by every provider that corrupts with a model
(char_inference_replacement: predictions in a mixture branch; char_sampler_states: the sampler's own
states).

- the keys (`DEFAULTS`): which run to follow, where and how inference runs, and the random fallback;
- `start_file()`: pick up a newer checkpoint (throttled, data/checkpoint_predictor.py) before a file,
  so one model makes the whole file, and say which one (the file's `info['checkpoint']`);
- `fill(...)`: the model's tokens at the asked-for positions, or before a checkpoint (with
  fallback_to_random=True) random characters drawn as the random branch draws them;
- `wait_until_ready(provider)`: with fallback_to_random=False, wait for a first checkpoint, saying why
  (`waiting_reason()`) in the log every 30 s and in the heartbeat's 'waiting_for', which train.py prints
  while it waits for data: the provider's log file is not where a user looks;
- `describe(source)` / `warning()`: the end of the per-file log line, and the heartbeat's warning
  that train.py prints, both repeating why the newest checkpoint was refused while it is, so a run
  meant to learn from predictions cannot quietly learn from random characters.
"""

import os
import time

from common import UserError
from data.checkpoint_predictor import CheckpointPredictionCorruptor
from data.corruption import RandomBranch
from prepare_streaming import STOP_POLL

DEFAULTS = {
    'checkpoint_dir': None,            # folder the watched run saves to; None: out_dir
    'out_dir': None,                   # train.py's key, read only as the checkpoint_dir fallback
    'inference_training_type': 'unmasking',  # which ckpt_<kind>_<iter>.pt to follow (e.g. merged)
    'inference_device': 'cpu',         # 'cpu' | 'cuda' | 'cuda:1' | 'auto'
    'inference_dtype': 'float32',      # 'float32' | 'bfloat16' | 'float16'
    'inference_refresh_seconds': 30.0,  # look for a newer checkpoint at most this often
    'inference_batch_size': 64,        # rows per forward pass
    'fallback_to_random': False,       # True: random characters instead of the model's until a checkpoint loads
    'fallback_original_token_probability_multiplier': 1.0,  # the fallback's weight of the original character
    'fallback_extra_special_token_ids': (),  # character ids the fallback never draws
}
# where and how inference runs does not change what the files mean; the folder is fingerprinted
# resolved (data_config), so out_dir and checkpoint_dir themselves are left out
RUN_ONLY_KEYS = ('checkpoint_dir', 'out_dir', 'inference_device', 'inference_dtype', 'inference_refresh_seconds',
                 'inference_batch_size')
WAIT_POLL = 1.0  # seconds between looks for a first checkpoint
WAIT_MESSAGE_EVERY = 30.0  # seconds between "waiting for a checkpoint" lines


def checkpoint_dir(cfg, dataset):
    """The watched run's folder: checkpoint_dir, else out_dir (the same config namespace as train.py)."""
    folder = cfg['checkpoint_dir'] or cfg.get('out_dir')
    if not folder:
        raise UserError(f"{dataset} needs checkpoint_dir: the out_dir of the training run whose checkpoints "
                        f"make the predictions (e.g. checkpoint_dir='out-shakespeare-char-quick')")
    return folder


class CheckpointFollower:
    """The checkpoint keys of a provider's config, checked once; `fallback_name` says in the log line
    where the fallback's random characters go (e.g. 'the prediction branch')."""

    def __init__(self, cfg, vocab, dataset, temperature, fallback_name, log):
        self.fallback_to_random = bool(cfg['fallback_to_random'])
        self.fallback_name = fallback_name
        self.fallback = RandomBranch(cfg, len(vocab['chars']), 'fallback_original_token_probability_multiplier',
                                     'fallback_extra_special_token_ids')
        self.predictor = CheckpointPredictionCorruptor(
            checkpoint_dir(cfg, dataset), cfg['inference_training_type'], vocab['stoi'], cfg['block_size'],
            device=cfg['inference_device'], dtype=cfg['inference_dtype'],
            refresh_seconds=cfg['inference_refresh_seconds'], temperature=temperature,
            batch_size=cfg['inference_batch_size'], log=log)
        self.log = log
        self.source = self.predictor.source()
        self.waiting_for = None  # waiting_reason() while wait_until_ready waits, for the heartbeat

    # -------------------------------------------------------------------------
    # meta.pkl

    def data_config(self):
        """The resolved folder, for the queue's fingerprint (a queue of another run's predictions is refused)."""
        return {'checkpoint_dir': os.path.abspath(self.predictor.checkpoint_dir)}

    def meta(self):
        """The knobs for meta['corruption']."""
        return dict(checkpoint_dir=os.path.abspath(self.predictor.checkpoint_dir),
                    inference_training_type=self.predictor.kind, fallback_to_random=self.fallback_to_random,
                    fallback_original_token_probability_multiplier=self.fallback.multiplier,
                    fallback_extra_special_token_ids=self.fallback.extra_ids)

    # -------------------------------------------------------------------------
    # rows

    def start_file(self):
        """Before a file: pick up a newer checkpoint (throttled); returns the source of the file's tokens."""
        self.predictor.refresh()
        self.source = self.predictor.source()
        return dict(self.source)

    def fill(self, x, clean, model_input, positions, generator):
        """Tokens into x (N, T), in place, at `positions` (N, T): what the model predicts reading
        `model_input` (N, T), or the fallback's random characters (drawn against `clean`) while no
        checkpoint is loaded."""
        if not self.predictor.ready:
            self.fallback.fill(x, clean, positions, generator)
            return
        tokens = self.predictor.predict(model_input, positions, generator)  # (P,) row-major
        x.masked_scatter_(positions, tokens.to(x.dtype))

    # -------------------------------------------------------------------------
    # what the log line and the heartbeat say

    def describe(self, source):
        """The end of the per-file log line: the checkpoint used, or the fallback and why."""
        if source['fallback']:
            used = f"checkpoint=none (random fallback in {self.fallback_name})"
        else:
            used = f"checkpoint={source['path']} iter={source['iter']}"
        return used + (f", REFUSED {source['refused']}" if source['refused'] else '')

    def file_info(self):
        """A batch file's info entry: {'checkpoint': {'path', 'iter', 'fallback', 'refused'}}."""
        return {'checkpoint': dict(self.source)}

    def heartbeat_extras(self):
        """{'warning': ...} while there is one (train.py prints it once), and {'waiting_for': ...} while
        the provider waits for a checkpoint (train.py prints it while it waits for data)."""
        warning = self.warning()
        extras = {'warning': warning} if warning else {}
        if self.waiting_for:
            extras['waiting_for'] = self.waiting_for
        return extras

    def warning(self):
        """The heartbeat's warning while the newest checkpoint is refused (train.py prints it once), else None."""
        refused = self.source['refused']
        if not refused:
            return None
        if not self.source['fallback']:
            return f"predictions come from {self.predictor.describe()}, the newer checkpoint was refused: {refused}"
        if self.fallback_to_random:
            return (f"random characters, not predictions, in {self.fallback_name} (fallback_to_random=True): "
                    f"refused {refused}")
        return f"no data until a checkpoint fits: refused {refused}"

    # -------------------------------------------------------------------------
    # waiting for a first checkpoint

    def wait_until_ready(self, provider, needed=True):
        """True once rows can be made (a model, the fallback, or no model `needed`); False when the
        provider is told to stop while waiting. Its heartbeat stays fresh, so train.py knows the
        producer is alive."""
        if not needed or self.fallback_to_random or self.predictor.refresh():
            return True
        last_message = None
        try:
            while not provider.should_stop():
                if self.predictor.refresh():
                    return True
                self.source, self.waiting_for = self.predictor.source(), self.waiting_reason()
                if last_message is None or time.monotonic() - last_message >= WAIT_MESSAGE_EVERY:
                    self.log(f"waiting: {self.waiting_for}")
                    last_message = time.monotonic()
                provider.beat('waiting for a checkpoint')
                deadline = time.monotonic() + WAIT_POLL
                while time.monotonic() < deadline and not provider.should_stop():
                    time.sleep(STOP_POLL)
            return False
        finally:
            self.waiting_for = None

    def waiting_reason(self):
        """Why no rows can be made yet, naming the watched folder and the two ways on (one line)."""
        predictor = self.predictor
        wanted = f"ckpt_{predictor.kind}_<iter>.pt or ckpt.pt"
        if predictor.problem:
            path, reason = predictor.problem
            found = f"the newest checkpoint in {predictor.checkpoint_dir} does not fit ({path}: {reason})"
            train = "train one there that fits"
        else:
            found = f"no checkpoint in {predictor.checkpoint_dir} yet ({wanted})"
            train = "train the run that saves there"
        return f"{found}: {train}, or set fallback_to_random=True to start with random characters meanwhile"
