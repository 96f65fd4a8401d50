"""
Train a character-level diffusion model (unmasking, remasking, or both merged in one network) or the
autoregressive reference, reading (x, y) batches from the dataset's file-system queue.

Single process (CPU or one GPU):
$ python train.py config/train_shakespeare_char_quick.py

Several GPUs on one node (DDP):
$ torchrun --standalone --nproc_per_node=4 train.py config/train_char_diffusion.py

When no producer is filling the queue, train.py starts one (`python prepare.py <the same config>`,
see producer.py) and stops it when training ends. Every key below can be set by a config file or
`--key=value`; so can the dataset provider's keys, which are passed on to the producer. See docs/training.md.
"""

import itertools
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from checkpoints import (LATEST_NAME, fit_problem, load_checkpoint, remove_stale_temp_checkpoints, run_kind,
                         save_run_checkpoints, start_checkpoint_path, storable_problem, strip_compile_prefix)
from common import (UserError, compute_cleanup, compute_init, print0, restore_rng_state, rng_state, run_cli,
                    seed_everything)
from configurator import defaults_from, load_config
from curriculum import check_queue_schedule, start_curriculum
from dataset_consumer import DatasetConsumer, validate_meta
from model import GPT, GPTConfig
from objectives import (REMASKING_LOSS_TYPES, TRAINING_TYPES, check_loss_weighting, check_queue_fits, compute_loss,
                        model_input, validation_loss, validation_nelbo_bits)
from prepare_streaming import provider_defaults
from producer import start_producer_if_needed, stop_producer
from queue_io import atomic_json, dataset_dir
from training_log import TrainingLog, start_wandb

# -----------------------------------------------------------------------------
# default config values: a small unmasking model on Tiny Shakespeare
# I/O
out_dir = 'out'
eval_interval = 250         # evaluate (and maybe save) every this many iterations, and at the end
log_interval = 10
eval_iters = 200            # validation batches per evaluation; the producer writes this many
eval_only = False           # evaluate once and exit
always_save_checkpoint = False  # save at every evaluation, not only when val loss improves
init_from = 'scratch'       # 'scratch' | 'resume' (from out_dir/ckpt.pt) | 'branch' (from branch_from, into out_dir)
branch_from = None          # init_from='branch': the checkpoint a new run continues from in its own out_dir
                            # (a ckpt.pt, or any ckpt_<kind>_<iter>.pt of a run with lr_schedule='wsd')
keep_last_checkpoints = 0   # keep the newest N ckpt_<kind>_<iter>.pt of this run kind; 0 keeps all
trust_checkpoint_pickle = False  # True: resume from a ckpt.pt that only full unpickling opens (a file you trust)
# wandb logging
wandb_log = False
wandb_project = 'diffusion-chars'
wandb_run_name = 'run'      # '_<training_type>' (and '_<remasking_loss_type>') is appended
# data
dataset = 'char_diffusion'  # picks the provider: data/<dataset>/prepare_streaming.py
data_dir = None             # the queue folder; None means data/<dataset>/
start_producer = True       # start `python prepare.py ...` when no producer is live on the queue
data_wait_timeout = 600.0   # seconds to wait for a batch file before giving up; None waits forever
gradient_accumulation_steps = 1  # micro-steps per optimizer step, summed over all DDP ranks
batch_size = 64             # sequences per micro-step (must match the queue)
block_size = 256            # characters per sequence (must match the queue)
# model
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
bias = False
attention_type = 'bidirectional'  # 'bidirectional' for diffusion, 'causal' for autoregressive
pos_encoding = 'learned'    # 'learned' | 'rotary'
position_encoding = None    # the original project's name for pos_encoding: read as pos_encoding, with a note
# objective
training_type = 'unmasking'  # 'unmasking' | 'remasking' | 'merged' | 'autoregressive'
remasking_loss_type = 'all_positions'  # 'corrupted_only' (Approach A) | 'all_positions' (Approach B)
loss_weighting = 'mean'     # unmasking: 'mean' over masked positions | 'elbo' (1/t: the NELBO per character)
# AdamW
learning_rate = 1e-3
max_iters = 5000
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0             # clip gradient norm at this value; 0.0 disables
# learning rate schedule: linear warmup, then 'cosine' decay to min_lr at lr_decay_iters, or 'wsd'
# (warmup-stable-decay): the peak rate until decay_start, then down to min_lr at max_iters
decay_lr = True
lr_schedule = 'cosine'      # 'cosine' | 'wsd'
warmup_iters = 100
lr_decay_iters = 5000       # cosine: ~= max_iters per Chinchilla
decay_fraction = 0.2        # wsd: the last fraction of max_iters spent decaying
decay_start = None          # wsd: the iteration the decay starts at; None: max_iters * (1 - decay_fraction),
                            # or, for init_from='branch', the iteration of branch_from
