"""
The GPU checklist: run it once on a machine with a GPU to know that the install works there and what
it delivers (a few minutes on one GPU):

  training    the quick config and the nanoGPT-scale config (config/train_char_diffusion.py), a few
              hundred steps each with device='cuda', dtype='auto' (bfloat16 autocast where the GPU has
              it) and fused AdamW, with compile=False and with compile=True: ms/iter, tokens/s, MFU and
              data wait as train.py prints them, and the validation loss before and after
  DDP         the quick config under `torchrun --standalone --nproc_per_node=1 train.py ...`
  sampling    sample.py with every sampler on the quick model: diffusion in its four remasking modes,
              mdlm, confidence and remdm; the edit loop on a short random-replacement model
  evaluation  evaluate.py's loss and samples sections
  round trip  the compiled run's GPU checkpoint sampled with --device=cpu and resumed on the CPU, and
              that CPU checkpoint resumed on the GPU

Each check prints one PASS or FAIL line with its figures (a FAIL line ends with the last line its
command printed); a failing check does not stop the others. A summary table ends the run, and the
exit code is 0 only when every check passed.

Without CUDA (or with --device=cpu) the same list runs on the CPU at a tiny size: a 1-layer model, a
few steps, a 20,000-character corpus taken from the start of Tiny Shakespeare (made-up text when the
corpus is not at hand), and compile=False throughout, since compiling takes minutes on a CPU. A line
then says that CUDA was not checked. The test suite runs this dry run (tests/test_gpu_check.py).

The checks run the scripts by their command lines, as a user does, in a temporary folder of their own
(out_dirs, queues, samples, one log per command; removed at the end unless --keep). One data producer
per queue (`python prepare.py <config>`) is started on first use and shared by the trainings on that
queue, which find it live and use it. On a GPU the training checks run one at a time, so that their
timings are their own; the other checks (and, in the dry run, all of them) run --jobs at a time. Every
process started here is stopped at the end, Ctrl-C included.

$ python bench/gpu_check.py                 # on CUDA when there is one, else the CPU dry run
$ python bench/gpu_check.py --device=cpu    # the CPU dry run, on any machine
$ python bench/gpu_check.py --keep          # keep the temporary folder and its logs
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402  (after the path fix, so the script runs from anywhere)

from bench.bench_train import stop_process_group, summary  # noqa: E402
from common import UserError, resolve_dtype, run_cli, user_error_line  # noqa: E402
from data.corpus import DEFAULT_CORPUS, read_corpus  # noqa: E402
from producer import wait_for_producer  # noqa: E402
from queue_io import PARENT_PID_ENV  # noqa: E402
from training_log import parse_iteration_line  # noqa: E402

CONFIGS = {'quick': 'config/train_shakespeare_char_quick.py',       # the README's main job
           'scale': 'config/train_char_diffusion.py',               # nanoGPT's baby-GPT size
           'edit': 'config/train_char_random_replacement_targets_full.py'}  # a model for the edit loop
EVAL_LINE = re.compile(r'^eval iter (\d+): val loss ([^\s,]+)', re.MULTILINE)
NUM_SAMPLES = 4
TINY_CORPUS_CHARS = 20_000


@dataclass(frozen=True)
class Size:
    """How big and how long the checks run: the configs as they are on a GPU, a tiny copy on the CPU."""
    device: str               # 'cuda' | 'cpu'
    train_iters: int          # each run of the quick and the nanoGPT-scale config
    short_iters: int          # the torchrun run and the edit model
    resume_iters: int         # each resumed run
    log_interval: int
    warmup: int               # iterations left out of the speed figures (start-up, compiling)
    compiles: bool            # whether compile=True is passed on (False: compiling takes minutes on a CPU)
    timed_alone: bool         # training runs one check at a time, so that its timings are its own
    eval_iters: int           # validation batches per evaluation (the producer writes this many)
    timeout: float            # seconds a command may take
    threads: int = 0          # torch threads per command (OMP_NUM_THREADS); 0: torch's default
    model: tuple = ()         # train.py overrides that shrink the model
    data: tuple = ()          # overrides that shrink the batches, for prepare.py and train.py alike
    sample: tuple = ()        # sample.py overrides
    evaluate: tuple = ()      # evaluate.py overrides


GPU = Size('cuda', train_iters=300, short_iters=100, resume_iters=20, log_interval=10, warmup=50, compiles=True,
           timed_alone=True, eval_iters=20, timeout=300)
# tiny: every command is mostly Python and torch starting up, so the trainings too run side by side
TINY = Size('cpu', train_iters=6, short_iters=4, resume_iters=2, log_interval=1, warmup=2, compiles=False,
            timed_alone=False, eval_iters=2, timeout=240, threads=1,  # more threads only spin at this size
            model=('--n_layer=1', '--n_head=2', '--n_embd=32', '--warmup_iters=2', '--dropout=0.0'),
            data=('--block_size=32', '--batch_size=10', '--batches_per_file=4'),
            sample=('--diffusion_iterations=4', '--max_iterations=4'),
            evaluate=('--num_samples=2', '--forward_budget=8', '--elbo_draws=1'))


class CheckFailed(Exception):
    """A check that did not pass: the message says what was wrong."""


# -----------------------------------------------------------------------------
# the commands, their logs and the producers they share


class Checklist:
    """Where the checks run: the size, the temporary folder, one log per command, the shared producers."""

    def __init__(self, size, folder):
        self.size, self.folder = size, folder
        self.corpus = None  # the input_file every run reads (set by check_corpus)
        self.producers, self.producer_locks = {}, {queue: threading.Lock() for queue in CONFIGS}
        self.running = set()  # the commands running now (several in a side-by-side phase)
        self.env = dict(os.environ, PYTHONUNBUFFERED='1', TQDM_DISABLE='1', WANDB_MODE='offline')
        if size.threads:
            self.env['OMP_NUM_THREADS'] = str(size.threads)
        os.makedirs(self.path('logs'))

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def out_dir(self, name):
        return self.path('out', name)

    def start(self, args, log_path, **env):
        """`python args...` in the repo root, in a process group of its own, its output into log_path."""
        with open(log_path, 'ab') as log:  # the child holds its own copy of the file
            return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(self.env, **env), start_new_session=True)

    def run(self, name, args):
        """Run `python args...` to its end; returns (output, seconds). A non-zero exit or a timeout is a
        CheckFailed with the last line of the output."""
        log_path = self.path('logs', f'{name}.log')
        t0 = time.time()
        proc, timed_out = self.start(args, log_path), False
        self.running.add(proc)
        try:
            proc.wait(timeout=self.size.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            stop_process_group(proc)  # it, and anything it started
            self.running.discard(proc)
        seconds = time.time() - t0
        with open(log_path, encoding='utf-8', errors='replace') as f:
            output = f.read()
        if timed_out:
            raise CheckFailed(f"stopped after {self.size.timeout:.0f} s: {last_line(output)}")
        if proc.returncode != 0:
            raise CheckFailed(f"exit code {proc.returncode}: {last_line(output)}")
        return output, seconds

    def queue_args(self, queue):
        """--data_dir and the data settings of a shared queue; its producer is started on first use."""
        data_dir = self.path('queue', queue)
        args = [f'--data_dir={data_dir}', f'--input_file={self.corpus}', f'--eval_iters={self.size.eval_iters}',
                *self.size.data]
        with self.producer_locks[queue]:
            if queue not in self.producers:
                self.producers[queue] = self.start_producer(queue, data_dir, args)
        return args

    def start_producer(self, queue, data_dir, args):
        log_path = self.path('logs', f'producer-{queue}.log')
        # the orphan guard: the producer leaves when this process is gone, even after a SIGKILL
        proc = self.start(['prepare.py', CONFIGS[queue], *args], log_path, **{PARENT_PID_ENV: str(os.getpid())})
        try:
            wait_for_producer(proc, data_dir, log_path, timeout=self.size.timeout)
        except BaseException:
            stop_process_group(proc)
            raise
        return proc

    def stop_running(self):
        """Stop the commands still running (after Ctrl-C in a side-by-side phase), so their checks end."""
        for proc in list(self.running):
            stop_process_group(proc)

    def close(self):
        self.stop_running()
        for proc in self.producers.values():  # all at once: each finishes its file, then leaves
            proc.terminate()
        for proc in self.producers.values():
            stop_process_group(proc)

    def train_args(self, queue, out_dir, max_iters, device=None, compile_=False):
        """train.py's arguments for a run of CONFIGS[queue] on the shared queue, at this size."""
        return [CONFIGS[queue], *self.queue_args(queue), *self.size.model, f'--out_dir={out_dir}',
                f'--max_iters={max_iters}', '--eval_interval=1000000', f'--log_interval={self.size.log_interval}',
                f'--device={device or self.size.device}', '--dtype=auto', f'--compile={compile_}', '--wandb_log=False']


