"""
Generate text from trained checkpoints, with one of two samplers:

  diffusion  start fully masked (after an optional fixed prompt), then alternate: the unmasking model
             fills every masked position, and a remasking rule masks some positions again.
             Four remasking rules (docs/sampling.md has the table of flags):
               random       schedule decides how many, positions at random
               intelligent  schedule decides how many, the highest [WRONG] probabilities
               threshold    every position whose [WRONG] probability is above a threshold; a sample
                            stops when none is (diffusion_iterations is the safety limit)
               mixed        schedule decides how many, above-threshold candidates first, random top-up
  edit       for models trained with full targets on random-replacement corruption: start from random
             characters and edit: substitute, delete, insert and re-noise, for max_iterations rounds.

$ python sample.py                                   # newest unmasking checkpoint in out_dir
$ python sample.py --use_intelligent_remasking=True --remasking_checkpoint_name=ckpt_remasking_all_positions_5000.pt
$ python sample.py --start="ROMEO:" --num_samples=8 --verbose=True
"""

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

import sampling_utils as su
from checkpoints import describe_out_dir, fit_problem, load_checkpoint, model_from_checkpoint, newest_checkpoint
from common import UserError, autocast_context, resolve_device, resolve_dtype, run_cli
from configurator import defaults_from, load_config
from prepare_streaming import provider_keys_if_known
from data.corpus import decode, encode

# -----------------------------------------------------------------------------
# which models
out_dir = 'out-shakespeare-char-quick'
checkpoint_name = None           # unmasking model in out_dir; None = the newest ckpt_unmasking_<iter>.pt
remasking_checkpoint_name = None  # optional remasking model; 'newest' = the newest one in remasking_out_dir
remasking_out_dir = None         # where the remasking model lives; None = out_dir
sampler = 'auto'                 # 'auto' | 'diffusion' | 'edit'; auto = edit for full-target random-replacement models
# what to generate
start = ''                       # fixed prompt at the start of every sample, never changed; 'FILE:path' reads a file
sequence_length = None           # total characters per sample, prompt included; None = the model's block_size
num_samples = 4                  # generated together, as one batch
temperature = 1.0                # 0 = argmax
top_k = None                     # sample only among the k most likely characters; None = all
seed = 1337
# masked diffusion loop
diffusion_iterations = 30        # iterations (threshold mode: the most a sample may use)
remasking_schedule = 'linear'    # 'linear' | 'exponential' | 'cosine': how many positions are masked again
start_ratio = 1.0                # masked fraction at the start of the schedule
end_ratio = 0.1                  # masked fraction going into the last iteration
use_intelligent_remasking = False  # choose positions by [WRONG] probability instead of at random
use_mixed_remasking = False      # scheduled count, above-threshold candidates first, random top-up
remasking_confidence_threshold = None  # [WRONG] probability above which a position is remasked
# edit loop (random-replacement models)
max_iterations = 30
insert_ratio_start = 0.04        # insertions per round, as a fraction of the editable span
insert_ratio_end = 0.0
delete_ratio_start = 0.04
delete_ratio_end = 0.0
noise_start = 0.1                # fraction of editable characters re-randomised per round
noise_end = 0.0
insert_schedule = 'cosine'       # 'linear' | 'cosine'
delete_schedule = 'cosine'
noise_schedule = 'cosine'
cooling_distance = 2             # no insert/delete within this many positions of a recent insert/delete...
cooling_iterations = 1           # ...made in the last this many rounds
# output
verbose = False                  # per-iteration statistics instead of a progress bar
output_file = None               # append one JSON line per sample (text, settings, statistics)
# system
device = 'auto'                  # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
dtype = 'auto'                   # 'auto' | 'float32' | 'bfloat16' | 'float16'
compile = False                  # torch.compile the models
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())

EDIT_CORRUPTIONS = ('random_replacement', 'inference_replacement')  # full targets predict every original char


@dataclass
class Vocab:
    stoi: dict
    itos: dict
    mask_token_id: int
    wrong_token_id: int

    @property
    def n_real(self):  # ids below this are characters; [MASK] and [WRONG] follow
        return self.mask_token_id


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


# -----------------------------------------------------------------------------
# settings

def remasking_mode(cfg):
    """'random' | 'intelligent' | 'threshold' | 'mixed' from the three flags; contradictions are errors."""
    threshold = cfg.remasking_confidence_threshold
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise UserError(f"remasking_confidence_threshold={threshold!r} must be a probability in (0, 1)")
    if cfg.use_mixed_remasking and not cfg.use_intelligent_remasking:
        raise UserError("use_mixed_remasking=True needs use_intelligent_remasking=True as well")
    if not cfg.use_intelligent_remasking:
        if threshold is not None:
            raise UserError("remasking_confidence_threshold is only used with use_intelligent_remasking=True; "
                            "set it, or drop the threshold for random remasking")
        return 'random'
    if cfg.use_mixed_remasking:
        if threshold is None:
            raise UserError("use_mixed_remasking=True needs remasking_confidence_threshold (e.g. 0.01) "
                            "to pick its candidates")
        return 'mixed'
    return 'threshold' if threshold is not None else 'intelligent'