min_lr = 1e-4               # ~= learning_rate / 10
# system
backend = None              # DDP backend; None picks 'nccl' on CUDA and 'gloo' on CPU
device = 'auto'             # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' ...
dtype = 'auto'              # 'auto' | 'float32' | 'bfloat16' | 'float16' (autocast; float16 uses a GradScaler)
compile = False             # torch.compile the model
seed = 1337
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())
LR_SCHEDULES = ('cosine', 'wsd')


# -----------------------------------------------------------------------------
# config


def resolve_config(argv):
    """(config, provider key names): train.py's keys plus those of the dataset's provider, which
    train.py passes on to the producer it starts.

    The dataset (from a config file or --dataset=) decides which provider keys exist, so it is
    read first from the config files alone.
    """
    provider_keys = []

    def passed_on(values):  # the provider's keys, once the config files have named the dataset
        defaults = provider_defaults(values['dataset'])
        provider_keys.extend(sorted(defaults))
        return defaults

    cfg = load_config(DEFAULTS, argv, extra_defaults=passed_on)
    read_original_names(cfg)
    check_config(cfg)
    return cfg, provider_keys


# configs written for the project the specification comes from spell two things differently
TRAINING_TYPE_SYNONYMS = {'MLM': 'unmasking'}  # its masked-language-model training is unmasking here


def read_original_names(cfg):
    """training_type='MLM' and position_encoding=... as this project's names, with one note each
    (so such a config trains what it asks for); position_encoding leaves the config."""
    if cfg.training_type in TRAINING_TYPE_SYNONYMS:
        ours = TRAINING_TYPE_SYNONYMS[cfg.training_type]
        print0(f"note: training_type={cfg.training_type!r} (masked-language-model training in the original "
               f"project) trains as training_type={ours!r}")
        cfg['training_type'] = ours
    old_name_value = cfg.pop('position_encoding')
    if old_name_value is None:
        return
    if cfg.pos_encoding not in (DEFAULTS['pos_encoding'], old_name_value):
        raise UserError(f"position_encoding={old_name_value!r} (the original project's name) and "
                        f"pos_encoding={cfg.pos_encoding!r} disagree; keep pos_encoding only")
    print0(f"note: position_encoding is the original project's name for pos_encoding: training with "
           f"pos_encoding={old_name_value!r}")
    cfg['pos_encoding'] = old_name_value


def check_config(cfg):
    if cfg.init_from not in ('scratch', 'resume', 'branch'):
        raise UserError(f"init_from={cfg.init_from!r} is unknown; use 'scratch', 'resume' or 'branch'")
    check_branch(cfg)
    check_lr_schedule(cfg)
    if cfg.training_type not in TRAINING_TYPES:
        raise UserError(f"training_type={cfg.training_type!r} is unknown; use one of {TRAINING_TYPES}")
    if cfg.remasking_loss_type not in REMASKING_LOSS_TYPES:
        raise UserError(f"remasking_loss_type={cfg.remasking_loss_type!r} is unknown; use one of {REMASKING_LOSS_TYPES}")
    check_loss_weighting(cfg.loss_weighting, cfg.training_type)
    if cfg.training_type == 'autoregressive' and cfg.attention_type != 'causal':
        raise UserError("training_type='autoregressive' needs attention_type='causal' "
                        "(see config/train_autoregressive.py)")
    for key in ('eval_interval', 'log_interval', 'gradient_accumulation_steps', 'batch_size', 'block_size'):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} must be at least 1")
    if cfg.max_iters < 0 or cfg.keep_last_checkpoints < 0:
        raise UserError("max_iters and keep_last_checkpoints must not be negative")


def check_branch(cfg):
    """init_from='branch' needs branch_from, and an out_dir of its own (the source run's stay untouched)."""
    if cfg.init_from != 'branch':
        if cfg.branch_from is not None:
            print0(f"warning: branch_from={cfg.branch_from!r} is ignored unless init_from='branch'")
        return
    if not cfg.branch_from:
        raise UserError("init_from='branch' needs branch_from=<checkpoint path> (a ckpt.pt, or a "
                        "ckpt_<kind>_<iter>.pt of a run trained with lr_schedule='wsd')")
    if os.path.abspath(os.path.dirname(cfg.branch_from)) == os.path.abspath(cfg.out_dir):
        raise UserError(f"a branch writes into an out_dir of its own: set out_dir to another folder than "
                        f"{os.path.dirname(cfg.branch_from) or '.'} (use init_from='resume' to continue that run)")


