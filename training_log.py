"""
What a training run reports, on the master process: a line every log_interval iterations, a line
per evaluation, and the same figures to wandb when it is asked for.

    iter 400/800 | loss 2.5235 | lr 1.20e-03 | 369.3 ms/iter | 11,092 tok/s | data wait 0.0% | eta 2m26s
    eval iter 400: val loss 2.5832, nelbo_bits 3.2954, stage_0_random 2.0314, stage_1_random 2.7095 (best 2.5832)

With the stage curriculum (curriculum.py) both lines end with the stage (`| stage 1/2`: index / last
index), and a switch gets a line of its own:

    curriculum: stage 0 -> 1 at iter 2000 (val loss not better for 6 evaluations); ...

The iteration line is read back by bench/bench_train.py (`parse_iteration_line`, next to the code
that writes it); docs/training.md says what each figure means.
"""

import re

from common import print0
from producer import ProducerWarnings

ITERATION_LINE = re.compile(r'^iter (?P<iter>\d+)/\d+ \| loss \S+ \| lr \S+ \| (?P<ms>[\d.]+) ms/iter \| '
                            r'(?P<tok_s>[\d,]+) tok/s(?: \| mfu (?P<mfu>[\d.]+)%)? \| data wait (?P<wait>[\d.]+)%')


def start_wandb(cfg, run_id):
    """A wandb run (imported only when asked for) whose id is the run id, so a resumed run continues
    it; WANDB_MODE=offline works."""
    import wandb
    name = f"{cfg.wandb_run_name}_{cfg.training_type}"
    if cfg.training_type == 'remasking':
        name += f"_{cfg.remasking_loss_type}"
    return wandb.init(project=cfg.wandb_project, name=name, config=dict(cfg, run_id=run_id),
                      dir=cfg.out_dir, id=run_id, resume='allow')


def format_seconds(seconds):
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class TrainingLog:
    """The iteration line (loss, ms/iter, tokens/s, MFU with `mfu_model`, data-wait share: averages over
    the iterations since the previous line, and an ETA) and the evaluation line, printed and sent to
    `wandb_run` (None: not); with each, any new warning of the queue's producers (printed once)."""

    def __init__(self, cfg, consumer, tokens_per_iter, mfu_model=None, wandb_run=None, curriculum=None):
        self.cfg, self.consumer, self.tokens_per_iter = cfg, consumer, tokens_per_iter
        self.mfu_model, self.wandb_run, self.curriculum = mfu_model, wandb_run, curriculum
        self.mean_dt = None  # smoothed seconds per iteration, for the ETA
        self.steps, self.wait_start = [], consumer.wait_seconds  # (seconds, loss) since the previous line
        self.producer_warnings = ProducerWarnings(consumer.data_dir)

    def add_step(self, dt, loss):
        self.steps.append((dt, loss))
        self.mean_dt = dt if self.mean_dt is None else 0.9 * self.mean_dt + 0.1 * dt

    def iteration(self, iter_num, lr):
        """The iteration line for the steps added since the previous one."""
        seconds = sum(dt for dt, _ in self.steps)
        dt, loss = seconds / len(self.steps), sum(step_loss for _, step_loss in self.steps) / len(self.steps)
        wait = (self.consumer.wait_seconds - self.wait_start) / seconds if seconds > 0 else 0.0
        self.steps, self.wait_start = [], self.consumer.wait_seconds
        record = {'train/loss': loss, 'lr': lr, 'ms_per_iter': dt * 1000,
                  'tokens_per_sec': self.tokens_per_iter / dt, 'data_wait': wait}
        mfu_text = ''
        if self.mfu_model is not None:
            record['mfu'] = self.mfu_model.estimate_mfu(self.cfg.batch_size * self.cfg.gradient_accumulation_steps, dt)
            mfu_text = f" | mfu {record['mfu'] * 100:.1f}%"
        eta = format_seconds((self.cfg.max_iters - iter_num) * self.mean_dt)
        print0(f"iter {iter_num}/{self.cfg.max_iters} | loss {loss:.4f} | lr {lr:.2e} | "
               f"{dt * 1000:.1f} ms/iter | {record['tokens_per_sec']:,.0f} tok/s{mfu_text} | "
               f"data wait {wait * 100:.1f}% | eta {eta}{self.stage_text(record)}")
        self.producer_warnings.check()
        self.to_wandb(record, iter_num)

    def evaluation(self, iter_num, lr, losses, best_val_loss):
        """The evaluation line: `losses` as objectives.validation_loss gives them (and val/nelbo_bits)."""
        record = {'iter': iter_num, 'lr': lr, **losses}
        stage_text = ''.join(f", {k[4:]} {v:.4f}" for k, v in losses.items() if k != 'val/loss')
        print0(f"eval iter {iter_num}: val loss {losses['val/loss']:.4f}{stage_text} (best {best_val_loss:.4f})"
               f"{self.stage_text(record)}")
        self.to_wandb(record, iter_num)

    def stage_text(self, record):
        """' | stage i/last' for a line of a curriculum run ('' otherwise); adds the stage to `record`."""
        if self.curriculum is None:
            return ''
        record['curriculum/stage'] = self.curriculum.stage
        return f" | stage {self.curriculum.stage}/{self.curriculum.n_stages - 1}"

    def stage_switch(self):
        """The line (and wandb record) of the curriculum's latest switch."""
        switch = self.curriculum.switches[-1]
        stale = self.curriculum.stale_counts[switch['from']]
        print0(f"curriculum: stage {switch['from']} -> {switch['to']} at iter {switch['iter']} (val loss not better "
               f"for {stale} evaluation{'s' * (stale != 1)}); train files of stage {switch['to']} "
               f"follow those already queued: {self.curriculum.stages[switch['to']]}")
        self.to_wandb({'curriculum/stage': switch['to'], 'curriculum/switch': switch['to']}, switch['iter'])

    def to_wandb(self, record, iter_num):
        if self.wandb_run is not None:
            self.wandb_run.log(record, step=iter_num)

    def finish(self):
        if self.wandb_run is not None:
            self.wandb_run.finish()


def parse_iteration_line(line):
    """{'iter', 'seconds', 'tokens_per_sec', 'data_wait', 'mfu'} from an iteration line, as rounded
    there (data_wait and mfu as fractions, mfu None off CUDA), else None."""
    match = ITERATION_LINE.match(line)
    if match is None:
        return None
    mfu = match.group('mfu')
    return dict(iter=int(match.group('iter')), seconds=float(match.group('ms')) / 1000,
                tokens_per_sec=float(match.group('tok_s').replace(',', '')),
                data_wait=float(match.group('wait')) / 100, mfu=float(mfu) / 100 if mfu is not None else None)