def last_line(output):
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else '(no output)'


# -----------------------------------------------------------------------------
# what the scripts print, read back


def speed_figures(output, warmup):
    """ms/iter, tokens/s, MFU and data wait over the iteration lines past `warmup`, as train.py printed them."""
    steps = [step for step in map(parse_iteration_line, output.splitlines()) if step and step['iter'] > warmup]
    if not steps:
        raise CheckFailed(f"no iteration line past iteration {warmup} in train.py's output")
    figures = summary(steps)
    mfu = f"{100 * figures['mfu']:.1f}%" if figures['mfu'] is not None else '- (CUDA only)'
    return (f"{figures['ms']:.1f} ms/iter | {figures['tokens_per_sec']:,.0f} tok/s | MFU {mfu} | "
            f"data wait {100 * figures['data_wait']:.1f}%")


def val_losses(output):
    """The validation losses of train.py's evaluation lines, in order; every one must be a number."""
    losses = [float(loss) for _, loss in EVAL_LINE.findall(output)]
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise CheckFailed(f"validation losses {losses}: expected finite numbers")
    return losses


def require_checkpoint(out_dir, iter_num):
    name = f'ckpt_unmasking_{iter_num}.pt'
    if not os.path.exists(os.path.join(out_dir, name)):
        raise CheckFailed(f"no {name} in {out_dir}")


