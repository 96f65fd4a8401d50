"""
CharRandomReplacementProvider: edit-style corruption for models that learn which characters to change.

Positions are picked as data/positions.py picks them (stages, or mask_probability), then each
picked position is routed to one branch of `train_corruption_mixture = (random, mask, fragment)`
(data/corruption.py):

- random:   a character drawn from the vocabulary (never [MASK]/[WRONG] nor extra_special_token_ids);
            original_token_probability_multiplier weighs the original character against the others;
- mask:     [MASK];
- fragment: the character at the same place of a window taken from elsewhere in the train text, so
            runs of picked positions read as plausible text.

Targets are full by default (the original character everywhere, so the model also learns what to
keep); dataset_partial_targets=True gives ignore_index outside the picked positions. The validation
set never uses fragments: their weight is dropped and the other weights renormalised.
"""

from data import corruption, positions
from prepare_streaming import DataProviderBase

BRANCH_NAMES = corruption.MIXTURE_BRANCHES


class CharRandomReplacementProvider(DataProviderBase):
    DEFAULTS = {**positions.DEFAULTS, **corruption.DEFAULTS}

    def configure(self):
        self.positions = positions.PositionPicker(self.cfg)
        self.mixture = corruption.Mixture(self.cfg, BRANCH_NAMES, self.vocab, validation_fragments=False, log=self.log)

    def fingerprint_exclude(self):
        return self.positions.fingerprint_exclude()

    def corruption_meta(self):
        return {**self.mixture.meta('random_replacement', self.positions.mode_meta(), fragment_source='train split'),
                **self.positions.stage_meta()}

    def schema(self):
        return {**super().schema(), **self.positions.schema()}

    def make_rows(self, split, clean, generator):
        selected, stage_ids = self.positions.pick(split, clean.shape[0], generator)  # (N, T), (N,) or None
        x, branch = self.corrupt(split, clean, selected, generator)
        tensors = self.positions.file_tensors(x, self.mixture.labels(split, clean, selected), stage_ids)
        stats = corruption.file_stats(clean, x, selected, branch, BRANCH_NAMES,
                                      self.positions.stage_ratios(selected, stage_ids))
        return tensors, stats

    def corrupt(self, split, clean, selected, generator):
        """(x (N, T), branch (N, T) with -1 outside `selected`); fragments always come from train text
        (the validation mixture has none)."""
        branch = self.mixture.route(split, selected, generator)
        return self.mixture.fill(split, clean, branch, generator, fragment_source=self.ids['train']), branch

    def summary_line(self, stats):
        return corruption.mask_ratio_summary(stats, self.log_prefix())


Provider = CharRandomReplacementProvider
