"""
CharInferenceReplacementProvider: corruption made of a training model's own predictions.

Positions are picked as data/positions.py picks them (stages or mask_probability), and each picked
position is routed to one branch of `train_corruption_mixture = (prediction, random, mask, fragment)`
(data/corruption.py), for the train files and the validation set alike:

- prediction: the token the newest checkpoint of a watched run predicts there (the argmax, or a
              sample at prediction_temperature with prediction_sampling=True; data/checkpoint_follower.py).
              The model sees every picked position, whatever its branch, as [MASK], as it would
              while sampling;
- random / mask / fragment: as in char_random_replacement (fragments come from the file's own split).

Before the run has saved a usable checkpoint, fallback_to_random=True fills the prediction branch with
random characters (the file's info, its log line and the heartbeat say so, and why); with False the
provider waits for one. With full targets and a mask weight of 0 the batches teach a remasking model
to spot the unmasking model's real mistakes (config/train_remasking_from_predictions.py).
See docs/inference_replacement.md.
"""

from common import UserError
from data import checkpoint_follower, corruption, positions
from prepare_streaming import DataProviderBase

BRANCH_NAMES = ('prediction',) + corruption.MIXTURE_BRANCHES


class CharInferenceReplacementProvider(DataProviderBase):
    DEFAULTS = {
        **positions.DEFAULTS,
        **corruption.DEFAULTS,
        **checkpoint_follower.DEFAULTS,
        'train_corruption_mixture': (0.6, 0.2, 0.1, 0.1),  # (prediction, random, mask, fragment), both splits
        'prediction_temperature': 1.0,     # logits are divided by this (matters only with prediction_sampling)
        'prediction_sampling': False,      # False: argmax; True: sample from the tempered distribution
    }

    # -------------------------------------------------------------------------
    # config and meta

    def configure(self):
        cfg = self.cfg
        temperature = cfg['prediction_temperature']
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise UserError(f"prediction_temperature must be > 0, got {temperature!r}")
        self.positions = positions.PositionPicker(cfg)
        # one mixture for both splits; validation fragments come from the val split
        self.mixture = corruption.Mixture(cfg, BRANCH_NAMES, self.vocab, validation_fragments=True, log=self.log)
        self.follower = checkpoint_follower.CheckpointFollower(
            cfg, self.vocab, self.dataset, temperature=temperature if cfg['prediction_sampling'] else 0.0,
            fallback_name='the prediction branch', log=self.log)
        self.predictor = self.follower.predictor

    def fingerprint_exclude(self):
        return self.positions.fingerprint_exclude() + checkpoint_follower.RUN_ONLY_KEYS

    def data_config(self):
        return {**super().data_config(), **self.follower.data_config()}

    def corruption_meta(self):
        knobs = dict(fragment_source='own split', prediction_temperature=self.cfg['prediction_temperature'],
                     prediction_sampling=bool(self.cfg['prediction_sampling']), **self.follower.meta())
        return {**self.mixture.meta('inference_replacement', self.positions.mode_meta(), **knobs),
                **self.positions.stage_meta()}

    def schema(self):
        return {**super().schema(), **self.positions.schema()}

    # -------------------------------------------------------------------------
    # rows

    def make_rows(self, split, clean, generator):
        # one model per file: pick up a newer checkpoint (throttled) before the file, not during it
        source = self.follower.start_file()
        selected, stage_ids = self.positions.pick(split, clean.shape[0], generator)  # (N, T), (N,) or None
        x, branch = self.corrupt(split, clean, selected, generator)
        tensors = self.positions.file_tensors(x, self.mixture.labels(split, clean, selected), stage_ids)
        stats = corruption.file_stats(clean, x, selected, branch, BRANCH_NAMES,
                                      self.positions.stage_ratios(selected, stage_ids))
        stats['checkpoint'] = source
        return tensors, stats

    def corrupt(self, split, clean, selected, generator):
        """(x (N, T), branch (N, T) with -1 outside `selected`): the mixture's branches, then predictions."""
        branch = self.mixture.route(split, selected, generator)
        x = self.mixture.fill(split, clean, branch, generator, fragment_source=self.ids[split])
        if self.mixture.share(split, 'prediction') > 0:
            # the model sees every picked position as [MASK], the context the corrupted row will keep
            model_input = clean.masked_fill(branch >= 0, self.vocab['mask_token_id'])  # (N, T)
            self.follower.fill(x, clean, model_input, branch == BRANCH_NAMES.index('prediction'), generator)
        return x, branch

    def file_info_extras(self):
        return self.follower.file_info()

    def heartbeat_extras(self):
        return self.follower.heartbeat_extras()

    def summary_line(self, stats):
        used = self.follower.describe(stats['checkpoint'])
        return f"{corruption.mask_ratio_summary(stats, self.log_prefix())}, {used}"

    def wait_until_ready(self):
        return self.follower.wait_until_ready(self, needed=self.mixture.share('train', 'prediction') > 0)


Provider = CharInferenceReplacementProvider
