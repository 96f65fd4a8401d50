"""
Which positions of each row a provider corrupts, shared by every provider.

Three schedules, chosen by `unmasking_stages` and `use_all_stages_for_training`:

- no stages (`unmasking_stages = None`): every position independently with `mask_probability`;
- mixed (`use_all_stages_for_training = True`): the rows of every batch are shared out between the
  stage dicts of `unmasking_stages` (random, sticky, span and uniform masks);
- curriculum (stages given, `use_all_stages_for_training = False`): every train file comes from one
  stage, the one the trainer chose (curriculum.py), read from the queue's curriculum.json before each
  file; none yet means stage 0.

With stages, the validation set always mixes all of `validation_stages` (or `unmasking_stages` when
None), so validation losses stay comparable across the curriculum's switches, and every file stores
the stage of each row (`stage`). A stage composition file (`composition_config = 'complex'`,
data/compositions/) sets these lists.

A provider keeps one `PositionPicker` (built from its config) and asks it for the picked positions,
the `stage` tensor and schema entry, the stage meta and the per-stage ratios of the verbose log
line. The masks themselves are the kernels of data/masking.py.
"""

import multiprocessing

import torch

import queue_io
from common import UserError
from data import masking

DEFAULTS = dict(
    mask_probability=0.15,               # share of positions picked per row, without stages
    use_all_stages_for_training=False,   # True: every batch mixes all stages; False with stages: one stage
                                         # at a time, the trainer's curriculum (see docs/data.md)
    unmasking_stages=None,               # list of stage dicts for train files (see docs/data.md)
    validation_stages=None,              # stage dicts for the validation set; None: unmasking_stages
    composition_config=None,             # name of a data/compositions/<name>.py that sets the stages
)
FINGERPRINT_EXCLUDE = ('composition_config',)  # only a file name; the stages it sets are in the fingerprint
STAGE_LIST_KEYS = ('unmasking_stages', 'validation_stages')
STALE_COUNT_FIELD = 'val_loss_stale_count'


def schedule_of(cfg):
    """'probability' (no stages), 'mixed' (all stages in every batch) or 'curriculum' (one at a time)."""
    if cfg['unmasking_stages'] is None:
        if cfg['use_all_stages_for_training']:
            raise UserError("use_all_stages_for_training=True needs unmasking_stages; "
                            "set composition_config='complex' (or 'example') or list the stages yourself")
        return 'probability'
    return 'mixed' if cfg['use_all_stages_for_training'] else 'curriculum'


def unused_key_notes(cfg):
    """One line for each position key the config sets that its schedule does not read, naming the
    setting that would read it (stage lists already validated)."""
    schedule, notes = schedule_of(cfg), []
    if schedule != 'probability' and cfg['mask_probability'] != DEFAULTS['mask_probability']:
        notes.append(f"mask_probability={cfg['mask_probability']!r} is unused: positions come from unmasking_stages; "
                     f"it applies only with unmasking_stages=None")
    if schedule == 'probability' and cfg['validation_stages'] is not None:
        notes.append("validation_stages is unused without unmasking_stages (every position is picked with "
                     "mask_probability); set unmasking_stages to use stage lists")
    if schedule == 'mixed' and _has_stale_count(cfg['unmasking_stages']):
        notes.append(f"{STALE_COUNT_FIELD} in unmasking_stages is unused: use_all_stages_for_training=True mixes "
                     f"all stages in every batch; use_all_stages_for_training=False runs them one at a time "
                     f"(the curriculum it paces)")
    if schedule != 'probability' and _has_stale_count(cfg['validation_stages']):
        notes.append(f"{STALE_COUNT_FIELD} in validation_stages is unused: the validation set always mixes all "
                     f"its stages; the curriculum reads it from unmasking_stages")
    return notes


def _has_stale_count(stages):
    return any(isinstance(s, dict) and STALE_COUNT_FIELD in s for s in stages or ())