def check_lr_schedule(cfg):
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"lr_schedule={cfg.lr_schedule!r} is unknown; use one of {LR_SCHEDULES}")
    if not 0.0 < cfg.decay_fraction <= 1.0:
        raise UserError(f"decay_fraction={cfg.decay_fraction} must be in (0, 1]")
    if cfg.decay_start is not None and not 0 <= cfg.decay_start <= cfg.max_iters:
        raise UserError(f"decay_start={cfg.decay_start} must lie between 0 and max_iters={cfg.max_iters}")


# -----------------------------------------------------------------------------
# the run: its id, its saved config, where it stands


@dataclass
class RunState:
    """Where a run stands: what its checkpoints record, and what main() returns."""
    run_id: str
    model_args: dict
    tokens_per_iter: int            # over all processes and micro-steps
    iter_num: int = 0
    best_val_loss: float = float('inf')
    resumed_at: int | None = None   # the iteration a resumed run started at (evaluated before it was saved)
    branched_at: int | None = None  # the iteration of branch_from, in a branch and its resumptions
    curriculum: object = None       # the stage curriculum (curriculum.RunCurriculum), None without one


def run_id_for(cfg, compute):
    """A new id per run; a resumed run keeps the id of the run it continues. Rank 0's, on every rank."""
    run_id = uuid.uuid4().hex[:12]
    source = start_checkpoint_path(cfg.init_from, cfg.out_dir, cfg.branch_from)
    if source is not None:  # a missing checkpoint is reported here, before any waiting for data
        start = load_checkpoint(source, trust_pickle=cfg.trust_checkpoint_pickle)
        if cfg.init_from == 'resume':  # a branch is a new run
            run_id = start.get('run_id') or run_id
    if compute.ddp:
        shared = [run_id]
        dist.broadcast_object_list(shared, src=0)
        run_id = shared[0]
    return run_id


def save_run_config(cfg, run_id, argv, world_size):
    """out_dir/config_<run_id>.json: with the checkpoints, all it takes to repeat the run. Refuses now,
    not at the first save, a config that a checkpoint could not hold; removes the temporary files
    that killed runs of this kind left in out_dir (a live writer's stay)."""
    problem = storable_problem(dict(cfg), 'config')
    if problem:
        raise UserError(f"{problem}; checkpoints keep the config and hold only tensors, dicts, lists, tuples, "
                        f"strings, numbers, booleans and None (so opening one never runs code): write it as one of those")
    os.makedirs(cfg.out_dir, exist_ok=True)
    removed = remove_stale_temp_checkpoints(cfg.out_dir, run_kind(cfg.training_type, cfg.remasking_loss_type))
    if removed:
        print0(f"removed {removed} temporary file(s) that killed runs left in {cfg.out_dir}")
    path = os.path.join(cfg.out_dir, f'config_{run_id}.json')
    atomic_json(dict(cfg, run_id=run_id, argv=argv, world_size=world_size), path)
    print0(f"run {run_id}: config saved to {path}")


# -----------------------------------------------------------------------------
# data, model, optimizer


def open_queue(cfg, compute, queue_dir):
    """The consumer, after checking that the queue's meta fits this config and training type."""
    consumer = DatasetConsumer(queue_dir, cfg.batch_size, cfg.block_size, compute.device,
                               rank=compute.rank if compute.ddp else None,
                               world_size=compute.world_size if compute.ddp else None,
                               wait_timeout=cfg.data_wait_timeout, verbose=compute.master)
    try:
        validate_meta(consumer.meta, block_size=cfg.block_size, batch_size=cfg.batch_size, data_dir=queue_dir)
        check_queue_fits(consumer.meta, cfg.training_type)
        check_loss_weighting(cfg.loss_weighting, cfg.training_type, consumer.meta)
        check_queue_schedule(consumer.meta, cfg, queue_dir)
    except BaseException:
        consumer.close()
        raise
    return consumer


def model_args_from(cfg, meta):
    return dict(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                vocab_size=meta['vocab_size'], dropout=cfg.dropout, bias=cfg.bias,
                attention_type=cfg.attention_type, pos_encoding=cfg.pos_encoding)


