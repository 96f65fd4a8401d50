"""
Generation from trained checkpoints, as a library: sample.py is a thin CLI over it and evaluate.py
and bench/bench_sampling.py call the same loops.

  - `Vocab` and `Forward`: a checkpoint's vocabulary and a model wrapped for generation;
  - the remasking modes and the settings checks both scripts share;
  - finding and loading the unmasking / remasking pair, checked to fit each other (checkpoints.fit_problem);
  - the prompt and the sampler a checkpoint calls for;
  - the two loops: `diffusion_generate` (unmask everything masked, remask some, repeat) and
    `edit_generate` (substitute, delete, insert and re-noise random characters into text).

The loops read their settings from a config (`cfg.num_samples`, `cfg.diffusion_iterations`, ...:
the keys at the top of sample.py) and their randomness from one explicit torch.Generator, so one
seed gives one text. The building blocks they share (schedules, position selection, sampling) are
in sampling_utils.py. docs/sampling.md describes every setting.
"""

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

import sampling_utils as su
from checkpoints import describe_out_dir, fit_problem, load_checkpoint, model_from_checkpoint, newest_checkpoint
from common import UserError
from data.corpus import decode, encode
from objectives import MASK_FREE_CORRUPTIONS

# remasking mode -> (use_intelligent_remasking, use_mixed_remasking, takes remasking_confidence_threshold):
# the one mapping between a mode's name and the flags that select it
REMASKING_MODES = {
    'random': (False, False, False),
    'intelligent': (True, False, False),
    'threshold': (True, False, True),
    'mixed': (True, True, True),
}
SAMPLERS = ('diffusion', 'edit')


# -----------------------------------------------------------------------------
# vocabulary and model wrappers

@dataclass
class Vocab:
    stoi: dict
    itos: dict
    mask_token_id: int
    wrong_token_id: int

    @classmethod
    def from_meta(cls, meta):
        """From a checkpoint's meta (or data.corpus.build_vocab's dict: the same keys)."""
        return cls(meta['stoi'], meta['itos'], meta['mask_token_id'], meta['wrong_token_id'])

    @property
    def n_real(self):  # ids below this are characters; [MASK] and [WRONG] follow
        return self.mask_token_id

    def decode(self, tokens):
        """(B, L) token ids -> B strings."""
        return [decode(row.tolist(), self.itos) for row in tokens.cpu()]


class Forward:
    """A model in eval mode under autocast that returns float32 logits and counts the rows it saw."""

    def __init__(self, model, ctx):
        self.model, self.ctx, self.rows = model, ctx, 0

    @torch.no_grad()
    def __call__(self, idx):  # (B, T) -> (B, T, V)
        with self.ctx:
            logits, _ = self.model(idx)
        self.rows += idx.shape[0]
        return logits.float()


def load_forward(checkpoint, device, ctx, compile=False):
    """The Forward of a checkpoint's model on `device`; None for no checkpoint."""
    if checkpoint is None:
        return None
    model = model_from_checkpoint(checkpoint, device=device)
    return Forward(torch.compile(model) if compile else model, ctx)


def forward_passes_per_sample(forwards, num_samples):
    """Rows the models (None: not in use) have seen since their counters were last reset, per sample."""
    return sum(f.rows for f in forwards if f is not None) / num_samples


def score_source(remasker):
    """What the diffusion loop's [WRONG] scores come from (see wrong_probability)."""
    return 'remasking_model' if remasker is not None else 'unmasking_confidence'


# -----------------------------------------------------------------------------
# settings

def remasking_mode(cfg):
    """'random' | 'intelligent' | 'threshold' | 'mixed' from the three flags; contradictions are errors."""
    threshold = cfg.remasking_confidence_threshold
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise UserError(f"remasking_confidence_threshold={threshold!r} must be a probability in (0, 1)")
    if cfg.use_mixed_remasking and not cfg.use_intelligent_remasking:
        raise UserError("use_mixed_remasking=True needs use_intelligent_remasking=True as well")
    if not cfg.use_intelligent_remasking and threshold is not None:
        raise UserError("remasking_confidence_threshold is only used with use_intelligent_remasking=True; "
                        "set it, or drop the threshold for random remasking")
    if cfg.use_mixed_remasking and threshold is None:
        raise UserError("use_mixed_remasking=True needs remasking_confidence_threshold (e.g. 0.01) "
                        "to pick its candidates")
    flags = (bool(cfg.use_intelligent_remasking), bool(cfg.use_mixed_remasking), threshold is not None)
    return next(mode for mode, mode_flags in REMASKING_MODES.items() if mode_flags == flags)