def read_samples(path, sampler, mode=None):
    """The JSON lines sample.py wrote: NUM_SAMPLES non-empty texts from the sampler (and mode) asked for."""
    with open(path, encoding='utf-8') as f:
        rows = [json.loads(line) for line in f]
    if len(rows) != NUM_SAMPLES or not all(row['text'] for row in rows):
        raise CheckFailed(f"{len(rows)} samples in {path} (empty ones included), expected {NUM_SAMPLES}")
    used = {(row['sampler'], row['mode']) for row in rows}
    if used != {(sampler, mode)}:
        raise CheckFailed(f"asked for sampler={sampler!r} mode={mode!r}, sample.py ran {sorted(used)}")
    return rows


# -----------------------------------------------------------------------------
# the checks: each returns its figures as text, or raises CheckFailed


def check_corpus(checklist):
    """The corpus every run reads: Tiny Shakespeare on the GPU (downloaded when missing), its start on the CPU."""
    if checklist.size.device == 'cuda':
        text, checklist.corpus = read_corpus(DEFAULT_CORPUS), DEFAULT_CORPUS
        return f"{len(text):,} characters, {len(set(text))} distinct: {os.path.relpath(DEFAULT_CORPUS, REPO_ROOT)}"
    at_hand = os.path.exists(DEFAULT_CORPUS)  # no download for a dry run
    text = read_corpus(DEFAULT_CORPUS)[:TINY_CORPUS_CHARS] if at_hand else made_up_text(TINY_CORPUS_CHARS)
    checklist.corpus = checklist.path('input.txt')
    with open(checklist.corpus, 'w', encoding='utf-8') as f:
        f.write(text)
    source = 'the start of Tiny Shakespeare' if at_hand else 'made-up text (no Tiny Shakespeare here)'
    return f"{len(text):,} characters, {len(set(text))} distinct: {source}"


