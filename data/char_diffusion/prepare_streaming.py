"""
CharDiffusionProvider: masked-language-model data for the unmasking objective.

Two ways to pick the positions a row hides:

- default: every position independently with `mask_probability`, then BERT's 80/10/10 (the
  position becomes [MASK] / a random character / stays as it is);
- stages (`use_all_stages_for_training = True`): the rows of every batch are shared out between
  the stages of `unmasking_stages` (random, sticky and span masks of chosen density) and every
  picked position becomes [MASK]. The validation set uses `validation_stages`
  (`unmasking_stages` when None). A stage composition file sets these lists:
  `composition_config = 'complex'` loads data/char_diffusion/config/complex.py.

Labels are partial: the original character where a position was picked, ignore_index elsewhere.
Subclasses (char_random_replacement) reuse `select_positions` and replace `corrupt_selected`
and `targets`.
"""

import torch

from common import UserError
from data import masking
from data import corruption
from data.corpus import IGNORE_INDEX
from prepare_streaming import DataProviderBase

BERT_BRANCH_NAMES = ('mask', 'random', 'keep')  # masking.bert_branches codes 0, 1, 2
STAGE_BRANCH_NAMES = ('mask',)


class CharDiffusionProvider(DataProviderBase):
    DEFAULTS = dict(
        mask_probability=0.15,               # share of positions picked per row, without stages
        use_all_stages_for_training=False,   # True: pick positions with the stage lists below
        unmasking_stages=None,               # list of stage dicts for train files (see docs/data.md)
        validation_stages=None,              # stage dicts for the validation set; None: unmasking_stages
        composition_config=None,             # name of a data/<dataset>/config/<name>.py that sets the stages
    )
    FINGERPRINT_EXCLUDE = ('composition_config',)  # only a file name; the stages it sets are in the fingerprint

    # -------------------------------------------------------------------------
    # config

    @property
    def stage_mode(self):
        return bool(self.cfg['use_all_stages_for_training'])

    def stages(self, split):
        if split == 'val' and self.cfg['validation_stages'] is not None:
            return self.cfg['validation_stages']
        return self.cfg['unmasking_stages']

    def check_config(self):
        if not self.stage_mode:
            p = self.cfg['mask_probability']
            if not isinstance(p, (int, float)) or not 0 < p <= 1:
                raise UserError(f"mask_probability must be in (0, 1], got {p!r}")
            return
        if not self.cfg['unmasking_stages']:
            raise UserError("use_all_stages_for_training=True needs unmasking_stages; "
                            "set composition_config='complex' (or 'example') or list the stages yourself")
        for key in ('unmasking_stages', 'validation_stages'):
            stages = self.cfg[key]
            if stages is None:
                continue
            masking.validate_stages(stages, key, self.cfg['block_size'])
            if len(stages) > self.cfg['batch_size']:
                raise UserError(f"{key} has {len(stages)} stages but batch_size={self.cfg['batch_size']}; "
                                f"every batch holds every stage, so use batch_size >= {len(stages)}")

    def data_config(self):
        values = super().data_config()
        # keys the chosen mode ignores would only make the fingerprint refuse harmless changes
        for key in (('mask_probability',) if self.stage_mode else ('unmasking_stages', 'validation_stages')):
            values.pop(key)
        return values

    def label_semantics(self, split):
        return 'partial'

    def corruption_meta(self):
        stage_lists = dict(unmasking_stages=self.stages('train') if self.stage_mode else None,
                           validation_stages=self.stages('val') if self.stage_mode else None)
        mode = dict(mode='stages') if self.stage_mode else dict(
            mode='bert', mask_probability=self.cfg['mask_probability'], bert_shares=masking.BERT_SHARES)
        return dict(label_semantics=self.label_semantics('train'),
                    val_label_semantics=self.label_semantics('val'),
                    corruption_type='masking', corruption=mode, mixture_has_mask=True, **stage_lists)

    def schema(self):
        schema = super().schema()
        if self.stage_mode:
            schema['stage'] = {'dtype': str(self.stage_dtype()).replace('torch.', ''), 'shape': ()}
        return schema

    def stage_dtype(self):
        n_stages = max(len(self.stages('train')), len(self.stages('val')))
        return torch.int8 if n_stages <= 127 else torch.int16

    # -------------------------------------------------------------------------
    # rows

    def select_positions(self, split, n_rows, generator):
        """Which positions each row corrupts: (Bool (N, T), stage index per row Long (N,) or None)."""
        T = self.cfg['block_size']
        if self.stage_mode:
            return masking.staged_masks(self.stages(split), n_rows, T, self.cfg['batch_size'], generator)
        return masking.bernoulli_mask(n_rows, T, self.cfg['mask_probability'], generator), None

    def corrupt_selected(self, split, clean, selected, generator):
        """(x (N, T), branch (N, T) with -1 outside `selected`, branch names) for the selected positions."""
        mask_id = self.vocab['mask_token_id']
        if self.stage_mode:
            branch = selected.to(torch.int8) - 1  # 0 ('mask') where selected, -1 elsewhere
            return clean.masked_fill(selected, mask_id), branch, STAGE_BRANCH_NAMES
        branch = masking.bert_branches(selected, generator)  # (N, T) int8: -1 / mask / random / keep
        x = masking.apply_bert_branches(clean, branch, mask_id, len(self.vocab['chars']), generator)
        return x, branch, BERT_BRANCH_NAMES

    def targets(self, split, clean, selected):
        return clean.masked_fill(~selected, IGNORE_INDEX)  # (N, T) partial labels

    def make_rows(self, split, clean, generator):
        selected, stage_ids = self.select_positions(split, clean.shape[0], generator)  # (N, T), (N,)
        x, branch, branch_names = self.corrupt_selected(split, clean, selected, generator)
        tensors = {'x': x, 'y': self.targets(split, clean, selected)}
        if stage_ids is not None:
            tensors['stage'] = stage_ids.to(self.stage_dtype())
        stats = dict(branches=corruption.branch_stats(clean, x, selected, branch, branch_names), stage_ratios=None)
        if self.cfg['data_stream_verbose'] and stage_ids is not None:  # shown only then: skip the cost otherwise
            stats['stage_ratios'] = stage_ratios(selected, stage_ids)
        return tensors, stats

    def summary_line(self, stats):
        line = corruption.format_mask_ratio_line(stats['branches'], self.log_prefix())
        if stats['stage_ratios'] is not None:
            line += ', stage mean ratios=' + '/'.join(f'{r:.3f}' for r in stats['stage_ratios'])
        return line


def stage_ratios(selected, stage_ids):
    """Mean share of picked positions in the rows of each stage."""
    row_ratio = selected.sum(1, dtype=torch.int32) / selected.shape[1]  # (N,); int32: bool sums to int64 are slow
    n_stages = int(stage_ids.max()) + 1
    sums = torch.zeros(n_stages).index_add_(0, stage_ids.long(), row_ratio)
    counts = torch.bincount(stage_ids.long(), minlength=n_stages).clamp(min=1)
    return (sums / counts).tolist()


Provider = CharDiffusionProvider