def mode_settings(mode, threshold):
    """The flags that select `mode`; `threshold` is kept only by the modes that take one."""
    intelligent, mixed, takes_threshold = REMASKING_MODES[mode]
    return dict(use_intelligent_remasking=intelligent, use_mixed_remasking=mixed,
                remasking_confidence_threshold=threshold if takes_threshold else None)


def check_positive_int(cfg, key):
    if not isinstance(cfg[key], int) or cfg[key] < 1:
        raise UserError(f"{key}={cfg[key]!r} must be a positive integer")


def check_schedule(name, kind, start, end):
    problem = su.check_schedule(name, kind, start, end)
    if problem:
        raise UserError(problem)


def check_common_settings(cfg):
    check_positive_int(cfg, 'num_samples')
    if not isinstance(cfg.temperature, (int, float)) or cfg.temperature < 0:
        raise UserError(f"temperature={cfg.temperature!r} must be >= 0 (0 = argmax)")
    if cfg.top_k is not None and (not isinstance(cfg.top_k, int) or cfg.top_k < 1):
        raise UserError(f"top_k={cfg.top_k!r} must be a positive integer or None")


def check_diffusion_settings(cfg):
    check_positive_int(cfg, 'diffusion_iterations')
    check_schedule('remasking_schedule', cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio)


def check_edit_settings(cfg):
    check_positive_int(cfg, 'max_iterations')
    check_schedule('insert_schedule', cfg.insert_schedule, cfg.insert_ratio_start, cfg.insert_ratio_end)
    check_schedule('delete_schedule', cfg.delete_schedule, cfg.delete_ratio_start, cfg.delete_ratio_end)
    check_schedule('noise_schedule', cfg.noise_schedule, cfg.noise_start, cfg.noise_end)
    if cfg.cooling_distance < 0 or cfg.cooling_iterations < 0:
        raise UserError("cooling_distance and cooling_iterations must be >= 0")
    if cfg.use_intelligent_remasking or cfg.use_mixed_remasking or cfg.remasking_checkpoint_name:
        raise UserError("the edit sampler does not remask; drop the remasking settings or set sampler='diffusion'")


def resolve_sampler(cfg, meta, path):
    """'diffusion' or 'edit' for the unmasking checkpoint at `path` (its dataset `meta`)."""
    # full targets on mask-free corruption: the model predicts every original character, so it can edit
    edit_capable = meta.get('label_semantics') == 'full' and meta.get('corruption_type') in MASK_FREE_CORRUPTIONS
    if cfg.sampler == 'auto':
        return 'edit' if edit_capable else 'diffusion'
    if cfg.sampler == 'edit' and not edit_capable:
        raise UserError(f"sampler='edit' needs a model trained with full targets on random-replacement corruption; "
                        f"{path} has corruption_type={meta.get('corruption_type')!r}, "
                        f"label_semantics={meta.get('label_semantics')!r}; use sampler='diffusion'")
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"sampler={cfg.sampler!r} is unknown; use 'auto', 'diffusion' or 'edit'")
    return cfg.sampler


def sampler_and_mode(cfg, meta, path):
    """(sampler, remasking mode) after checking that sampler's settings; the edit sampler has no mode."""
    sampler = resolve_sampler(cfg, meta, path)
    if sampler == 'edit':
        check_edit_settings(cfg)
        return sampler, None
    check_diffusion_settings(cfg)
    return sampler, remasking_mode(cfg)


# -----------------------------------------------------------------------------
# checkpoints

def find_checkpoint(out_dir, name, kind, trust_pickle=False):
    """A file name is looked up in out_dir; a name with a folder in it is a path as it stands.
    `trust_pickle`: the trust_checkpoint_pickle key, for a ckpt.pt opened to learn its kind."""
    if name in (None, '', 'newest'):
        path = newest_checkpoint(out_dir, kind, trust_pickle)
        if path is None:
            raise UserError(f"no {kind} checkpoint found; {describe_out_dir(out_dir)}")
        return path
    return name if os.path.dirname(name) else os.path.join(out_dir, name)


def load_unmasking_checkpoint(cfg):
    path = find_checkpoint(cfg.out_dir, cfg.checkpoint_name, 'unmasking', cfg.trust_checkpoint_pickle)
    ckpt = load_checkpoint(path, trust_pickle=cfg.trust_checkpoint_pickle)
    kind = ckpt.get('training_type')
    if kind != 'unmasking':
        fix = ("pass it as remasking_checkpoint_name" if kind == 'remasking'
               else "sample.py generates with unmasking (diffusion) models")
        raise UserError(f"{path} is a {kind!r} model, not an unmasking model; {fix}")
    return path, ckpt


