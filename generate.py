"""
Generation from trained checkpoints, as a library: sample.py is a thin CLI over it and evaluate.py
and bench/bench_sampling.py call the same loops. generate_setup.py checks the settings and loads the
checkpoints the loops get.

  - `Vocab` and `Forward`: a checkpoint's vocabulary and a model wrapped for generation;
  - the samplers and remasking modes by name, and the prompt;
  - the loops: `diffusion_generate` (the seed's loop: unmask everything masked, remask some, repeat),
    `field_generate` (the field's masked-diffusion samplers: mdlm, confidence, remdm) and
    `edit_generate` (substitute, delete, insert and re-noise random characters into text).

A merged checkpoint (training_type='merged') is one model that fills [MASK] positions and gives
p([WRONG]) at visible ones in the same forward pass: it serves as the unmasking model, and as its own
remasker (the caller passes the same Forward as both; see merged_wrong_probability).

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
from common import UserError
from data.corpus import decode, encode

# remasking mode -> (use_intelligent_remasking, use_mixed_remasking, takes remasking_confidence_threshold):
# the one mapping between a mode's name and the flags that select it
REMASKING_MODES = {
    'random': (False, False, False),
    'intelligent': (True, False, False),
    'threshold': (True, False, True),
    'mixed': (True, True, True),
}
FIELD_SAMPLERS = ('mdlm', 'confidence', 'remdm')  # field_generate: one loop, three reveal/remask rules
SAMPLERS = ('diffusion', *FIELD_SAMPLERS, 'edit')
REMDM_SCORES = ('random', 'confidence', 'wrong')  # which decoded characters remdm masks again


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


def forward_passes_per_sample(forwards, num_samples):
    """Rows the models (None: not in use) have seen since their counters were last reset, per sample.
    A model passed twice (a merged model as unmasker and remasker) counts once."""
    distinct = {id(f): f for f in forwards if f is not None}
    return sum(f.rows for f in distinct.values()) / num_samples


def is_merged(unmasker, remasker):
    """A merged model serves as both: the same Forward passed twice."""
    return remasker is not None and remasker is unmasker


def score_source(unmasker, remasker):
    """What the diffusion loop's [WRONG] scores come from (see wrong_probability)."""
    if is_merged(unmasker, remasker):
        return 'merged_model'
    return 'remasking_model' if remasker is not None else 'unmasking_confidence'


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
    """(B, T) score of 'this position is wrong': p([WRONG]) from a separate remasking model's pass over
    `tokens` when there is one, else the unmasking model's own doubt about the token it chose, 1 - p(chosen)."""
    if remasker is None:
        return 1.0 - confidence
    return su.wrong_token_probability(remasker(tokens), wrong_token_id)


def merged_wrong_probability(logits, filled, confidence, wrong_token_id):
    """(B, T) the same score from a merged model's one pass, `logits` (B, T, V), which filled `filled` (B, T):
    positions visible going into the pass get its p([WRONG]); a position it filled has no [WRONG] score
    until the next pass, so it gets 1 - p(its fill), the model's own probability that the fill is wrong."""
    return torch.where(filled, 1.0 - confidence, su.wrong_token_probability(logits, wrong_token_id))


def choose_remask(mode, score, eligible, k, threshold, generator):
    """(B, T) bool: the positions `mode` masks again, among the eligible ones."""
    if mode == 'random':
        return su.select_random(eligible, k, generator)
    if mode == 'intelligent':
        return su.select_top_k(score, eligible, k)
    if mode == 'threshold':
        return su.select_threshold(score, eligible, threshold)
    return su.select_mixed(score, eligible, k, threshold, generator)


def iterations_bar(iterations, desc, log):
    """The iterations behind a tqdm bar, or bare when `log` reports them (verbose lines, the live view).
    `disable` is left to tqdm, so TQDM_DISABLE=1 in the environment turns the bar off (the bench does)."""
    return iterations if log is not None else tqdm(iterations, desc=desc, leave=False)


def masked_stats(values, where):
    """min / mean / max of values at `where` (all (B, T)), as three 0-d tensors."""
    big = torch.finfo(values.dtype).max
    count = where.sum().clamp(min=1)
    return (values.masked_fill(~where, big).min(), (values * where).sum() / count,
            values.masked_fill(~where, -big).max())


def start_masked(prompt, B, T, mask_token_id):
    """(B, T) the prompt, then [MASK] up to length T."""
    tokens = torch.full((B, T), mask_token_id, dtype=torch.long, device=prompt.device)
    tokens[:, :len(prompt)] = prompt
    return tokens