def micro_steps_per_rank(cfg, world_size):
    """gradient_accumulation_steps counts micro-steps over all processes; each takes its share."""
    if cfg.gradient_accumulation_steps % world_size != 0:
        raise UserError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be divisible by "
                        f"the number of processes ({world_size})")
    return cfg.gradient_accumulation_steps // world_size


def load_resumable(cfg, compute, meta, model_args):
    """The checkpoint a resumed run (out_dir/ckpt.pt) or a branch (branch_from) continues from, after one
    clear line if it cannot continue under this config and queue."""
    path = start_checkpoint_path(cfg.init_from, cfg.out_dir, cfg.branch_from)
    checkpoint = load_checkpoint(path, map_location=compute.device, trust_pickle=cfg.trust_checkpoint_pickle)
    problem = fit_problem(checkpoint, model_args=model_args, stoi=meta['stoi'],
                          kind=run_kind(cfg.training_type, cfg.remasking_loss_type))
    verb = 'resume' if cfg.init_from == 'resume' else 'branch from'
    if problem:
        raise UserError(f"cannot {verb} {path}: {problem}; change the config to match or use another checkpoint")
    if 'optimizer' not in checkpoint:
        raise UserError(f"cannot {verb} {path}: it holds weights only, no optimizer state; branch from the run's "
                        f"{LATEST_NAME}, or from a checkpoint of a run trained with lr_schedule='wsd' (which keeps it in every one)")
    if checkpoint['iter_num'] >= cfg.max_iters and cfg.init_from == 'branch':
        raise UserError(f"cannot branch from {path}: it is at iter {checkpoint['iter_num']}, not before "
                        f"max_iters={cfg.max_iters}; set max_iters past it")
    return checkpoint


def build_model(cfg, compute, meta, state):
    """(model, optimizer, scaler): new, or as ckpt.pt left them when init_from='resume' (then `state`
    continues from there too)."""
    checkpoint = load_resumable(cfg, compute, meta, state.model_args) if cfg.init_from != 'scratch' else None
    model = GPT(GPTConfig(**state.model_args))
    if checkpoint is not None:
        model.load_state_dict(strip_compile_prefix(checkpoint['model']))
    model.to(compute.device)
    print0(f"model: {model.get_num_params() / 1e6:.2f}M parameters, {cfg.attention_type} attention, "
           f"vocab {meta['vocab_size']}")
    # a scaler only for float16, whose gradients would underflow; a no-op otherwise
    scaler = torch.amp.GradScaler(compute.device_type, enabled=compute.dtype == 'float16')
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                           compute.device_type)
    if checkpoint is not None:
        resume_from(checkpoint, optimizer, scaler, state, cfg, compute)
    return model, optimizer, scaler


def resume_from(checkpoint, optimizer, scaler, state, cfg, compute):
    """Continue where the checkpoint stopped: optimizer and scaler state, iteration, best loss, random
    streams; a branch starts its decay there, and its resumptions remember where that was."""
    optimizer.load_state_dict(checkpoint['optimizer'])
    scaler.load_state_dict(checkpoint['scaler'])
    state.iter_num = state.resumed_at = checkpoint['iter_num']
    state.best_val_loss = checkpoint['best_val_loss']
    state.branched_at = checkpoint['iter_num'] if cfg.init_from == 'branch' else checkpoint.get('branched_at')
    if compute.master:
        restore_rng_state(checkpoint['rng_state'])
    else:  # the checkpoint holds rank 0's state; the others continue on their own streams
        seed_everything(cfg.seed + compute.rank + state.iter_num)
    how = 'resumed from' if cfg.init_from == 'resume' else f'branched into {cfg.out_dir} from'
    print0(f"{how} {start_checkpoint_path(cfg.init_from, cfg.out_dir, cfg.branch_from)} at iter {state.iter_num} "
           f"(run {state.run_id}, best val loss {state.best_val_loss:.4f}, optimizer state loaded)")


def compile_and_wrap(model, cfg, compute):
    """(model to train, model to evaluate): compiled if asked, the first one in DDP under torchrun."""
    if cfg.compile:
        print0("compiling the model... (takes a minute)")
        model = torch.compile(model)
    eval_model = model  # evaluation runs outside DDP: ranks evaluate different batches, with no collectives
    if compute.ddp:
        model = DDP(model, device_ids=[compute.local_rank] if compute.device_type == 'cuda' else None)
    return model, eval_model