def check_diffusion_settings(cfg):
    if not isinstance(cfg.diffusion_iterations, int) or cfg.diffusion_iterations < 1:
        raise UserError(f"diffusion_iterations={cfg.diffusion_iterations!r} must be a positive integer")
    problem = su.check_schedule('remasking_schedule', cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio)
    if problem:
        raise UserError(problem)


def check_edit_settings(cfg):
    if not isinstance(cfg.max_iterations, int) or cfg.max_iterations < 1:
        raise UserError(f"max_iterations={cfg.max_iterations!r} must be a positive integer")
    for name in ('insert', 'delete', 'noise'):
        first, last = ('noise_start', 'noise_end') if name == 'noise' else (f'{name}_ratio_start', f'{name}_ratio_end')
        problem = su.check_schedule(f'{name}_schedule', cfg[f'{name}_schedule'], cfg[first], cfg[last])
        if problem:
            raise UserError(problem)
    if cfg.cooling_distance < 0 or cfg.cooling_iterations < 0:
        raise UserError("cooling_distance and cooling_iterations must be >= 0")
    if cfg.use_intelligent_remasking or cfg.use_mixed_remasking or cfg.remasking_checkpoint_name:
        raise UserError("the edit sampler does not remask; drop the remasking settings or set sampler='diffusion'")


def check_common_settings(cfg):
    if not isinstance(cfg.num_samples, int) or cfg.num_samples < 1:
        raise UserError(f"num_samples={cfg.num_samples!r} must be a positive integer")
    if not isinstance(cfg.temperature, (int, float)) or cfg.temperature < 0:
        raise UserError(f"temperature={cfg.temperature!r} must be >= 0 (0 = argmax)")
    if cfg.top_k is not None and (not isinstance(cfg.top_k, int) or cfg.top_k < 1):
        raise UserError(f"top_k={cfg.top_k!r} must be a positive integer or None")


# -----------------------------------------------------------------------------
# checkpoints

def find_checkpoint(out_dir, name, kind):
    """A file name is looked up in out_dir; a name with a folder in it is a path as it stands."""
    if name in (None, '', 'newest'):
        path = newest_checkpoint(out_dir, kind)
        if path is None:
            raise UserError(f"no {kind} checkpoint found; {describe_out_dir(out_dir)}")
        return path
    return name if os.path.dirname(name) else os.path.join(out_dir, name)


def load_unmasking_checkpoint(cfg):
    path = find_checkpoint(cfg.out_dir, cfg.checkpoint_name, 'unmasking')
    ckpt = load_checkpoint(path)
    kind = ckpt.get('training_type')
    if kind != 'unmasking':
        fix = ("pass it as remasking_checkpoint_name" if kind == 'remasking'
               else "sample.py generates with unmasking (diffusion) models")
        raise UserError(f"{path} is a {kind!r} model, not an unmasking model; {fix}")
    return path, ckpt


def load_remasking_checkpoint(cfg):
    if not cfg.remasking_checkpoint_name:
        return None, None
    path = find_checkpoint(cfg.remasking_out_dir or cfg.out_dir, cfg.remasking_checkpoint_name, 'remasking')
    ckpt = load_checkpoint(path)
    if ckpt.get('training_type') != 'remasking':
        raise UserError(f"remasking_checkpoint_name {path} is a {ckpt.get('training_type')!r} model, "
                        f"not a remasking model (train one with training_type='remasking')")
    return path, ckpt


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


def resolve_sampler(cfg, meta, path):
    edit_capable = meta.get('label_semantics') == 'full' and meta.get('corruption_type') in EDIT_CORRUPTIONS
    if cfg.sampler == 'auto':
        return 'edit' if edit_capable else 'diffusion'
    if cfg.sampler == 'edit' and not edit_capable:
        raise UserError(f"sampler='edit' needs a model trained with full targets on random-replacement corruption; "
                        f"{path} has corruption_type={meta.get('corruption_type')!r}, "
                        f"label_semantics={meta.get('label_semantics')!r}; use sampler='diffusion'")
    if cfg.sampler not in ('diffusion', 'edit'):
        raise UserError(f"sampler={cfg.sampler!r} is unknown; use 'auto', 'diffusion' or 'edit'")
    return cfg.sampler