def diffusion_generate(unmasker, remasker, prompt, cfg, mode, vocab, generator, log=None):
    """Generate cfg.num_samples sequences of cfg.sequence_length; returns (tokens (B, T), per-sample stats).

    `remasker`: a separate remasking model's Forward, None (scores from the unmasking model's confidence),
    or `unmasker` itself for a merged model (scores from the same pass: merged_wrong_probability).
    `log(it, record)` receives a dict of per-iteration tensors (verbose output, the live view).
    """
    B, T, P, N = cfg.num_samples, cfg.sequence_length, len(prompt), cfg.diffusion_iterations
    device = prompt.device
    merged = is_merged(unmasker, remasker)
    tokens = start_masked(prompt, B, T, vocab.mask_token_id)  # (B, T)
    editable = editable_positions(P, (B, T), device)  # (B, T)
    # masked count going into each iteration: remasked after iteration it = counts[it + 1]
    counts = su.masked_counts(cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio, N, T - P, N - 1)
    masked = editable.clone()  # (B, T) positions the unmasking model fills this iteration
    confidence = torch.ones(B, T, device=device)  # p(chosen) when each token was last chosen
    score = torch.zeros(B, T, device=device)  # latest [WRONG] probability per position
    active = torch.ones(B, dtype=torch.bool, device=device)  # threshold mode: not yet converged
    iterations = torch.zeros(B, dtype=torch.long, device=device)
    converged_at = torch.full((B,), -1, dtype=torch.long, device=device)
    rows = slice(None)  # all samples; threshold mode narrows this to the unconverged ones
    for it in iterations_bar(range(N), 'diffusion', log):
        if mode == 'threshold':
            rows = active.nonzero().squeeze(1)  # converged samples leave the batch
        x, eligible, conf = tokens[rows], editable[rows], confidence[rows]  # (b, T) each; views when rows is ':'
        fill = masked[rows].clone()  # (b, T) kept apart from `masked`, which is overwritten below
        logits = unmasker(x)  # (b, T, V)
        # sample only where something is masked: (n, V) -> (n,)
        x[fill], conf[fill] = su.sample_tokens(logits[fill], cfg.temperature, cfg.top_k, vocab.n_real, generator)
        confidence[rows] = conf
        if merged:  # (b, T) from the pass just made: no second model, no second pass
            s = merged_wrong_probability(logits, fill, conf, vocab.wrong_token_id)
        else:
            s = wrong_probability(x, remasker, conf, vocab.wrong_token_id)  # (b, T)
        score[rows] = s
        iterations[rows] += 1
        remask = choose_remask(mode, s, eligible, counts[it + 1], cfg.remasking_confidence_threshold,
                               generator)  # (b, T)
        if mode == 'threshold':
            done = ~remask.any(dim=1)  # (b,) nothing above the threshold: this sample has converged...
            if merged:  # ...once its whole text was judged by [WRONG]: fresh fills are judged by the next pass
                done &= ~fill.any(dim=1)
            converged_at[rows[done]] = it
            active[rows[done]] = False
        if it == N - 1:
            remask = torch.zeros_like(remask)  # the last iteration's fill is the answer
        tokens[rows] = x.masked_fill(remask, vocab.mask_token_id)
        masked[rows] = remask
        if log is not None:
            log(it, dict(active=len(x), masked=fill.sum(1), remasked=remask.sum(1),
                         wrong=masked_stats(s, eligible), converged=converged_at, tokens=tokens))
        if mode == 'threshold' and not active.any():
            break
    stats = dict(iterations=iterations, converged_at=converged_at, score=score, editable=editable)
    return tokens, stats


# -----------------------------------------------------------------------------
# the field's masked-diffusion samplers: mdlm, confidence, remdm

def remdm_rate(cfg, it, masked_now, masked_next, span):
    """ReMDM-cap's probability that a decoded character is masked again in iteration `it`:
    sigma = min(remdm_eta, sigma_max), 0 outside remdm_window. sigma_max = (1 - alpha_s) / alpha_t, in
    counts masked_next / decoded: the most that still lets the masked share follow the schedule."""
    decoded = span - masked_now
    progress = it / max(cfg.diffusion_iterations - 1, 1)  # 0 at the first iteration, 1 at the last
    if decoded == 0 or not cfg.remdm_window[0] <= progress <= cfg.remdm_window[1]:
        return 0.0
    return min(float(cfg.remdm_eta), masked_next / decoded)


def choose_decoded_remask(score_kind, decoded, k, confidence, logits, wrong_token_id, generator):
    """(B, T) k of the decoded positions per row to mask again: at random (ReMDM; also for None, a remdm_score
    that generate_setup.resolve_remdm_score has not settled for a merged model), the lowest p(char) when it
    was decoded ('confidence'), or the highest p([WRONG]) of this pass (a merged model, 'wrong')."""
    if score_kind in ('random', None):
        return su.select_random(decoded, k, generator)
    if score_kind == 'confidence':
        return su.select_top_k(1.0 - confidence, decoded, k)
    return su.select_top_k(su.wrong_token_probability(logits, wrong_token_id), decoded, k)


