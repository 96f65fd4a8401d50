"""The sequential stage curriculum: the switching rule on made-up loss sequences, its state in
checkpoints, curriculum.json between trainer and producer, the queue checks, and train.py end to end
(a switch in the log and in the batch files, and a resume that keeps the stage)."""
import json
import math
import re
import signal

import pytest
import torch

import queue_io
from common import UserError
from configurator import Config
from curriculum import (DEFAULT_STALE_COUNT, RunCurriculum, StageCurriculum, check_queue_schedule, stale_counts,
                        start_curriculum)
from test_prepare import start_producer, wait_until
from test_providers import make_file, make_provider
from test_train import data_args, train_args
from conftest import run_main, stop_process_group

# (validation loss, the stage after it was observed) with val_loss_stale_count 2, 3, 1
SEQUENCE = [
    (5.0, 0), (4.0, 0), (4.5, 0), (3.9, 0), (4.0, 0), (4.0, 1),   # stage 0: 2 evaluations without a better loss
    (4.2, 1), (4.3, 1), (4.1, 1), (4.1, 1), (4.2, 1), (4.15, 2),  # stage 1: a fresh best; equal is not better
    (4.0, 2), (4.5, 2), (4.5, 2), (4.5, 2), (float('nan'), 2),    # the last stage stays
]


def test_stages_advance_after_their_own_count_of_stale_evaluations():
    curriculum = StageCurriculum([2, 3, 1])
    for evaluation, (loss, stage) in enumerate(SEQUENCE):
        switched = curriculum.observe(loss, iter_num=10 * evaluation)
        assert curriculum.stage == stage, (evaluation, loss)
        assert switched == (evaluation in (5, 11))
    assert curriculum.switches == [{'iter': 50, 'from': 0, 'to': 1}, {'iter': 110, 'from': 1, 'to': 2}]


def test_a_nan_loss_counts_as_stale():
    curriculum = StageCurriculum([1, 1])
    curriculum.observe(3.0, 0)
    assert curriculum.observe(float('nan'), 1) and curriculum.stage == 1


def test_a_restored_state_continues_exactly():
    whole = StageCurriculum([2, 3, 1])
    for evaluation, (loss, _) in enumerate(SEQUENCE):
        whole.observe(loss, evaluation)
    first = StageCurriculum([2, 3, 1])
    for evaluation, (loss, _) in enumerate(SEQUENCE[:8]):
        first.observe(loss, evaluation)
    state = first.state_dict()
    assert state['stage'] == 1 and state['stale'] == 1 and state['best'] == 4.2
    second = StageCurriculum([2, 3, 1])
    second.load_state_dict(state)
    for evaluation, (loss, _) in enumerate(SEQUENCE[8:], start=8):
        second.observe(loss, evaluation)
    assert second.state_dict() == whole.state_dict()


def test_a_state_past_the_end_of_a_shorter_list_continues_at_the_last_stage():
    curriculum = StageCurriculum([1, 1])
    curriculum.load_state_dict(dict(stage=4, best=math.inf, stale=0, switches=[]))
    assert curriculum.stage == 1


def test_stale_count_defaults_to_five():
    assert DEFAULT_STALE_COUNT == 5
    assert stale_counts([{'type': 'uniform'}, {'type': 'uniform', 'val_loss_stale_count': 2}]) == [5, 2]


STAGES = [{'type': 'random', 'max_masked_ratio': 0.3, 'val_loss_stale_count': 1},
          {'type': 'uniform', 'val_loss_stale_count': 1}]


def test_the_master_tells_the_producers_through_curriculum_json(tmp_path, tiny_corpus):
    provider = make_provider('char_diffusion', tiny_corpus, tmp_path, f'--unmasking_stages={STAGES!r}')
    data_dir = str(tmp_path / 'q')
    assert provider.positions.schedule == 'curriculum'
    worker = RunCurriculum(STAGES, data_dir, 'run', master=False)
    master = RunCurriculum(STAGES, data_dir, 'run', master=True)
    for curriculum in (worker, master):
        curriculum.evaluation(3.0, 0)
        assert curriculum.evaluation(3.0, 2)  # both ranks switch; only the master writes
    state = queue_io.read_curriculum_state(data_dir)
    assert state['stage'] == 1 and state['iter'] == 2 and state['stage_dict'] == STAGES[1]
    tensors, _ = make_file(provider, 'train')
    assert (tensors['stage'] == 1).all()
    _, info, _ = provider.make_file('train', 0, 1, 2)
    assert info['stages'] == [1]
    val_tensors, _ = make_file(provider, 'val')  # the validation set still mixes both stages
    assert set(val_tensors['stage'].tolist()) == {0, 1}


def curriculum_config(tmp_path, **overrides):
    values = dict(unmasking_stages=STAGES, validation_stages=None, use_all_stages_for_training=False,
                  mask_probability=0.15, block_size=32, eval_only=False, init_from='scratch', out_dir=str(tmp_path / 'out'))
    return Config({**values, **overrides})


def test_start_curriculum_writes_stage_zero_before_any_producer(tmp_path):
    queue_io.write_curriculum_state(str(tmp_path), {'stage': 1})  # left by an earlier run
    curriculum = start_curriculum(curriculum_config(tmp_path), str(tmp_path), 'run', master=True)
    assert curriculum.stage == 0 and queue_io.read_curriculum_state(str(tmp_path))['stage'] == 0
    assert start_curriculum(curriculum_config(tmp_path, use_all_stages_for_training=True), str(tmp_path), 'r', True) is None
    assert start_curriculum(curriculum_config(tmp_path, eval_only=True), str(tmp_path), 'run', True) is None


