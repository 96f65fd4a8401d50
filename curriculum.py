"""
The sequential stage curriculum, the trainer's side (data/positions.py is the producer's).

With stage lists and `use_all_stages_for_training = False`, training runs the stages of
`unmasking_stages` one at a time, in order. After every evaluation the trainer counts the
evaluations since the validation loss last improved on the best of the current stage; after that
stage's `val_loss_stale_count` of them (DEFAULT_STALE_COUNT when the stage names none) the next
stage starts, with a fresh best. The last stage stays to the end of the run.

The trainer decides and the producers follow: the master process writes the stage to the queue's
curriculum.json (atomically) when the run starts, before it starts a producer, and at every switch;
every producer reads the file before each train file, so they may be separate processes, started in
any order. Checkpoints record the curriculum (`state_dict`); resuming restores it and writes the
file again, so trainer and producers both resume at the checkpoint's stage.

Train files made before a switch and still waiting in the queue (at most max_backlog_files, plus the
one the consumer has prefetched) are read as usual: the new stage reaches training once they are
used up. The validation set is the fixed all-stage one, so losses compare across switches.

    StageCurriculum          the switching rule alone: validation losses in, stage out (no I/O)
    RunCurriculum            a StageCurriculum that writes curriculum.json (train.py's)
    start_curriculum(...)    the run's RunCurriculum, or None when the config runs no curriculum
    check_queue_schedule(...)  the queue's producer and the run must agree on the curriculum
"""

import math
import os
import time

import queue_io
from checkpoints import load_checkpoint, start_checkpoint_path
from common import UserError, print0
from data import masking, positions

DEFAULT_STALE_COUNT = 5


def stale_counts(stages):
    """Each stage's val_loss_stale_count, DEFAULT_STALE_COUNT where it names none."""
    return [stage.get(positions.STALE_COUNT_FIELD, DEFAULT_STALE_COUNT) for stage in stages]


class StageCurriculum:
    """Which stage trains now, from the sequence of validation losses alone."""

    def __init__(self, stale_counts):
        self.stale_counts = tuple(stale_counts)
        self.stage = 0
        self.best = math.inf  # the best validation loss of the current stage
        self.stale = 0        # evaluations since the current stage last improved on it
        self.switches = []    # [{'iter', 'from', 'to'}], oldest first

    @property
    def n_stages(self):
        return len(self.stale_counts)

    def observe(self, val_loss, iter_num):
        """Count one evaluation; True when it moves the curriculum on to the next stage."""
        if val_loss < self.best:  # a NaN loss never improves
            self.best, self.stale = val_loss, 0
            return False
        self.stale += 1
        if self.stage == self.n_stages - 1 or self.stale < self.stale_counts[self.stage]:
            return False
        self.switches.append({'iter': iter_num, 'from': self.stage, 'to': self.stage + 1})
        self.stage, self.best, self.stale = self.stage + 1, math.inf, 0
        return True

    def state_dict(self):
        return dict(stage=self.stage, best=self.best, stale=self.stale, switches=list(self.switches),
                    n_stages=self.n_stages)

    def load_state_dict(self, state):
        """Continue from a state_dict(); a stage past the end of this list (stages removed since)
        becomes the last one."""
        self.stage = min(int(state['stage']), self.n_stages - 1)
        self.best, self.stale = float(state['best']), int(state['stale'])
        self.switches = list(state['switches'])


class RunCurriculum(StageCurriculum):
    """The curriculum of a training run: the stages, and the curriculum.json the producers read
    (written by the master process only)."""

    def __init__(self, stages, data_dir, run_id, master):
        super().__init__(stale_counts(stages))
        self.stages, self.data_dir, self.run_id, self.master = list(stages), data_dir, run_id, master

    def publish(self, iter_num):
        if self.master:
            queue_io.write_curriculum_state(self.data_dir, dict(
                stage=self.stage, n_stages=self.n_stages, stage_dict=self.stages[self.stage], iter=iter_num,
                run_id=self.run_id, switches=self.switches, time=time.time()))

    def evaluation(self, val_loss, iter_num):
        """observe() and, on a switch, tell the producers; True on a switch."""
        switched = self.observe(val_loss, iter_num)
        if switched:
            self.publish(iter_num)
        return switched

    def describe(self):
        """Where the curriculum stands, for the log: 'stage 1/3 {...} (...)' (stage index / last index)."""
        last = self.stage == self.n_stages - 1
        pace = 'the last stage' if last else \
            f"the next after {self.stale_counts[self.stage]} evaluation{'s' * (self.stale_counts[self.stage] != 1)} " \
            f"without a better val loss"
        return f"stage {self.stage}/{self.n_stages - 1} {self.stages[self.stage]} ({pace})"


