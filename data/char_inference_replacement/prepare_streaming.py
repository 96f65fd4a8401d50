"""
CharInferenceReplacementProvider: corruption made of a training model's own predictions.

Positions are picked as data/positions.py picks them (stages or mask_probability), and each picked
position is routed to one branch of `train_corruption_mixture = (prediction, random, mask, fragment)`
(data/corruption.py), for the train files and the validation set alike:

- prediction: the token the newest checkpoint of a watched run predicts there (argmax of the
              tempered logits, or a sample with prediction_sampling=True; data/checkpoint_predictor.py).
              The model sees every picked position, whatever its branch, as [MASK], as it would
              while sampling;
- random / mask / fragment: as in char_random_replacement (fragments come from the file's own split).

Before the run has saved a checkpoint, fallback_to_random=True fills the prediction branch with
random characters (the file's info says so); with False the provider waits for one. With full targets
and a mask weight of 0 the batches teach a remasking model to spot the unmasking model's real
mistakes (config/train_remasking_from_predictions.py). See docs/inference_replacement.md.
"""

import os
import time

from common import UserError
from data import corruption, positions
from data.checkpoint_predictor import CheckpointPredictionCorruptor
from prepare_streaming import STOP_POLL, DataProviderBase

BRANCH_NAMES = ('prediction',) + corruption.MIXTURE_BRANCHES
WAIT_POLL = 1.0  # seconds between looks for a first checkpoint
WAIT_MESSAGE_EVERY = 30.0  # seconds between "waiting for a checkpoint" lines
# where and how inference runs does not change what the files mean; the folder is fingerprinted
# resolved (data_config), so out_dir and checkpoint_dir themselves are left out
RUN_ONLY_KEYS = ('checkpoint_dir', 'out_dir', 'inference_device', 'inference_dtype', 'inference_refresh_seconds',
                 'inference_batch_size')