def confidence_order(fill_p, choice_temperature, progress, generator):
    """(B, T) the confidence sampler's ranking of the fills: log p(fill), plus Gumbel noise scaled by
    choice_temperature * (1 - progress) (MaskGIT's choice temperature, annealed to 0 by the last iteration).
    0 gives the pure confidence order; a large value is close to mdlm's random order early in the run."""
    if not choice_temperature:
        return fill_p
    u = torch.rand(fill_p.shape, generator=generator, device=fill_p.device, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))  # (B, T)
    return fill_p.double().clamp(min=1e-300).log() + choice_temperature * (1.0 - progress) * gumbel


def field_generate(unmasker, prompt, cfg, sampler, vocab, generator, log=None):
    """mdlm / confidence / remdm: cfg.num_samples sequences of cfg.sequence_length; returns
    (tokens (B, T), per-sample stats).

    Going into iteration `it`, exactly counts[it] editable positions of every sample are masked (from
    the whole span, along reveal_schedule from start_ratio down to 0 after the last iteration). One
    forward pass fills every masked position with a sample (temperature, top_k); then
      mdlm        reveals counts[it] - counts[it + 1] of the fills, chosen at random;
      confidence  reveals as many, those with the highest p(fill) (MaskGIT / LLaDA low-confidence remasking);
      remdm       masks round(sigma * decoded) decoded characters again (remdm_rate, remdm_score says which),
                  and reveals that many more fills at random, so counts[it + 1] stay masked.
    Fills not revealed are dropped: those positions stay masked. Only remdm masks a decoded character.
    """
    B, T, P, N = cfg.num_samples, cfg.sequence_length, len(prompt), cfg.diffusion_iterations
    device, span = prompt.device, cfg.sequence_length - len(prompt)
    tokens = start_masked(prompt, B, T, vocab.mask_token_id)  # (B, T)
    editable = editable_positions(P, (B, T), device)  # (B, T)
    counts = su.masked_counts(cfg.reveal_schedule, cfg.start_ratio, 0.0, N, span, N)
    confidence = torch.zeros(B, T, device=device)  # p(char) when each position was decoded
    totals = torch.zeros(2, B, dtype=torch.long, device=device)  # revealed, remasked
    for it in iterations_bar(range(N), sampler, log):
        masked = (tokens == vocab.mask_token_id) & editable  # (B, T) counts[it] per row
        decoded = editable & ~masked
        logits = unmasker(tokens)  # (B, T, V)
        fills, fill_p = tokens.clone(), torch.zeros_like(confidence)  # (B, T) each
        fills[masked], fill_p[masked] = su.sample_tokens(logits[masked], cfg.temperature, cfg.top_k, vocab.n_real,
                                                         generator)
        remask = torch.zeros_like(masked)
        if sampler == 'remdm':
            rate = remdm_rate(cfg, it, counts[it], counts[it + 1], span)
            k = min(round(rate * (span - counts[it])), counts[it + 1])
            remask = choose_decoded_remask(cfg.remdm_score, decoded, k, confidence, logits, vocab.wrong_token_id,
                                           generator)
        n_reveal = counts[it] - counts[it + 1] + int(remask[0].sum())  # every row has the same counts
        if sampler == 'confidence':
            reveal = su.select_top_k(confidence_order(fill_p, cfg.choice_temperature, it / N, generator), masked,
                                     n_reveal)
        else:
            reveal = su.select_random(masked, n_reveal, generator)
        tokens = torch.where(reveal, fills, tokens).masked_fill(remask, vocab.mask_token_id)
        confidence = torch.where(reveal, fill_p, confidence)
        totals += torch.stack([reveal.sum(1), remask.sum(1)])
        if log is not None:
            log(it, dict(masked=masked.sum(1), revealed=reveal.sum(1), remasked=remask.sum(1),
                         fill_p=masked_stats(fill_p, masked), tokens=tokens))
    stats = dict(revealed=totals[0], remasked=totals[1], confidence=confidence, editable=editable)
    return tokens, stats


def run_loop(sampler, mode, unmasker, remasker, prompt, cfg, vocab, generator, max_length=None, log=None):
    """(tokens (B, L), per-sample stats) from the loop of `sampler` ('diffusion' in remasking `mode`,
    a field sampler, or 'edit', whose samples grow up to `max_length`): the one dispatch that
    sample.py and evaluate.py share."""
    if sampler == 'edit':
        return edit_generate(unmasker, prompt, cfg, vocab, generator, max_length, log)
    if sampler in FIELD_SAMPLERS:
        return field_generate(unmasker, prompt, cfg, sampler, vocab, generator, log)
    return diffusion_generate(unmasker, remasker, prompt, cfg, mode, vocab, generator, log)