def encode_prompt(start, stoi, device):
    if start.startswith('FILE:'):
        if not os.path.isfile(start[5:]):
            raise UserError(f"start={start!r}: the prompt file {start[5:]} does not exist")
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    try:
        return torch.as_tensor(encode(start, stoi), dtype=torch.long, device=device) if start else \
            torch.zeros(0, dtype=torch.long, device=device)
    except UserError as e:
        raise UserError(f"start (the prompt): {e}; the checkpoint's vocabulary has only the training corpus "
                        f"characters") from None


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
    editable = (torch.arange(T, device=device) >= P).expand(B, T)  # (B, T) the prompt never changes
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
        last = it == N - 1
        k = su.scheduled_count(cfg.remasking_schedule, cfg.start_ratio, cfg.end_ratio, (it + 1) / max(N - 1, 1), T - P)
        remask = choose_remask(mode, s, eligible, k, cfg.remasking_confidence_threshold, generator)
        if mode == 'threshold':
            done = ~remask.any(dim=1)  # (b,) nothing above the threshold: this sample has converged
            converged_at[rows[done]] = it
            active[rows[done]] = False
        if last:
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
    editable = (torch.arange(L, device=p_now.device) >= P).expand(B, L)
    blocked = su.dilate(cool > 0, cfg.cooling_distance)
    can_delete = editable & ~blocked
    k_del = min(k_del, L - P - 1, int(can_delete.sum(1).min()))  # keep >= 1 editable character
    delete = su.select_top_k(-p_now, can_delete, max(k_del, 0))
    near = blocked | su.dilate(delete, 1)
    left_near, right_near = gap_neighbours(near)
    can_insert = (torch.arange(L + 1, device=p_now.device) >= P).expand(B, L + 1) & ~left_near & ~right_near
    k_ins = min(k_ins, max_length - (L - max(k_del, 0)), int(can_insert.sum(1).min()))
    left_p, right_p = gap_neighbours(p_now)
    insert = su.select_top_k(1.0 - 0.5 * (left_p + right_p), can_insert, max(k_ins, 0))
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
    tokens, inserted, (cool,) = su.delete_and_insert(tokens, delete, insert, fill, carry=(cool,))
    cool = torch.where(inserted, cfg.cooling_iterations, cool)
    noise = su.schedule_value(cfg.noise_schedule, cfg.noise_start, cfg.noise_end, progress)
    editable = (torch.arange(tokens.shape[1], device=tokens.device) >= P).expand_as(tokens)
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
        editable = (torch.arange(tokens.shape[1], device=device) >= P).expand_as(tokens)
        proposal, p_proposal = su.sample_tokens(logits, cfg.temperature, cfg.top_k, vocab.n_real, generator)
        p_current = su.token_probability(logits, tokens, vocab.n_real)
        substitute = editable & (proposal != tokens) & (p_proposal > p_current)  # the model prefers another char
        tokens = torch.where(substitute, proposal, tokens)
        p_now = torch.where(substitute, p_proposal, p_current)  # (B, L) p of each token now in place
        counts = (substitute.sum(1),)
        if it < N - 1:
            progress = it / max(N - 2, 1)
            tokens, cool, structural = edit_round(tokens, p_now, cool, P, progress, max_length, cfg, vocab.n_real,
                                                  generator)
            counts += structural
        for i, c in enumerate(counts):
            totals[i] += c
        if log is not None:
            log(it, dict(length=tokens.shape[1], counts=counts, confidence=p_current, editable=editable))
    final = su.token_probability(model(tokens), tokens, vocab.n_real)  # how the model sees the final text
    stats = dict(totals=totals, confidence=final, P=P)
    return tokens, stats


# -----------------------------------------------------------------------------
# output

def diffusion_logger(mode, num_samples, score_name):
    print(f"masked / remasked: totals over the active samples; {score_name}: over their editable positions")

    def log(it, r):
        lo, mean, hi = (float(v) for v in r['wrong'])
        print(f"iter {it:3d} | active {r['active']}/{num_samples} | masked {int(r['masked'].sum())} "
              f"| remasked {int(r['remasked'].sum())} | {score_name} min {lo:.4f} mean {mean:.4f} max {hi:.4f}")
        if mode == 'threshold':
            done = (r['converged'] == it).nonzero().squeeze(1).tolist()
            if done:
                print(f"         converged at iteration {it}: sample(s) {done}")
    return log


def edit_logger(it, r):
    subs, *rest = (int(c.sum()) for c in r['counts'])
    dels, ins, noised = rest if rest else (0, 0, 0)
    conf = r['confidence'][r['editable']]
    print(f"round {it:3d} | length {r['length']} | substituted {subs} | deleted {dels} | inserted {ins} "
          f"| re-noised {noised} | p(current) min {float(conf.min()):.4f} mean {float(conf.mean()):.4f}")