def made_up_text(n_chars, seed=0):
    """Shakespeare-flavoured lines in a seeded random order: enough text to train and sample at tiny size."""
    speakers = ['CITIZEN', 'MENENIUS', 'ROMEO', 'JULIET', 'KING']
    lines = ["Before we proceed any further, hear me speak.", "What work's, my countrymen, in hand?",
             "O, swear not by the moon, the inconstant moon.", "Speak, speak; we are resolved rather to die.",
             "Now is the winter of our discontent made glorious summer.", "You are all resolved rather to famish?"]
    rng, parts = random.Random(seed), []
    while sum(map(len, parts)) < n_chars:
        parts.append(f"{rng.choice(speakers)}:\n{rng.choice(lines)}\n\n")
    return ''.join(parts)[:n_chars]


def check_training(checklist, queue, compile_):
    """A run of CONFIGS[queue] on this device: it must learn (the val loss falls) and use fused AdamW on CUDA."""
    size = checklist.size
    compiles = compile_ and size.compiles
    out_dir = checklist.out_dir(f'{queue}-compile-{compile_}')
    output, _ = checklist.run(f'train-{queue}-compile-{compile_}', [
        'train.py', *checklist.train_args(queue, out_dir, size.train_iters, compile_=compiles)])
    require_checkpoint(out_dir, size.train_iters)
    losses = val_losses(output)
    if not losses[-1] < losses[0]:
        raise CheckFailed(f"the val loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}")
    if size.device == 'cuda' and 'fused AdamW on' not in output:
        raise CheckFailed("train.py did not use fused AdamW on CUDA")
    note = '' if compiles == compile_ else ' | ran with compile=False (compiling takes minutes on a CPU)'
    return f"{speed_figures(output, size.warmup)} | val loss {losses[0]:.3f} -> {losses[-1]:.3f}{note}"