class CharInferenceReplacementProvider(DataProviderBase):
    DEFAULTS = {
        **positions.DEFAULTS,
        **corruption.DEFAULTS,
        'train_corruption_mixture': (0.6, 0.2, 0.1, 0.1),  # (prediction, random, mask, fragment), both splits
        'checkpoint_dir': None,            # folder the watched run saves to; None: out_dir
        'out_dir': None,                   # train.py's key, read only as the checkpoint_dir fallback
        'inference_training_type': 'unmasking',  # which ckpt_<kind>_<iter>.pt to follow (e.g. remasking_all_positions)
        'inference_device': 'cpu',         # 'cpu' | 'cuda' | 'cuda:1' | 'auto'
        'inference_dtype': 'float32',      # 'float32' | 'bfloat16' | 'float16'
        'inference_refresh_seconds': 30.0,  # look for a newer checkpoint at most this often
        'inference_batch_size': 64,        # rows per forward pass
        'prediction_temperature': 1.0,     # logits are divided by this (matters only with prediction_sampling)
        'prediction_sampling': False,      # False: argmax; True: sample from the tempered distribution
        'fallback_to_random': False,       # True: random characters in the prediction branch until a checkpoint loads
        'fallback_original_token_probability_multiplier': 1.0,  # the fallback's weight of the original character
        'fallback_extra_special_token_ids': (),  # character ids the fallback never draws
    }

    # -------------------------------------------------------------------------
    # config and meta

    def configure(self):
        cfg = self.cfg
        self.positions = positions.PositionPicker(cfg)
        # one mixture for both splits; validation fragments come from the val split
        self.mixture = corruption.Mixture(cfg, BRANCH_NAMES, self.vocab, validation_fragments=True, log=self.log)
        self.fallback = corruption.RandomBranch(cfg, len(self.vocab['chars']),
                                                'fallback_original_token_probability_multiplier',
                                                'fallback_extra_special_token_ids')
        self.predictor = CheckpointPredictionCorruptor(
            self.checkpoint_dir(), cfg['inference_training_type'], self.vocab['stoi'], cfg['block_size'],
            device=cfg['inference_device'], dtype=cfg['inference_dtype'],
            refresh_seconds=cfg['inference_refresh_seconds'], temperature=cfg['prediction_temperature'],
            sampling=bool(cfg['prediction_sampling']), batch_size=cfg['inference_batch_size'], log=self.log)
        self.file_source = self.predictor.source()

    def checkpoint_dir(self):
        folder = self.cfg['checkpoint_dir'] or self.cfg.get('out_dir')
        if not folder:
            raise UserError("char_inference_replacement needs checkpoint_dir: the out_dir of the training run "
                            "whose checkpoints make the predictions (e.g. checkpoint_dir='out-char-random-replacement')")
        return folder

    def fingerprint_exclude(self):
        return self.positions.fingerprint_exclude() + RUN_ONLY_KEYS

    def data_config(self):
        return {**super().data_config(), 'checkpoint_dir': os.path.abspath(self.checkpoint_dir())}

    def corruption_meta(self):
        knobs = dict(fragment_source='own split', checkpoint_dir=os.path.abspath(self.checkpoint_dir()),
                     inference_training_type=self.cfg['inference_training_type'],
                     prediction_temperature=self.cfg['prediction_temperature'],
                     prediction_sampling=bool(self.cfg['prediction_sampling']),
                     fallback_to_random=bool(self.cfg['fallback_to_random']),
                     fallback_original_token_probability_multiplier=self.fallback.multiplier,
                     fallback_extra_special_token_ids=self.fallback.extra_ids)
        return {**self.mixture.meta('inference_replacement', self.positions.mode_meta(), **knobs),
                **self.positions.stage_meta()}

    def schema(self):
        return {**super().schema(), **self.positions.schema()}

    # -------------------------------------------------------------------------
    # rows

    def make_rows(self, split, clean, generator):
        # one model per file: pick up a newer checkpoint (throttled) before the file, not during it
        self.predictor.refresh()
        self.file_source = self.predictor.source()
        selected, stage_ids = self.positions.pick(split, clean.shape[0], generator)  # (N, T), (N,) or None
        x, branch = self.corrupt(split, clean, selected, generator)
        tensors = self.positions.file_tensors(x, self.mixture.labels(split, clean, selected), stage_ids)
        stats = corruption.file_stats(clean, x, selected, branch, BRANCH_NAMES,
                                      self.positions.stage_ratios(selected, stage_ids))
        stats['checkpoint'] = self.file_source
        return tensors, stats

    def corrupt(self, split, clean, selected, generator):
        """(x (N, T), branch (N, T) with -1 outside `selected`): the mixture's branches, then predictions."""
        branch = self.mixture.route(split, selected, generator)
        x = self.mixture.fill(split, clean, branch, generator, fragment_source=self.ids[split])
        if self.mixture.share(split, 'prediction') > 0:
            self.fill_predictions(x, clean, branch, generator)
        return x, branch

    def fill_predictions(self, x, clean, branch, generator):
        """The model's tokens (or, before a checkpoint, the fallback's) into x at the prediction positions."""
        predicted = branch == BRANCH_NAMES.index('prediction')  # (N, T)
        if not self.predictor.ready:
            self.fallback.fill(x, clean, predicted, generator)
            return
        # the model sees every picked position as [MASK], the context the corrupted row will keep
        model_input = clean.masked_fill(branch >= 0, self.vocab['mask_token_id'])  # (N, T)
        tokens = self.predictor.predict(model_input, predicted, generator)  # (P,) row-major
        x.masked_scatter_(predicted, tokens.to(x.dtype))

    def file_info_extras(self):
        return {'checkpoint': dict(self.file_source)}

    def summary_line(self, stats):
        source = stats['checkpoint']
        used = ('checkpoint=none (random fallback in the prediction branch)' if source['fallback']
                else f"checkpoint={source['path']} iter={source['iter']}")
        return f"{corruption.mask_ratio_summary(stats, self.log_prefix())}, {used}"

    # -------------------------------------------------------------------------
    # waiting for a first checkpoint

    def wait_until_ready(self):
        """True once the prediction branch can be filled (a model, or the fallback); False when told
        to stop while waiting. The heartbeat stays fresh, so train.py knows this producer is alive."""
        if self.cfg['fallback_to_random'] or self.mixture.share('train', 'prediction') == 0 or self.predictor.refresh():
            return True
        last_message = None
        while not self.should_stop():
            if self.predictor.refresh():
                return True
            if last_message is None or time.monotonic() - last_message >= WAIT_MESSAGE_EVERY:
                self.log(f"waiting for a checkpoint in {self.predictor.checkpoint_dir} "
                         f"(ckpt_{self.predictor.kind}_<iter>.pt or ckpt.pt); "
                         f"fallback_to_random=True would start with random characters")
                last_message = time.monotonic()
            self.beat('waiting for a checkpoint')
            deadline = time.monotonic() + WAIT_POLL
            while time.monotonic() < deadline and not self.should_stop():
                time.sleep(STOP_POLL)
        return False


Provider = CharInferenceReplacementProvider