def load_remasking_checkpoint(cfg):
    """(path, checkpoint) of the remasking model, or (None, None) when none is asked for."""
    if not cfg.remasking_checkpoint_name:
        return None, None
    path = find_checkpoint(cfg.remasking_out_dir or cfg.out_dir, cfg.remasking_checkpoint_name, 'remasking',
                           cfg.trust_checkpoint_pickle)
    ckpt = load_checkpoint(path, trust_pickle=cfg.trust_checkpoint_pickle)
    if ckpt.get('training_type') != 'remasking':
        raise UserError(f"remasking_checkpoint_name {path} is a {ckpt.get('training_type')!r} model, "
                        f"not a remasking model (train one with training_type='remasking')")
    return path, ckpt


def resolve_sequence_length(cfg, *checkpoints):
    """Settle cfg.sequence_length: None becomes the smallest block size of the checkpoints in use."""
    block_sizes = [c['model_args']['block_size'] for c in checkpoints if c is not None]
    cfg['sequence_length'] = cfg.sequence_length or min(block_sizes)
    if not isinstance(cfg.sequence_length, int) or cfg.sequence_length < 2:
        raise UserError(f"sequence_length={cfg.sequence_length!r} must be an integer >= 2 (or None for the block size)")
    return cfg.sequence_length


def check_pair(path, ckpt, rpath, rckpt, length):
    """The two models must share the vocabulary and both see `length` characters."""
    for p, c in ((path, ckpt), (rpath, rckpt)):
        problem = fit_problem(c, min_block_size=length) if c is not None else None
        if problem:
            raise UserError(f"sequence_length={length} does not fit {p}: {problem}; lower sequence_length")
    problem = fit_problem(rckpt, stoi=ckpt['meta']['stoi']) if rckpt is not None else None
    if problem:
        raise UserError(f"{path} (dataset {ckpt['meta'].get('dataset')!r}) and {rpath} (dataset "
                        f"{rckpt['meta'].get('dataset')!r}) do not share a vocabulary: {problem}; "
                        f"use two models trained on the same corpus")


# -----------------------------------------------------------------------------
# the prompt

def encode_prompt(start, stoi, device):
    """(P,) token ids of the fixed prompt ('' gives P = 0); 'FILE:path' reads it from a file."""
    if start.startswith('FILE:'):
        if not os.path.isfile(start[5:]):
            raise UserError(f"start={start!r}: the prompt file {start[5:]} does not exist")
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    try:
        ids = encode(start, stoi) if start else []
    except UserError as e:
        raise UserError(f"start (the prompt): {e}; the checkpoint's vocabulary has only the training corpus "
                        f"characters") from None
    return torch.as_tensor(ids, dtype=torch.long, device=device)


def check_prompt_fits(prompt, sequence_length):
    if len(prompt) >= sequence_length:
        raise UserError(f"the prompt ({len(prompt)} characters) leaves nothing to generate in "
                        f"sequence_length={sequence_length}")


def editable_positions(prompt_length, shape, device):
    """(B, L) bool: every position after the prompt, which never changes."""
    return (torch.arange(shape[1], device=device) >= prompt_length).expand(shape)


# -----------------------------------------------------------------------------
# the masked diffusion loop

def wrong_probability(tokens, remasker, confidence, wrong_token_id):
    """(B, T) score of 'this position is wrong': p([WRONG]) from the remasking model when there is one,
    else the unmasking model's own doubt about the token it chose, 1 - p(chosen)."""
    if remasker is None:
        return 1.0 - confidence
    logits = remasker(tokens)  # (B, T, V)
    return (logits[..., wrong_token_id] - logits.logsumexp(dim=-1)).exp()


def choose_remask(mode, score, eligible, k, threshold, generator):
    """(B, T) bool: the positions `mode` masks again, among the eligible ones."""
    if mode == 'random':
        return su.select_random(eligible, k, generator)
    if mode == 'intelligent':
        return su.select_top_k(score, eligible, k)
    if mode == 'threshold':
        return su.select_threshold(score, eligible, threshold)
    return su.select_mixed(score, eligible, k, threshold, generator)


