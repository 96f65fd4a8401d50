"""
CharInferenceReplacementProvider: corruption made of a training model's own predictions.

Everything but the corruption is char_random_replacement's (stages or mask_probability to pick
positions, fragment sampler, full/partial labels, queue handling). Each picked position is routed
to one branch of `train_corruption_mixture = (prediction, random, mask, fragment)`, for the train
files and the validation set alike:

- prediction: the token the newest checkpoint of a watched run predicts there (argmax of the
              tempered logits, or a sample with prediction_sampling=True). The model sees every
              picked position, whatever its branch, as [MASK], as it would while sampling;
- random / mask / fragment: as in char_random_replacement (fragments come from the file's own split).

Before the run has saved a checkpoint, fallback_to_random=True fills the prediction branch with
random characters (the file's info says so); with False the provider waits for one. With full targets
and a mask weight of 0 the batches teach a remasking model to spot the unmasking model's real
mistakes (config/train_remasking_from_predictions.py). See docs/inference_replacement.md.
"""

import os
import time

from common import UserError
from data.checkpoint_predictor import CheckpointPredictionCorruptor
from data import corruption
from data.char_random_replacement.prepare_streaming import CharRandomReplacementProvider
from prepare_streaming import STOP_POLL

BRANCH_NAMES = ('prediction', 'random', 'mask', 'fragment')
WAIT_POLL = 1.0  # seconds between looks for a first checkpoint
WAIT_MESSAGE_EVERY = 30.0  # seconds between "waiting for a checkpoint" lines


