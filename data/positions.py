"""
Which positions of each row a provider corrupts, shared by every provider.

Two ways, chosen by `use_all_stages_for_training`:

- default: every position independently with `mask_probability`;
- stages: the rows of every batch are shared out between the stage dicts of `unmasking_stages`
  (random, sticky and span masks of chosen density; the validation set uses `validation_stages`,
  or `unmasking_stages` when None), and every file stores the stage of each row (`stage`).
  A stage composition file (`composition_config = 'complex'`, data/compositions/) sets these lists.

A provider keeps one `PositionPicker` (built from its config) and asks it for the picked positions,
the `stage` tensor and schema entry, the stage meta and the per-stage ratios of the verbose log
line. The masks themselves are the kernels of data/masking.py.
"""

import torch

from common import UserError
from data import masking

DEFAULTS = dict(
    mask_probability=0.15,               # share of positions picked per row, without stages
    use_all_stages_for_training=False,   # True: pick positions with the stage lists below
    unmasking_stages=None,               # list of stage dicts for train files (see docs/data.md)
    validation_stages=None,              # stage dicts for the validation set; None: unmasking_stages
    composition_config=None,             # name of a data/compositions/<name>.py that sets the stages
)
FINGERPRINT_EXCLUDE = ('composition_config',)  # only a file name; the stages it sets are in the fingerprint
STAGE_LIST_KEYS = ('unmasking_stages', 'validation_stages')


class PositionPicker:
    """The stage lists or mask_probability of a provider's config, checked once."""

    def __init__(self, cfg):
        self.staged = bool(cfg['use_all_stages_for_training'])
        self.mask_probability = cfg['mask_probability']
        self.block_size, self.batch_size = cfg['block_size'], cfg['batch_size']
        self.stage_lists = {'train': cfg['unmasking_stages'],
                            'val': cfg['unmasking_stages'] if cfg['validation_stages'] is None
                            else cfg['validation_stages']}
        # the per-stage ratios are shown only on the verbose log line: skip their cost otherwise
        self.with_stage_ratios = self.staged and bool(cfg['data_stream_verbose'])
        if self.staged:
            self.check_stages(cfg)
            self.stage_dtype = torch.int8 if max(map(len, self.stage_lists.values())) <= 127 else torch.int16
        else:
            self.check_mask_probability()

    def check_mask_probability(self):
        p = self.mask_probability
        if not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise UserError(f"mask_probability must be in (0, 1], got {p!r}")

    def check_stages(self, cfg):
        if not cfg['unmasking_stages']:
            raise UserError("use_all_stages_for_training=True needs unmasking_stages; "
                            "set composition_config='complex' (or 'example') or list the stages yourself")
        for key in STAGE_LIST_KEYS:
            stages = cfg[key]
            if stages is None:
                continue
            masking.validate_stages(stages, key, self.block_size)
            if len(stages) > self.batch_size:
                raise UserError(f"{key} has {len(stages)} stages but batch_size={self.batch_size}; "
                                f"every batch holds every stage, so use batch_size >= {len(stages)}")

    # -------------------------------------------------------------------------
    # what the queue's meta.pkl and fingerprint say

    def fingerprint_exclude(self):
        """Keys that do not shape the files: the composition's name, and the keys the mode ignores
        (they would only make the fingerprint refuse harmless changes)."""
        return FINGERPRINT_EXCLUDE + (('mask_probability',) if self.staged else STAGE_LIST_KEYS)

    def mode_meta(self):
        """The start of meta['corruption']: how positions are picked (what fills them is the provider's
        to say: char_diffusion's BERT split, a mixture's branches)."""
        if self.staged:
            return dict(mode='stages')
        return dict(mode='mask_probability', mask_probability=self.mask_probability)

    def stage_meta(self):
        """meta.pkl's stage lists in use (validation resolved), or None without stages."""
        return dict(unmasking_stages=self.stage_lists['train'] if self.staged else None,
                    validation_stages=self.stage_lists['val'] if self.staged else None)

    def schema(self):
        """The schema entry of the `stage` tensor, in stage mode."""
        if not self.staged:
            return {}
        return {'stage': {'dtype': str(self.stage_dtype).replace('torch.', ''), 'shape': ()}}

    # -------------------------------------------------------------------------
    # rows

    def pick(self, split, n_rows, generator):
        """Which positions each row corrupts: (Bool (N, T), stage index per row Long (N,) or None)."""
        if self.staged:
            return masking.staged_masks(self.stage_lists[split], n_rows, self.block_size, self.batch_size, generator)
        return masking.bernoulli_mask(n_rows, self.block_size, self.mask_probability, generator), None

    def file_tensors(self, x, y, stage_ids):
        """A batch file's tensors: x and y (N, T), and in stage mode the stage of every row (N,)."""
        tensors = {'x': x, 'y': y}
        if stage_ids is not None:
            tensors['stage'] = stage_ids.to(self.stage_dtype)
        return tensors

    def stage_ratios(self, selected, stage_ids):
        """Mean share of picked positions in the rows of each stage, or None when the log line
        does not show them."""
        if not self.with_stage_ratios:
            return None
        row_ratio = selected.sum(1, dtype=torch.int32) / selected.shape[1]  # (N,); int32: bool sums to int64 are slow
        n_stages = int(stage_ids.max()) + 1
        sums = torch.zeros(n_stages).index_add_(0, stage_ids.long(), row_ratio)
        counts = torch.bincount(stage_ids.long(), minlength=n_stages).clamp(min=1)
        return (sums / counts).tolist()