def check_torchrun(checklist):
    """The quick config in a one-process DDP group, as `torchrun --standalone --nproc_per_node=1` starts it."""
    size, out_dir = checklist.size, checklist.out_dir('quick-ddp')
    output, _ = checklist.run('torchrun', ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
                                           'train.py', *checklist.train_args('quick', out_dir, size.short_iters)])
    require_checkpoint(out_dir, size.short_iters)  # torchrun sets RANK: train.py ran as a DDP group of one
    warmup = min(size.warmup, size.short_iters // 2)
    return f"{speed_figures(output, warmup)} | val loss {val_losses(output)[-1]:.3f} after {size.short_iters} iters"


def check_edit_model(checklist):
    """A short random-replacement run: the model the edit loop samples with."""
    size, out_dir = checklist.size, checklist.out_dir('edit')
    output, _ = checklist.run('train-edit', ['train.py', *checklist.train_args('edit', out_dir, size.short_iters)])
    require_checkpoint(out_dir, size.short_iters)
    losses = val_losses(output)
    warmup = min(size.warmup, size.short_iters // 2)
    return f"{speed_figures(output, warmup)} | val loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def sample(checklist, name, out_dir, sampler, *flags, mode=None, device=None):
    """sample.py with `sampler` (and the flags of `mode`) on the newest checkpoint in out_dir."""
    output_file = checklist.path('samples', f'{name}.jsonl')
    _, seconds = checklist.run(name, ['sample.py', f'--out_dir={out_dir}', f'--sampler={sampler}', *flags,
                                      f'--num_samples={NUM_SAMPLES}', f'--output_file={output_file}',
                                      f'--device={device or checklist.size.device}', *checklist.size.sample])
    rows = read_samples(output_file, sampler, mode)
    mean_length = sum(len(row['text']) for row in rows) / len(rows)
    return (f"{len(rows)} samples of {mean_length:.0f} chars, {rows[0]['forward_passes_per_sample']} forward passes "
            f"each | {seconds:.1f} s with start-up")


DIFFUSION_MODES = {  # sample.py's flags for each remasking mode of the diffusion sampler (docs/sampling.md)
    'random': (),
    'intelligent': ('--use_intelligent_remasking=True',),
    'threshold': ('--use_intelligent_remasking=True', '--remasking_confidence_threshold=0.5'),
    'mixed': ('--use_intelligent_remasking=True', '--use_mixed_remasking=True',
              '--remasking_confidence_threshold=0.5'),
}


def check_diffusion(checklist, mode):
    """The diffusion sampler in one remasking mode, on the quick model."""
    return sample(checklist, f'sample-diffusion-{mode}', checklist.out_dir('quick-compile-False'), 'diffusion',
                  *DIFFUSION_MODES[mode], mode=mode)


def check_field_sampler(checklist, sampler):
    """One of the field's samplers (mdlm, confidence, remdm), on the quick model."""
    return sample(checklist, f'sample-{sampler}', checklist.out_dir('quick-compile-False'), sampler)


def check_edit_loop(checklist):
    return sample(checklist, 'sample-edit', checklist.out_dir('edit'), 'edit')


def check_evaluate(checklist):
    """evaluate.py's loss and samples sections on the quick model."""
    report_file = checklist.path('evaluate.json')
    _, seconds = checklist.run('evaluate', [
        'evaluate.py', f'--out_dir={checklist.out_dir("quick-compile-False")}', '--sections=loss,samples',
        '--reference_checkpoint_name=None', f'--output_file={report_file}', f'--device={checklist.size.device}',
        *checklist.size.evaluate])
    with open(report_file, encoding='utf-8') as f:
        report = json.load(f)
    elbo, modes = report['loss']['elbo'], report['samples']['modes']
    if not math.isfinite(elbo['bits_per_char']) or not all(m['texts'] for m in modes.values()):
        raise CheckFailed(f"NELBO {elbo['bits_per_char']}, samples from {[k for k, m in modes.items() if m['texts']]}")
    return (f"NELBO {elbo['bits_per_char']:.3f} ± {elbo['se']:.3f} bits/char | samples from {len(modes)} samplers "
            f"and modes | {seconds:.1f} s")


def check_checkpoint_on_cpu(checklist):
    """The compiled run's checkpoint, written on this device, sampled with --device=cpu."""
    return sample(checklist, 'sample-on-cpu', checklist.out_dir('quick-compile-True'), 'confidence', device='cpu')


def resume(checklist, name, out_dir, start, device):
    """train.py --init_from=resume on `device` from out_dir's ckpt.pt, saved at iteration `start`."""
    require_checkpoint(out_dir, start)  # else the check that writes it failed
    stop = start + checklist.size.resume_iters
    output, _ = checklist.run(name, ['train.py', *checklist.train_args('quick', out_dir, stop, device=device),
                                     '--init_from=resume'])
    if f'at iter {start} ' not in output:
        raise CheckFailed(f"train.py did not say that it resumed at iter {start}")
    require_checkpoint(out_dir, stop)
    return f"iter {start} -> {stop} on {device} | val loss {val_losses(output)[-1]:.3f}"


def check_resume_on_cpu(checklist):
    """A copy of the compiled run (its ckpt.pt written on this device) resumed on the CPU."""
    source, copy = checklist.out_dir('quick-compile-True'), checklist.out_dir('round-trip')
    require_checkpoint(source, checklist.size.train_iters)
    shutil.copytree(source, copy)
    return resume(checklist, 'resume-on-cpu', copy, checklist.size.train_iters, 'cpu')


def check_resume_back(checklist):
    """The checkpoint the CPU wrote, resumed on this device again."""
    size = checklist.size
    return resume(checklist, 'resume-back', checklist.out_dir('round-trip'), size.train_iters + size.resume_iters,
                  size.device)


# -----------------------------------------------------------------------------
# the list, and running it


@dataclass
class Phase:
    """Checks that read only what earlier phases wrote, run up to --jobs at a time; one at a time when
    `timed` and the size says so (training on a GPU: its timings must be its own)."""
    timed: bool
    checks: list  # [(name, function of the Checklist)]


PHASES = [
    Phase(False, [('corpus', check_corpus)]),
    Phase(True, [  # training
        ('train quick, compile=False', partial(check_training, queue='quick', compile_=False)),
        ('train quick, compile=True', partial(check_training, queue='quick', compile_=True)),
        ('train nanoGPT-scale, compile=False', partial(check_training, queue='scale', compile_=False)),
        ('train nanoGPT-scale, compile=True', partial(check_training, queue='scale', compile_=True)),
        ('torchrun DDP, 1 process', check_torchrun),
        ('train random-replacement model', check_edit_model),
    ]),
    Phase(False, [  # sampling, evaluation, and the first half of the round trip
        *[(f'sample diffusion, {mode}', partial(check_diffusion, mode=mode)) for mode in DIFFUSION_MODES],
        *[(f'sample {sampler}', partial(check_field_sampler, sampler=sampler))
          for sampler in ('mdlm', 'confidence', 'remdm')],
        ('sample edit loop', check_edit_loop),
        ('evaluate loss,samples', check_evaluate),
        ('checkpoint -> CPU: sample', check_checkpoint_on_cpu),
        ('checkpoint -> CPU: resume', check_resume_on_cpu),
    ]),
    Phase(False, [('CPU checkpoint -> back: resume', check_resume_back)]),
]


@dataclass
class Outcome:
    name: str
    passed: bool
    figures: str  # or, for a FAIL, what went wrong
    seconds: float


def run_check(checklist, name, check):
    """One check, whatever happens in it: a FAIL stops nothing else."""
    t0 = time.time()
    try:
        figures, passed = check(checklist), True
    except CheckFailed as e:
        figures, passed = str(e), False
    except Exception as e:  # a refused setting, a bug: the other checks still run
        figures, passed = user_error_line(e) or f"{type(e).__name__}: {e}", False
    outcome = Outcome(name, passed, figures, time.time() - t0)
    print(f"{'PASS' if passed else 'FAIL'}  {name:<34} {outcome.seconds:6.1f} s  {figures}", flush=True)
    return outcome


def run_phase(checklist, phase, jobs):
    if (phase.timed and checklist.size.timed_alone) or jobs == 1 or len(phase.checks) == 1:
        return [run_check(checklist, name, check) for name, check in phase.checks]
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return list(pool.map(lambda named: run_check(checklist, *named), phase.checks))
    finally:  # after Ctrl-C: stop what runs, so that the threads waiting on it end
        checklist.stop_running()
        pool.shutdown(cancel_futures=True)


def print_summary(outcomes):
    print(f"\n{'check':<34} {'result':<7} {'seconds':>8}  figures")
    for o in outcomes:
        print(f"{o.name:<34} {'PASS' if o.passed else 'FAIL':<7} {o.seconds:8.1f}  {o.figures}")
    failed = [o.name for o in outcomes if not o.passed]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ''))