def start_curriculum(cfg, queue_dir, run_id, master):
    """The run's RunCurriculum, or None when its config mixes the stages, has none, or only evaluates.

    Prints (master) the stage keys the config sets that its schedule leaves unused. On resume the
    curriculum continues where ckpt.pt recorded it. Call it before starting a producer: the master
    writes curriculum.json here, so the first train files already come from the right stage.
    """
    if 'unmasking_stages' not in cfg:
        return None  # a provider without stage keys
    for key in positions.STAGE_LIST_KEYS:
        if cfg[key] is not None:
            masking.validate_stages(cfg[key], key, cfg.block_size)
    if master:
        for note in positions.unused_key_notes(cfg):
            print(f"warning: {note}", flush=True)
    if positions.schedule_of(cfg) != 'curriculum' or cfg.eval_only:
        return None
    curriculum = RunCurriculum(cfg.unmasking_stages, queue_dir, run_id, master)
    resuming = cfg.init_from in ('resume', 'branch')
    curriculum.publish(restore_curriculum(curriculum, cfg) if resuming else 0)
    print0(f"curriculum: {curriculum.n_stages} stages one at a time, {'resumed at' if resuming else 'starting at'} "
           f"{curriculum.describe()}; the producers read {queue_io.curriculum_path(queue_dir)}")
    return curriculum


def restore_curriculum(curriculum, cfg):
    """Load the curriculum state of the checkpoint the run starts from (out_dir/ckpt.pt, or branch_from)
    into `curriculum`; returns the checkpoint's iteration."""
    path = start_checkpoint_path(cfg.init_from, cfg.out_dir, cfg.branch_from)
    checkpoint = load_checkpoint(path)  # memory-mapped: reading two small entries is cheap
    state = checkpoint.get('curriculum')
    if state is None:
        print0(f"note: {path} records no curriculum (saved by a run without one): starting at stage 0")
    else:
        curriculum.load_state_dict(state)
        if state['stage'] != curriculum.stage:
            print0(f"note: {path} was at stage {state['stage']}, but unmasking_stages now has {curriculum.n_stages} "
                   f"stages: continuing at the last one")
    return checkpoint['iter_num']


def check_queue_schedule(meta, cfg, data_dir):
    """UserError (one line) when the queue's producer and this run disagree about the curriculum:
    otherwise one side would write a curriculum.json nobody reads, or read one nobody writes."""
    queue_curriculum = (meta.get('corruption') or {}).get('mode') == 'curriculum'
    run_curriculum = 'unmasking_stages' in cfg and positions.schedule_of(cfg) == 'curriculum'
    fix = f"make the settings match, or pass --clear_queue=True (or another data_dir) to rebuild {data_dir}"
    if queue_curriculum and not run_curriculum:
        raise UserError(f"the queue at {data_dir} runs the stage curriculum (unmasking_stages with "
                        f"use_all_stages_for_training=False) but this run does not; {fix}")
    if run_curriculum and not queue_curriculum:
        raise UserError(f"this run's stage curriculum needs a queue that makes one stage at a time, but the queue at "
                        f"{data_dir} has corruption mode {(meta.get('corruption') or {}).get('mode')!r}; {fix}")
    if run_curriculum and list(meta.get('unmasking_stages') or ()) != list(cfg.unmasking_stages):
        raise UserError(f"the queue at {data_dir} was made with other unmasking_stages than this run's curriculum; {fix}")