def print_notes_once(notes):
    """Print the notes as warnings, in the main process only: prepare.py's extra workers
    (multiprocessing children) build the same provider and would repeat them."""
    if multiprocessing.parent_process() is None:
        for note in notes:
            print(f"warning: {note}", flush=True)


class PositionPicker:
    """The stage lists or mask_probability of a provider's config, checked once."""

    def __init__(self, cfg):
        self.schedule = schedule_of(cfg)
        self.staged = self.schedule != 'probability'  # stage lists pick the positions (and [MASK] fills them)
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
        if self.schedule == 'curriculum':
            self.data_dir = queue_io.dataset_dir(cfg.get('dataset'), cfg.get('data_dir'))
            self.train_stage = 0        # until the trainer's curriculum.json says otherwise
            self.reported_state = None  # the last unusable curriculum.json reported, so each is said once
        print_notes_once(unused_key_notes(cfg))

    def check_mask_probability(self):
        p = self.mask_probability
        if not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise UserError(f"mask_probability must be in (0, 1], got {p!r}")

    def check_stages(self, cfg):
        for key in STAGE_LIST_KEYS:
            if cfg[key] is not None:
                masking.validate_stages(cfg[key], key, self.block_size)
        # every batch holds every stage of a mixed list: the validation set's always, the train files'
        # unless the curriculum gives each file one stage
        mixed_lists = ['validation_stages' if cfg['validation_stages'] is not None else 'unmasking_stages']
        if self.schedule == 'mixed':
            mixed_lists.append('unmasking_stages')
        for key in dict.fromkeys(mixed_lists):
            if len(cfg[key]) > self.batch_size:
                raise UserError(f"{key} has {len(cfg[key])} stages but batch_size={self.batch_size}; "
                                f"every batch holds every stage, so use batch_size >= {len(cfg[key])}")

    # -------------------------------------------------------------------------
    # what the queue's meta.pkl and fingerprint say

    def fingerprint_exclude(self):
        """Keys that do not shape the files: the composition's name, and the keys the mode ignores
        (they would only make the fingerprint refuse harmless changes)."""
        return FINGERPRINT_EXCLUDE + (('mask_probability',) if self.staged else STAGE_LIST_KEYS)

    def mode_meta(self):
        """The start of meta['corruption']: how positions are picked ('stages': all mixed in every batch;
        'curriculum': one stage per train file, as the trainer's curriculum.json says; 'mask_probability':
        what fills the picked positions is the provider's to say, char_diffusion's BERT split or a
        mixture's branches)."""
        if self.schedule == 'curriculum':
            return dict(mode='curriculum')
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
        if self.schedule == 'curriculum' and split == 'train':
            return masking.single_stage_masks(self.stage_lists['train'], self.current_train_stage(), n_rows,
                                              self.block_size, self.batch_size, generator)
        if self.staged:
            return masking.staged_masks(self.stage_lists[split], n_rows, self.block_size, self.batch_size, generator)
        return masking.bernoulli_mask(n_rows, self.block_size, self.mask_probability, generator), None

    def current_train_stage(self):
        """The curriculum's stage for the next train file: curriculum.json as the trainer last wrote it
        (read before every file; producer and trainer may be separate processes). No file yet: stage 0.
        A stage this config does not have is said once and the last good stage kept."""
        state = queue_io.read_curriculum_state(self.data_dir)
        if state is None:
            return self.train_stage
        stage, n_stages = state.get('stage'), len(self.stage_lists['train'])
        if isinstance(stage, int) and not isinstance(stage, bool) and 0 <= stage < n_stages:
            self.train_stage = stage
        elif state != self.reported_state:
            self.reported_state = state
            print(f"warning: {queue_io.curriculum_path(self.data_dir)} asks for stage {stage!r} but unmasking_stages "
                  f"has {n_stages}; staying at stage {self.train_stage}", flush=True)
        return self.train_stage

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