def masked_stats(values, where):
    """min / mean / max of values at `where` (all (B, T)), as three 0-d tensors."""
    big = torch.finfo(values.dtype).max
    count = where.sum().clamp(min=1)
    return (values.masked_fill(~where, big).min(), (values * where).sum() / count,
            values.masked_fill(~where, -big).max())


def diffusion_generate(unmasker, remasker, prompt, cfg, mode, vocab, generator, log=None):
    """Generate cfg.num_samples sequences of cfg.sequence_length; returns (tokens (B, T), per-sample stats).

    `log(it, record)` receives a dict of per-iteration tensors (for verbose output).
    """
    B, T, P, N = cfg.num_samples, cfg.sequence_length, len(prompt), cfg.diffusion_iterations
    device = prompt.device
    tokens = torch.full((B, T), vocab.mask_token_id, dtype=torch.long, device=device)  # (B, T)
    tokens[:, :P] = prompt
    editable = editable_positions(P, (B, T), device)  # (B, T)
    masked = editable.clone()  # (B, T) positions the unmasking model fills this iteration
    confidence = torch.ones(B, T, device=device)  # p(chosen) when each token was last chosen
    score = torch.zeros(B, T, device=device)  # latest [WRONG] probability per position
    active = torch.ones(B, dtype=torch.bool, device=device)  # threshold mode: not yet converged
    iterations = torch.zeros(B, dtype=torch.long, device=device)
    converged_at = torch.full((B,), -1, dtype=torch.long, device=device)
    rows = slice(None)  # all samples; threshold mode narrows this to the unconverged ones
    for it in tqdm(range(N), desc='diffusion', leave=False, disable=log is not None):
        if mode == 'threshold':
            rows = active.nonzero().squeeze(1)  # converged samples leave the batch
        x, eligible, conf = tokens[rows], editable[rows], confidence[rows]  # (b, T) each; views when rows is ':'
        fill = masked[rows].clone()  # (b, T) kept apart from `masked`, which is overwritten below
        logits = unmasker(x)[fill]  # (n, V): sample only where something is masked
        x[fill], conf[fill] = su.sample_tokens(logits, cfg.temperature, cfg.top_k, vocab.n_real, generator)
        confidence[rows] = conf
        s = wrong_probability(x, remasker, conf, vocab.wrong_token_id)  # (b, T)
        score[rows] = s
        iterations[rows] += 1
        k = su.scheduled_count(cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio, (it + 1) / max(N - 1, 1), T - P)
        remask = choose_remask(mode, s, eligible, k, cfg.remasking_confidence_threshold, generator)  # (b, T)
        if mode == 'threshold':
            done = ~remask.any(dim=1)  # (b,) nothing above the threshold: this sample has converged
            converged_at[rows[done]] = it
            active[rows[done]] = False
        if it == N - 1:
            remask = torch.zeros_like(remask)  # the last iteration's fill is the answer
        tokens[rows] = x.masked_fill(remask, vocab.mask_token_id)
        masked[rows] = remask
        if log is not None:
            log(it, dict(active=len(x), masked=fill.sum(1), remasked=remask.sum(1),
                         wrong=masked_stats(s, eligible), converged=converged_at))
        if mode == 'threshold' and not active.any():
            break
    stats = dict(iterations=iterations, converged_at=converged_at, score=score, editable=editable)
    return tokens, stats


# -----------------------------------------------------------------------------
# the edit loop (random-replacement models with full targets)

def gap_neighbours(values):
    """(B, L) -> left, right (B, L + 1): the values either side of each gap (edges repeat their one side)."""
    left = torch.cat([values[:, :1], values], dim=1)  # left[j] = values[j - 1]
    right = torch.cat([values, values[:, -1:]], dim=1)  # right[j] = values[j]
    return left, right


def plan_structural_edits(p_now, cool, P, k_del, k_ins, max_length, cfg):
    """Choose deletions (B, L) and insertion gaps (B, L + 1) from this round's probabilities.

    Deletions: the k_del least likely current tokens. Insertions: the k_ins gaps whose two
    neighbours are least likely on average. Neither comes within cooling_distance of a recent
    edit, insertions keep clear of this round's deletions, and every row gets the same counts
    (so the batch keeps one shared length and never needs padding).
    """
    B, L = p_now.shape
    blocked = su.dilate(cool > 0, cfg.cooling_distance)  # (B, L)
    can_delete = editable_positions(P, (B, L), p_now.device) & ~blocked
    k_del = min(k_del, L - P - 1, int(can_delete.sum(1).min()))  # keep >= 1 editable character
    delete = su.select_top_k(-p_now, can_delete, max(k_del, 0))  # (B, L)
    left_near, right_near = gap_neighbours(blocked | su.dilate(delete, 1))  # (B, L + 1) each
    can_insert = editable_positions(P, (B, L + 1), p_now.device) & ~left_near & ~right_near
    k_ins = min(k_ins, max_length - (L - max(k_del, 0)), int(can_insert.sum(1).min()))
    left_p, right_p = gap_neighbours(p_now)
    insert = su.select_top_k(1.0 - 0.5 * (left_p + right_p), can_insert, max(k_ins, 0))  # (B, L + 1)
    return delete, insert