# -----------------------------------------------------------------------------
# the edit loop (random-replacement models with full targets)

def gap_neighbours(values):
    """(B, L) -> left, right (B, L + 1): the values either side of each gap (edges repeat their one side)."""
    left = torch.cat([values[:, :1], values], dim=1)  # left[j] = values[j - 1]
    right = torch.cat([values, values[:, -1:]], dim=1)  # right[j] = values[j]
    return left, right


def plan_structural_edits(p_now, cool, P, k_del, k_ins, max_length, cfg):
    """Choose deletions (B, L) and insertion gaps (B, L + 1) from this round's probabilities; returns
    (delete, insert, the insertions the length limit took away).

    Deletions: the k_del least likely current tokens. Insertions: the k_ins gaps whose two
    neighbours are least likely on average. Neither comes within cooling_distance of a recent
    edit, insertions keep clear of this round's deletions, and every row gets the same counts
    (so the batch keeps one shared length and never needs padding). No sequence grows past
    max_length: a sample already at it gets no more insertions than deletions.
    """
    B, L = p_now.shape
    blocked = su.dilate(cool > 0, cfg.cooling_distance)  # (B, L)
    can_delete = editable_positions(P, (B, L), p_now.device) & ~blocked
    k_del = min(k_del, L - P - 1, int(can_delete.sum(1).min()))  # keep >= 1 editable character
    delete = su.select_top_k(-p_now, can_delete, max(k_del, 0))  # (B, L)
    left_near, right_near = gap_neighbours(blocked | su.dilate(delete, 1))  # (B, L + 1) each
    can_insert = editable_positions(P, (B, L + 1), p_now.device) & ~left_near & ~right_near
    room = max_length - (L - max(k_del, 0))
    capped = max(min(k_ins, int(can_insert.sum(1).min())) - room, 0)
    k_ins = min(k_ins, room, int(can_insert.sum(1).min()))
    left_p, right_p = gap_neighbours(p_now)
    insert = su.select_top_k(1.0 - 0.5 * (left_p + right_p), can_insert, max(k_ins, 0))  # (B, L + 1)
    return delete, insert, capped


def edit_round(tokens, p_now, cool, P, progress, max_length, cfg, n_real, generator):
    """One structural step after substitution: delete, insert (random placeholder characters that
    the next forward pass can substitute), age the cooling counters, re-noise. `p_now` (B, L) is the
    probability of each current token from this round's forward pass, in the same (unshifted) frame.
    Returns the new (tokens, cool, counts, insertions the length limit took away)."""
    B, L = tokens.shape
    span = L - P
    k_del = su.scheduled_count(cfg.delete_schedule, cfg.delete_ratio_start, cfg.delete_ratio_end, progress, span)
    k_ins = su.scheduled_count(cfg.insert_schedule, cfg.insert_ratio_start, cfg.insert_ratio_end, progress, span)
    delete, insert, capped = plan_structural_edits(p_now, cool, P, k_del, k_ins, max_length, cfg)
    beside_delete = (F.pad(delete[:, 1:], (0, 1)) | F.pad(delete[:, :-1], (1, 0))) & ~delete  # (B, L)
    cool = torch.where(beside_delete, cfg.cooling_iterations, (cool - 1).clamp(min=0))
    fill = su.random_real_tokens((B, L + 1), n_real, generator, tokens.device)
    tokens, inserted, (cool,) = su.delete_and_insert(tokens, delete, insert, fill, carry=(cool,))  # (B, L') each
    cool = torch.where(inserted, cfg.cooling_iterations, cool)
    noise = su.schedule_value(cfg.noise_schedule, cfg.noise_start, cfg.noise_end, progress)
    editable = editable_positions(P, tokens.shape, tokens.device)
    tokens, noised = su.apply_re_noise(tokens, editable & ~inserted, noise, n_real, generator)
    return tokens, cool, (delete.sum(1), insert.sum(1), noised.sum(1)), capped


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
    capped = 0  # insertions per sample the length limit took away
    for it in iterations_bar(range(N), 'edit', log):
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
            tokens, cool, structural, lost = edit_round(tokens, p_now, cool, P, progress, max_length, cfg,
                                                        vocab.n_real, generator)
            counts += structural
            capped += lost
        totals[:len(counts)] += torch.stack(counts)
        if log is not None:
            log(it, dict(length=tokens.shape[1], counts=counts, confidence=p_current, editable=editable,
                         tokens=tokens))
    final = su.token_probability(model(tokens), tokens, vocab.n_real)  # how the model sees the final text
    stats = dict(totals=totals, confidence=final, P=P, insertions_capped=capped, max_length=max_length)
    return tokens, stats