def describe_machine(size):
    """The first line: what runs the checks."""
    if size.device == 'cuda':
        major, minor = torch.cuda.get_device_capability()
        return (f"device: {torch.cuda.get_device_name()} (compute capability {major}.{minor}), torch "
                f"{torch.__version__}, CUDA {torch.version.cuda}; dtype='auto' is {resolve_dtype('auto', 'cuda')}")
    return f"device: cpu, torch {torch.__version__}: the dry run at tiny size (1-layer model, a few steps)"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                        help="'auto': CUDA when available, else the CPU dry run")
    parser.add_argument('--jobs', type=int, default=min(4, os.cpu_count() or 1),
                        help='checks run at once (training on a GPU always runs alone)')
    parser.add_argument('--keep', action='store_true', help='keep the temporary folder (out_dirs, queues, logs)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error('--jobs must be at least 1')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise UserError("--device=cuda, but torch sees no CUDA device here (torch.cuda.is_available() is False)")
    return args


def main(argv):
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    on_gpu = args.device != 'cpu' and torch.cuda.is_available()
    size = GPU if on_gpu else TINY
    folder = tempfile.mkdtemp(prefix='gpu_check_')
    print(describe_machine(size))
    print(f"folder: {folder}" + (" (kept)" if args.keep else " (removed at the end; --keep keeps it)"), flush=True)
    checklist, outcomes = Checklist(size, folder), []
    try:
        for phase in PHASES:
            outcomes += run_phase(checklist, phase, args.jobs)
    finally:
        checklist.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print_summary(outcomes)
    if not args.keep and not all(o.passed for o in outcomes):
        print("every command's output is in a log of its own: rerun with --keep to read them")
    if not on_gpu:
        why = "--device=cpu" if args.device == 'cpu' else "torch.cuda.is_available() is False"
        print(f"CUDA was not checked ({why}): this was the CPU dry run at tiny size, with compile=False throughout")
    sys.exit(0 if all(o.passed for o in outcomes) else 1)


if __name__ == '__main__':
    run_cli(main)  # Ctrl-C: one line, exit 130