def test_start_curriculum_refuses_bad_stages_in_one_line(tmp_path):
    bad = [{'type': 'uniform', 'val_loss_stale_count': -1}]
    with pytest.raises(UserError, match=r"unmasking_stages\[0\]\['val_loss_stale_count'\] must be a positive integer"):
        start_curriculum(curriculum_config(tmp_path, unmasking_stages=bad), str(tmp_path), 'run', True)


@pytest.mark.parametrize('meta,overrides,message', [
    (dict(corruption={'mode': 'stages'}, unmasking_stages=STAGES), {}, "needs a queue that makes one stage at a time"),
    (dict(corruption={'mode': 'curriculum'}, unmasking_stages=STAGES[:1]), {}, "other unmasking_stages"),
    (dict(corruption={'mode': 'curriculum'}, unmasking_stages=STAGES), dict(use_all_stages_for_training=True),
     "runs the stage curriculum .* but this run does not"),
])
def test_queue_and_run_must_agree_on_the_curriculum(tmp_path, meta, overrides, message):
    with pytest.raises(UserError, match=message):
        check_queue_schedule(meta, curriculum_config(tmp_path, **overrides), 'q')


def test_queues_that_agree_are_accepted(tmp_path):
    check_queue_schedule(dict(corruption={'mode': 'curriculum'}, unmasking_stages=list(STAGES)),
                         curriculum_config(tmp_path), 'q')
    check_queue_schedule(dict(corruption={'mode': 'bert'}), curriculum_config(tmp_path, unmasking_stages=None), 'q')


def test_train_switches_stage_and_resume_keeps_it(tiny_corpus, tmp_path):
    """Two stages with val_loss_stale_count=1 and a learning rate of 0, so the validation loss never
    improves: evaluation 0 sets the best, evaluation 2 is stale and switches to stage 1. The producer is
    started here and train.py uses it, so that it goes on after the run and leaves stage-1 files waiting
    whatever the timing (a producer train.py started is stopped with it, maybe before it wrote another)."""
    data_dir, out_dir = tmp_path / 'queue', tmp_path / 'out'
    stage_file = tmp_path / 'stages.py'
    stage_file.write_text(f"unmasking_stages = {STAGES!r}\n")
    args = train_args(tiny_corpus, data_dir, out_dir, '--learning_rate=0.0', '--min_lr=0.0',
                      '--max_backlog_files=2', '--always_save_checkpoint=True')
    producer = start_producer(['prepare.py', str(stage_file), *data_args(tiny_corpus, data_dir),
                               '--max_backlog_files=2'])
    try:
        wait_until(lambda: queue_io.live_producers(str(data_dir)), what='the producer')
        code, out = run_main([args[0], str(stage_file), *args[1:], '--max_iters=14'])
        assert code == 0, out
        assert 'using the live producer' in out
        assert 'curriculum: 2 stages one at a time, starting at stage 0/1' in out
        assert re.search(r'^curriculum: stage 0 -> 1 at iter 2 ', out, re.M), out
        assert re.search(r'^iter 2/14 .*\| stage 0/1$', out, re.M)
        assert re.search(r'^iter 14/14 .*\| stage 1/1$', out, re.M)
        assert re.search(r'^eval iter 4: val loss \S+, nelbo_bits \S+, stage_0_random', out, re.M), out
        train_dir = queue_io.split_dir(data_dir, 'train')
        wait_until(lambda: len(queue_io.ready_files(train_dir)) >= 2, what='a full backlog')
        producer.send_signal(signal.SIGTERM)
        producer_log, _ = producer.communicate(timeout=60)
    finally:
        stop_process_group(producer)
    # the producer made stage-0 files, then (once it read the switch) stage-1 files; the last ones wait in the queue
    stages_made = [int(s) for s in re.findall(r'train \d+_w000\.pt \(stage (\d)\)', producer_log)]
    assert stages_made[0] == 0 and stages_made[-1] == 1 and stages_made == sorted(stages_made), producer_log
    waiting = queue_io.ready_files(train_dir)
    assert waiting, producer_log + out
    for name in waiting:
        tensors, info = queue_io.load_batch_file(train_dir + '/' + name)
        assert info['stages'] == [1] and (tensors['stage'] == 1).all()
    assert torch.load(out_dir / 'ckpt.pt', weights_only=False)['curriculum']['stage'] == 1

    # a stale curriculum.json (say, from another run): resuming restores the checkpoint's stage and rewrites it
    # for the producers (none here: the two iterations read a waiting file)
    queue_io.write_curriculum_state(str(data_dir), {'stage': 0})
    code, out = run_main([args[0], str(stage_file), *args[1:], '--max_iters=16', '--init_from=resume',
                          '--start_producer=False'])
    assert code == 0, out
    assert 'curriculum: 2 stages one at a time, resumed at stage 1/1' in out
    assert re.search(r'^iter 15/16 .*\| stage 1/1$', out, re.M) and 'stage 0 -> 1' not in out
    assert json.loads(open(queue_io.curriculum_path(str(data_dir))).read())['stage'] == 1