class CharInferenceReplacementProvider(CharRandomReplacementProvider):
    BRANCH_NAMES = BRANCH_NAMES
    DEFAULTS = dict(
        train_corruption_mixture=(0.6, 0.2, 0.1, 0.1),  # (prediction, random, mask, fragment), both splits
        checkpoint_dir=None,            # folder the watched run saves to; None: out_dir
        out_dir=None,                   # train.py's key, read only as the checkpoint_dir fallback
        inference_training_type='unmasking',  # which ckpt_<kind>_<iter>.pt to follow (e.g. remasking_all_positions)
        inference_device='cpu',         # 'cpu' | 'cuda' | 'cuda:1' | 'auto'
        inference_dtype='float32',      # 'float32' | 'bfloat16' | 'float16'
        inference_refresh_seconds=30.0,  # look for a newer checkpoint at most this often
        inference_batch_size=64,        # rows per forward pass
        prediction_temperature=1.0,     # logits are divided by this (matters only with prediction_sampling)
        prediction_sampling=False,      # False: argmax; True: sample from the tempered distribution
        fallback_to_random=False,       # True: random characters in the prediction branch until a checkpoint loads
        fallback_original_token_probability_multiplier=1.0,  # the fallback's weight of the original character
        fallback_extra_special_token_ids=(),  # character ids the fallback never draws
    )
    # where and how inference runs does not change what the files mean; the folder is fingerprinted
    # resolved (data_config), so out_dir and checkpoint_dir themselves are left out
    FINGERPRINT_EXCLUDE = CharRandomReplacementProvider.FINGERPRINT_EXCLUDE + (
        'checkpoint_dir', 'out_dir', 'inference_device', 'inference_dtype', 'inference_refresh_seconds',
        'inference_batch_size')

    # -------------------------------------------------------------------------
    # config and meta

    def check_config(self):
        super().check_config()  # validates the four-way mixture against BRANCH_NAMES
        multiplier = self.cfg['fallback_original_token_probability_multiplier']
        if not isinstance(multiplier, (int, float)) or multiplier < 0:
            raise UserError(f"fallback_original_token_probability_multiplier must be >= 0, got {multiplier!r}")
        self.fallback_ids = self.random_branch_ids('fallback_extra_special_token_ids')
        self.predictor = CheckpointPredictionCorruptor(
            self.checkpoint_dir(), self.cfg['inference_training_type'], self.vocab['stoi'], self.cfg['block_size'],
            device=self.cfg['inference_device'], dtype=self.cfg['inference_dtype'],
            refresh_seconds=self.cfg['inference_refresh_seconds'], temperature=self.cfg['prediction_temperature'],
            sampling=bool(self.cfg['prediction_sampling']), batch_size=self.cfg['inference_batch_size'],
            log=self.log)
        self.file_source = self.predictor.source()

    def checkpoint_dir(self):
        folder = self.cfg['checkpoint_dir'] or self.cfg.get('out_dir')
        if not folder:
            raise UserError("char_inference_replacement needs checkpoint_dir: the out_dir of the training run "
                            "whose checkpoints make the predictions (e.g. checkpoint_dir='out-char-random-replacement')")
        return folder

    def validation_mixture(self, weights):
        return weights  # one mixture for both splits; validation fragments come from the val split

    def fragment_source(self, split):
        return self.ids[split]

    def data_config(self):
        values = super().data_config()
        values['checkpoint_dir'] = os.path.abspath(self.checkpoint_dir())
        return values

    def corruption_meta(self):
        meta = super().corruption_meta()
        meta['corruption'].update(
            checkpoint_dir=os.path.abspath(self.checkpoint_dir()),
            inference_training_type=self.cfg['inference_training_type'],
            prediction_temperature=self.cfg['prediction_temperature'],
            prediction_sampling=bool(self.cfg['prediction_sampling']),
            fallback_to_random=bool(self.cfg['fallback_to_random']),
            fallback_original_token_probability_multiplier=self.cfg['fallback_original_token_probability_multiplier'],
            fallback_extra_special_token_ids=tuple(self.cfg['fallback_extra_special_token_ids']),
            fragment_source='own split')
        meta.update(corruption_type='inference_replacement', mixture_has_mask=self.share('train', 'mask') > 0)
        return meta

    # -------------------------------------------------------------------------
    # rows

    def make_rows(self, split, clean, generator):
        # one model per file: pick up a newer checkpoint (throttled) before the file, not during it
        self.predictor.refresh()
        self.file_source = self.predictor.source()
        tensors, stats = super().make_rows(split, clean, generator)
        stats['checkpoint'] = self.file_source
        return tensors, stats

    def fill_branches(self, split, clean, branch, generator):
        x = super().fill_branches(split, clean, branch, generator)  # random, mask and fragment branches
        if self.share(split, 'prediction') == 0:
            return x
        predicted = branch == BRANCH_NAMES.index('prediction')  # (N, T)
        if self.predictor.ready:
            # the model sees every picked position as [MASK], the context the corrupted row will keep
            model_input = clean.masked_fill(branch >= 0, self.vocab['mask_token_id'])  # (N, T)
            tokens = self.predictor.predict(model_input, predicted, generator)  # (P,) row-major
        else:  # no checkpoint yet: random characters, drawn for the P prediction positions only
            tokens = corruption.random_tokens(clean[predicted].long(), self.fallback_ids,
                                              self.cfg['fallback_original_token_probability_multiplier'], generator)
        return x.masked_scatter(predicted, tokens.to(x.dtype))

    def file_info_extras(self):
        return {'checkpoint': dict(self.file_source)}

    def summary_line(self, stats):
        source = stats['checkpoint']
        used = ('checkpoint=none (random fallback in the prediction branch)' if source['fallback']
                else f"checkpoint={source['path']} iter={source['iter']}")
        return f"{super().summary_line(stats)}, {used}"

    # -------------------------------------------------------------------------
    # waiting for a first checkpoint

    def write_validation_set(self):
        if self.wait_for_checkpoint():
            super().write_validation_set()

    def wait_for_room(self):
        return super().wait_for_room() and self.wait_for_checkpoint()

    def wait_for_checkpoint(self):
        """True once the prediction branch can be filled (a model, or the fallback); False when told
        to stop while waiting. The heartbeat stays fresh, so train.py knows this producer is alive."""
        if self.cfg['fallback_to_random'] or self.share('train', 'prediction') == 0 or self.predictor.refresh():
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