def wsd_decay_start(cfg, branched_at=None):
    """Where a 'wsd' schedule leaves its peak rate: decay_start when set, else a branch's first iteration,
    else the last decay_fraction of max_iters."""
    if cfg.decay_start is not None:
        return cfg.decay_start
    if branched_at is not None:
        return branched_at
    return round(cfg.max_iters * (1.0 - cfg.decay_fraction))


def get_lr(it, cfg, decay_start=None):
    """Linear warmup for warmup_iters, then 'cosine': cosine decay to min_lr at lr_decay_iters, min_lr
    after; or 'wsd': learning_rate until `decay_start` (see wsd_decay_start), then down to min_lr at max_iters
    along 1 - sqrt(progress), the shape that did best in Hägele et al. 2024 (arXiv:2405.18392)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if cfg.lr_schedule == 'wsd':
        decay_start = wsd_decay_start(cfg) if decay_start is None else decay_start
        progress = min(1.0, max(0, it - decay_start) / max(1, cfg.max_iters - decay_start))  # 0 -> 1
        return cfg.min_lr + (1.0 - math.sqrt(progress)) * (cfg.learning_rate - cfg.min_lr)
    if it > cfg.lr_decay_iters:
        return cfg.min_lr
    decay_ratio = (it - cfg.warmup_iters) / max(1, cfg.lr_decay_iters - cfg.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


# -----------------------------------------------------------------------------
# evaluation and checkpoints


def evaluate_and_log(model, consumer, cfg, compute, state, lr, log):
    """Validation loss over the fixed validation set, overall and per stage (and for unmasking the NELBO in
    bits per character), into `state`, the log and the curriculum; returns whether it beat the best so far."""
    batches = itertools.islice(consumer.val_batches(), cfg.eval_iters)
    losses = validation_loss(model, batches, consumer.meta, cfg.training_type, cfg.remasking_loss_type,
                             compute.autocast, compute.rank, compute.world_size)
    if cfg.training_type == 'unmasking':  # the bound itself, comparable whatever the loss_weighting and stages
        nelbo = validation_nelbo_bits(model, itertools.islice(consumer.val_batches(), cfg.eval_iters), consumer.meta,
                                      compute.autocast, compute.rank, compute.world_size)
        losses = {'val/loss': losses.pop('val/loss'), 'val/nelbo_bits': nelbo, **losses}
    improved = losses['val/loss'] < state.best_val_loss
    state.best_val_loss = min(state.best_val_loss, losses['val/loss'])
    log.evaluation(state.iter_num, lr, losses, state.best_val_loss)
    if state.curriculum is not None and state.curriculum.evaluation(losses['val/loss'], state.iter_num):
        log.stage_switch()
    return improved


def save_checkpoints(raw_model, optimizer, scaler, state, cfg, meta):
    """ckpt_<kind>_<iter>.pt and ckpt.pt (the same plus what resuming needs), then pruning: see
    checkpoints.save_run_checkpoints."""
    checkpoint = dict(model=raw_model.state_dict(), model_args=state.model_args, iter_num=state.iter_num,
                      best_val_loss=state.best_val_loss, config=dict(cfg), meta=meta,
                      training_type=cfg.training_type, remasking_loss_type=cfg.remasking_loss_type,
                      run_id=state.run_id, curriculum=state.curriculum and state.curriculum.state_dict(),
                      branched_at=state.branched_at)
    resume_state = dict(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng_state=rng_state())
    # a wsd run's checkpoints are all starting points for a branch with its own decay, so each keeps the optimizer
    name = save_run_checkpoints(checkpoint, resume_state, cfg.out_dir, cfg.keep_last_checkpoints,
                                resume_state_in_every=cfg.lr_schedule == 'wsd')
    print0(f"saved {name} and {LATEST_NAME} to {cfg.out_dir}")


# -----------------------------------------------------------------------------
# training


def train_step(model, optimizer, scaler, consumer, cfg, compute, micro_steps):
    """One optimizer step over `micro_steps` micro-batches; returns the mean loss (float)."""
    total = torch.zeros((), device=compute.device)
    for micro_step in range(micro_steps):
        if compute.ddp:
            # all-reduce gradients only on the last micro-step; the others just accumulate locally
            model.require_backward_grad_sync = micro_step == micro_steps - 1
        batch = consumer.get_batch_dict('train')
        with compute.autocast:
            logits, _ = model(model_input(batch['x'], batch['y'], cfg.training_type))  # (B, T, V)
            loss = compute_loss(logits, batch['x'], batch['y'], cfg.training_type, cfg.remasking_loss_type,
                                consumer.meta['wrong_token_id'], consumer.meta['mask_token_id'],
                                loss_weighting=cfg.loss_weighting)
            loss = loss / micro_steps  # the gradients sum over micro-steps: scale to a mean
        scaler.scale(loss).backward()
        total += loss.detach()
    if cfg.grad_clip > 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total.item()  # one device sync per step, so the step time below is the real one


def train(cfg, compute, consumer, run_id, curriculum=None):
    """The training loop, up to max_iters, evaluating and saving on the way; returns the RunState."""
    micro_steps = micro_steps_per_rank(cfg, compute.world_size)
    state = RunState(run_id, model_args_from(cfg, consumer.meta),
                     tokens_per_iter=cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size,
                     curriculum=curriculum)
    print0(f"tokens per iteration: {state.tokens_per_iter:,} ({cfg.gradient_accumulation_steps} micro-steps x "
           f"{cfg.batch_size} x {cfg.block_size}, {compute.world_size} process(es))")
    # weights are saved from raw_model: no DDP 'module.' or compile '_orig_mod.' prefixes
    raw_model, optimizer, scaler = build_model(cfg, compute, consumer.meta, state)
    model, eval_model = compile_and_wrap(raw_model, cfg, compute)
    decay_start = wsd_decay_start(cfg, state.branched_at)
    if cfg.lr_schedule == 'wsd' and cfg.decay_lr:
        print0(f"lr schedule: wsd, {cfg.learning_rate:.2e} until iter {decay_start}, then down to {cfg.min_lr:.2e} "
               f"at iter {cfg.max_iters}")
    log = TrainingLog(cfg, consumer, state.tokens_per_iter,
                      mfu_model=raw_model if compute.device_type == 'cuda' else None,  # MFU against a GPU's peak
                      wandb_run=start_wandb(cfg, run_id) if cfg.wandb_log and compute.master else None,
                      curriculum=curriculum)
    while True:
        # nanochat's loop: one pass past max_iters, so the final evaluation and save always happen
        last_step = state.iter_num >= cfg.max_iters
        lr = get_lr(state.iter_num, cfg, decay_start)
        for group in optimizer.param_groups:
            group['lr'] = lr
        # a resumed run does not evaluate again the iteration its checkpoint was saved at
        due = state.iter_num % cfg.eval_interval == 0 and state.iter_num != state.resumed_at
        if last_step or cfg.eval_only or due:
            improved = evaluate_and_log(eval_model, consumer, cfg, compute, state, lr, log)
            if cfg.eval_only:
                break
            if compute.master and (last_step or (state.iter_num > 0 and (improved or cfg.always_save_checkpoint))):
                save_checkpoints(raw_model, optimizer, scaler, state, cfg, consumer.meta)
        if last_step:
            break
        t0 = time.time()
        loss = train_step(model, optimizer, scaler, consumer, cfg, compute, micro_steps)
        log.add_step(time.time() - t0, loss)
        state.iter_num += 1
        if state.iter_num % cfg.log_interval == 0 and compute.master:
            log.iteration(state.iter_num, lr)
    log.finish()
    return state


def main(argv):
    cfg, provider_keys = resolve_config(argv)
    compute = compute_init(cfg.device, cfg.dtype, cfg.seed, cfg.backend)
    # SIGTERM (kill, a cluster's preemption) unwinds like Ctrl-C, so the finally below stops the producer
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    queue_dir = dataset_dir(cfg.dataset, cfg.data_dir)
    producer = consumer = None
    try:
        run_id = run_id_for(cfg, compute)
        curriculum = start_curriculum(cfg, queue_dir, run_id, compute.master)  # before a producer reads its stage
        if compute.master:
            save_run_config(cfg, run_id, argv, compute.world_size)
            producer = start_producer_if_needed(queue_dir, {key: cfg[key] for key in provider_keys},
                                                os.path.join(cfg.out_dir, f'producer_{run_id}.log'),
                                                start=cfg.start_producer, timeout=cfg.data_wait_timeout)
        consumer = open_queue(cfg, compute, queue_dir)
        state = train(cfg, compute, consumer, run_id, curriculum)
        print0(f"done: iter {state.iter_num}, best val loss {state.best_val_loss:.4f}")
        return state
    finally:
        if consumer is not None:
            consumer.close()  # the partly used file goes, prefetched ones return to the queue
            print(f"data: rank {compute.rank} consumed {consumer.files_consumed} train files", flush=True)
        stop_producer(producer)
        compute_cleanup(compute)


if __name__ == "__main__":
    run_cli(main)