def diffusion_sample_stats(stats, mode, score_source, threshold):
    out = []
    for b in range(len(stats['iterations'])):
        s = stats['score'][b][stats['editable'][b]]
        out.append(dict(iterations=int(stats['iterations'][b]),
                        converged_at=int(stats['converged_at'][b]) if stats['converged_at'][b] >= 0 else None,
                        final_wrong_prob=dict(source=score_source, min=float(s.min()), mean=float(s.mean()),
                                              max=float(s.max()),
                                              above_threshold=int((s > threshold).sum()) if threshold else None)))
    return out


def edit_sample_stats(stats, iterations):
    subs, dels, ins, noised = stats['totals'].tolist()
    final = stats['confidence'][:, stats['P']:]
    return [dict(iterations=iterations, substitutions=subs[b], deletions=dels[b], insertions=ins[b],
                 re_noised=noised[b], final_p_current=dict(min=float(final[b].min()), mean=float(final[b].mean())))
            for b in range(len(subs))]


def write_jsonl(path, texts, per_sample, run):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
        for i, (text, stats) in enumerate(zip(texts, per_sample)):
            f.write(json.dumps(dict(sample=i, text=text, **run, stats=stats), default=str) + '\n')


# -----------------------------------------------------------------------------

def main(argv=None):
    cfg = load_config(DEFAULTS, argv or [], other_keys=provider_keys_if_known)
    check_common_settings(cfg)
    path, ckpt = load_unmasking_checkpoint(cfg)
    sampler_kind = resolve_sampler(cfg, ckpt['meta'], path)
    if sampler_kind == 'edit':
        check_edit_settings(cfg)
        mode = None
    else:
        check_diffusion_settings(cfg)
        mode = remasking_mode(cfg)
    rpath, rckpt = load_remasking_checkpoint(cfg)
    block_sizes = [c['model_args']['block_size'] for c in (ckpt, rckpt) if c is not None]
    cfg['sequence_length'] = cfg.sequence_length or min(block_sizes)
    if not isinstance(cfg.sequence_length, int) or cfg.sequence_length < 2:
        raise UserError(f"sequence_length={cfg.sequence_length!r} must be an integer >= 2 (or None for the block size)")
    check_pair(path, ckpt, rpath, rckpt, cfg.sequence_length)
    meta = ckpt['meta']
    vocab = Vocab(meta['stoi'], meta['itos'], meta['mask_token_id'], meta['wrong_token_id'])
    device = resolve_device(cfg.device)
    prompt = encode_prompt(cfg.start, vocab.stoi, device)
    if len(prompt) >= cfg.sequence_length:
        raise UserError(f"the prompt ({len(prompt)} characters) leaves nothing to generate in "
                        f"sequence_length={cfg.sequence_length}")

    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    ctx = autocast_context(device, resolve_dtype(cfg.dtype, device))

    def build(c):
        model = model_from_checkpoint(c, device=device)
        return Forward(torch.compile(model) if cfg.compile else model, ctx)

    unmasker, remasker = build(ckpt), (build(rckpt) if rckpt is not None else None)
    print(f"{sampler_kind} sampling with {path}" + (f" and {rpath}" if rpath else "")
          + (f" | remasking mode: {mode}" if mode else ""))
    if sampler_kind == 'diffusion':
        score_source = 'remasking_model' if remasker else 'unmasking_confidence'
        score_name = '[WRONG] p' if remasker else '1 - p(chosen)'
        log = diffusion_logger(mode, cfg.num_samples, score_name) if cfg.verbose else None
        tokens, stats = diffusion_generate(unmasker, remasker, prompt, cfg, mode, vocab, generator, log)
        per_sample = diffusion_sample_stats(stats, mode, score_source, cfg.remasking_confidence_threshold)
        if cfg.verbose and mode == 'threshold':
            print("convergence iteration per sample:", [s['converged_at'] for s in per_sample])
    else:
        tokens, stats = edit_generate(unmasker, prompt, cfg, vocab, generator, ckpt['model_args']['block_size'],
                                      edit_logger if cfg.verbose else None)
        per_sample = edit_sample_stats(stats, cfg.max_iterations)
    forward_rows = unmasker.rows + (remasker.rows if remasker else 0)
    texts = [decode(row.tolist(), vocab.itos) for row in tokens.cpu()]
    for text in texts:
        print(text)
        print('---------------')
    if cfg.output_file:
        run = dict(sampler=sampler_kind, mode=mode, checkpoint=path, remasking_checkpoint=rpath,
                   forward_passes_per_sample=forward_rows / cfg.num_samples, settings=dict(cfg))
        write_jsonl(cfg.output_file, texts, per_sample, run)
        print(f"wrote {len(texts)} samples to {cfg.output_file}")
    return texts, per_sample


if __name__ == '__main__':
    run_cli(main)
