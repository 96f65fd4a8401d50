"""
CharDiffusionProvider: masked-language-model data for the unmasking objective.

Positions are picked as data/positions.py picks them, then:

- default (`mask_probability`): BERT's 80/10/10, a picked position becomes [MASK] / a random
  character / stays as it is;
- stages (`use_all_stages_for_training = True`, e.g. `composition_config = 'complex'`): every
  picked position becomes [MASK].

Labels are partial: the original character where a position was picked, ignore_index elsewhere.
"""

import torch

from data import corruption, masking, positions
from prepare_streaming import DataProviderBase

BERT_BRANCH_NAMES = ('mask', 'random', 'keep')  # masking.bert_branches codes 0, 1, 2
STAGE_BRANCH_NAMES = ('mask',)


class CharDiffusionProvider(DataProviderBase):
    DEFAULTS = dict(positions.DEFAULTS)

    def configure(self):
        self.positions = positions.PositionPicker(self.cfg)

    def fingerprint_exclude(self):
        return self.positions.fingerprint_exclude()

    def corruption_meta(self):
        corruption = self.positions.mode_meta()
        if not self.positions.staged:  # BERT's 80/10/10 fills the picked positions
            corruption.update(mode='bert', bert_shares=masking.BERT_SHARES)
        return dict(label_semantics='partial', val_label_semantics='partial', corruption_type='masking',
                    corruption=corruption, mixture_has_mask=True, **self.positions.stage_meta())

    def schema(self):
        return {**super().schema(), **self.positions.schema()}

    def make_rows(self, split, clean, generator):
        selected, stage_ids = self.positions.pick(split, clean.shape[0], generator)  # (N, T), (N,) or None
        x, branch, branch_names = self.corrupt(clean, selected, generator)
        tensors = self.positions.file_tensors(x, corruption.labels(clean, selected, 'partial'), stage_ids)
        stats = corruption.file_stats(clean, x, selected, branch, branch_names,
                                      self.positions.stage_ratios(selected, stage_ids))
        return tensors, stats

    def corrupt(self, clean, selected, generator):
        """(x (N, T), branch (N, T) with -1 outside `selected`, branch names) for the picked positions."""
        mask_id = self.vocab['mask_token_id']
        if self.positions.staged:
            branch = selected.to(torch.int8) - 1  # 0 ('mask') where selected, -1 elsewhere
            return clean.masked_fill(selected, mask_id), branch, STAGE_BRANCH_NAMES
        branch = masking.bert_branches(selected, generator)  # (N, T) int8: -1 / mask / random / keep
        x = masking.apply_bert_branches(clean, branch, mask_id, len(self.vocab['chars']), generator)
        return x, branch, BERT_BRANCH_NAMES

    def summary_line(self, stats):
        return corruption.mask_ratio_summary(stats, self.log_prefix())


Provider = CharDiffusionProvider