def edit_round(tokens, p_now, cool, P, progress, max_length, cfg, n_real, generator):
    """One structural step after substitution: delete, insert (random placeholder characters that
    the next forward pass can substitute), age the cooling counters, re-noise. `p_now` (B, L) is the
    probability of each current token from this round's forward pass, in the same (unshifted) frame.
    Returns the new (tokens, cool, counts)."""
    B, L = tokens.shape
    span = L - P
    k_del = su.scheduled_count(cfg.delete_schedule, cfg.delete_ratio_start, cfg.delete_ratio_end, progress, span)
    k_ins = su.scheduled_count(cfg.insert_schedule, cfg.insert_ratio_start, cfg.insert_ratio_end, progress, span)
    delete, insert = plan_structural_edits(p_now, cool, P, k_del, k_ins, max_length, cfg)
    beside_delete = (F.pad(delete[:, 1:], (0, 1)) | F.pad(delete[:, :-1], (1, 0))) & ~delete  # (B, L)
    cool = torch.where(beside_delete, cfg.cooling_iterations, (cool - 1).clamp(min=0))
    fill = su.random_real_tokens((B, L + 1), n_real, generator, tokens.device)
    tokens, inserted, (cool,) = su.delete_and_insert(tokens, delete, insert, fill, carry=(cool,))  # (B, L') each
    cool = torch.where(inserted, cfg.cooling_iterations, cool)
    noise = su.schedule_value(cfg.noise_schedule, cfg.noise_start, cfg.noise_end, progress)
    editable = editable_positions(P, tokens.shape, tokens.device)
    tokens, noised = su.apply_re_noise(tokens, editable & ~inserted, noise, n_real, generator)
    return tokens, cool, (delete.sum(1), insert.sum(1), noised.sum(1))


def edit_generate(model, prompt, cfg, vocab, generator, max_length, log=None):
    """Edit random characters into text; returns (tokens (B, L'), per-sample stats).

    Each round: one forward pass on the current sequences; substitute every editable position where
    the sampled character is more likely than the current one; then (except in the last round,
    which only substitutes) delete, insert and re-noise, all chosen from that same forward pass.
    """
    B, L, P, N = cfg.num_samples, cfg.sequence_length, len(prompt), cfg.max_iterations
    device = prompt.device
    body = su.random_real_tokens((B, L - P), vocab.n_real, generator, device)
    tokens = torch.cat([prompt.expand(B, P), body], dim=1)  # (B, L)
    cool = torch.zeros(B, L, dtype=torch.long, device=device)  # rounds a position stays off-limits
    totals = torch.zeros(4, B, dtype=torch.long, device=device)  # substitutions, deletions, insertions, noised
    for it in tqdm(range(N), desc='edit', leave=False, disable=log is not None):
        logits = model(tokens)  # (B, L, V)
        editable = editable_positions(P, tokens.shape, device)
        proposal, p_proposal = su.sample_tokens(logits, cfg.temperature, cfg.top_k, vocab.n_real, generator)
        p_current = su.token_probability(logits, tokens, vocab.n_real)  # (B, L)
        substitute = editable & (proposal != tokens) & (p_proposal > p_current)  # the model prefers another char
        tokens = torch.where(substitute, proposal, tokens)
        p_now = torch.where(substitute, p_proposal, p_current)  # (B, L) p of each token now in place
        counts = (substitute.sum(1),)
        if it < N - 1:
            progress = it / max(N - 2, 1)
            tokens, cool, structural = edit_round(tokens, p_now, cool, P, progress, max_length, cfg, vocab.n_real,
                                                  generator)
            counts += structural
        totals[:len(counts)] += torch.stack(counts)
        if log is not None:
            log(it, dict(length=tokens.shape[1], counts=counts, confidence=p_current, editable=editable))
    final = su.token_probability(model(tokens), tokens, vocab.n_real)  # how the model sees the final text
    stats = dict(totals=totals, confidence=final, P=P)
    return tokens, stats
