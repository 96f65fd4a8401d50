"""
The training objectives, in one place: which positions of a batch carry a loss and what label each
one has. Every objective reduces to the same thing, a float32 cross-entropy over the positions whose
label is not IGNORE_INDEX, so there is one helper that computes it per row and everything else only
builds labels. See docs/model.md for what each objective teaches the model.

    unmasking       x has [MASK] (or other corruption) at some positions; learn the original there.
    remasking       x has real but wrong characters at some positions; learn the original character
                    where x is right and [WRONG] where x was corrupted. Two loss scopes:
                    'corrupted_only' (Approach A) and 'all_positions' (Approach B).
    merged          both jobs in one network: x has [MASK] at some positions and real but wrong
                    characters at others; learn the original at [MASK], and at every visible
                    position the character itself where x is right and [WRONG] where it was corrupted.
    autoregressive  the causal reference model: next-character prediction on clean text.

How an unmasking batch's position losses make one number is `loss_weighting`: 'mean' over every
labelled position, or 'elbo', the masked-diffusion bound's 1/t weighting (see _elbo_mean).
`validation_nelbo_bits` scores an unmasking model by that bound on the clean validation text,
whatever it was trained with, so runs compare.
"""

from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn import functional as F

import eval_metrics as em
from common import UserError
from data.corpus import IGNORE_INDEX

TRAINING_TYPES = ('unmasking', 'remasking', 'autoregressive', 'merged')
REMASKING_LOSS_TYPES = ('corrupted_only', 'all_positions')
# corruptions that put only real characters into x unless meta['mixture_has_mask'] says they add
# [MASK] too: what a remasking model must see
MASK_FREE_CORRUPTIONS = ('random_replacement', 'inference_replacement', 'sampler_states')


def _cross_entropy_per_row(logits, labels):
    """(loss_sum (B,), count (B,)): float32 CE summed over each row's positions whose label is not
    IGNORE_INDEX, and how many there were. Ignored positions contribute an exact 0 that still has a
    gradient, so a batch without any labelled position gives a loss of 0, not NaN."""
    B, T, V = logits.shape
    ce = F.cross_entropy(logits.float().reshape(B * T, V), labels.reshape(B * T),
                         ignore_index=IGNORE_INDEX, reduction='none').view(B, T)  # (B, T)
    return ce.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def _mean(loss_sum, count):
    """Mean over every labelled position of the batch (not a mean of row means: rows with more
    labels weigh more, exactly like F.cross_entropy with ignore_index)."""
    return loss_sum.sum() / count.sum().clamp(min=1)


def _elbo_mean(loss_sum, count):
    """The continuous-time ELBO weighting, normalised to nats per character: row i's masked-position
    losses weighted by 1/t_i and divided by T, with t_i = k_i / T its masked fraction, is
    loss_sum_i / k_i, the mean of its masked-position losses; the rows are averaged (a row with
    nothing masked has no term in the bound and is left out). Under a uniform stage k is uniform on
    0..T, and this is eval_metrics' count-form NELBO estimator (k ~ U{1..T}, weight T/k)."""
    labelled = count > 0  # (B,)
    row_means = loss_sum / count.clamp(min=1)  # (B,)
    return (row_means * labelled).sum() / labelled.sum().clamp(min=1)


LOSS_REDUCTIONS = {'mean': _mean, 'elbo': _elbo_mean}  # loss_weighting -> (loss_sum, count) -> scalar
LOSS_WEIGHTINGS = tuple(LOSS_REDUCTIONS)


def check_loss_weighting(loss_weighting, training_type, meta=None):
    """UserError (one line) unless `loss_weighting` can weigh this training type (and, given `meta`,
    this queue): 'elbo' is the masked-diffusion bound, for unmasking with labels only where masked."""
    if loss_weighting not in LOSS_WEIGHTINGS:
        raise UserError(f"loss_weighting={loss_weighting!r} is unknown; use one of {LOSS_WEIGHTINGS}")
    if loss_weighting != 'elbo':
        return
    if training_type != 'unmasking':
        raise UserError(f"loss_weighting='elbo' weighs the masked-diffusion bound of training_type='unmasking'; "
                        f"use loss_weighting='mean' for training_type={training_type!r}")
    if meta is not None and meta.get('label_semantics') != 'partial':
        raise UserError(f"loss_weighting='elbo' needs labels only at the masked positions (their share is t), but the "
                        f"queue has label_semantics={meta.get('label_semantics')!r}: use char_diffusion or "
                        f"dataset_partial_targets=True, or loss_weighting='mean'")


def clean_text(x, y):
    """The uncorrupted sequence (B, T) from any queue: y where it has a label, x where it is ignored
    (with partial labels the ignored positions are exactly the ones left untouched in x)."""
    return torch.where(y == IGNORE_INDEX, x, y)


def remasking_targets(x, y, wrong_token_id):
    """(targets, corrupted) for remasking: x is the corrupted input (real characters at corrupted
    positions), y the original text (full targets). corrupted = (x != y); targets is y where x is
    unchanged and wrong_token_id where it was corrupted. Positions where y is IGNORE_INDEX stay ignored
    (a partial-label queue cannot train remasking; check_queue_fits refuses it up front)."""
    corrupted = (x != y) & (y != IGNORE_INDEX)  # (B, T) bool
    targets = torch.where(corrupted, torch.full_like(y, wrong_token_id), y)  # (B, T)
    return targets, corrupted


def remasking_labels(x, y, wrong_token_id, loss_type):
    """Labels (B, T) for a remasking loss scope.

    'corrupted_only' (Approach A): loss only where x was corrupted, label [WRONG] there. Every
        labelled position has the same answer, so this rewards predicting [WRONG] everywhere: it never
        penalises flagging a correct character. Kept as specified, for the A/B comparison.
    'all_positions' (Approach B): loss at every position; [WRONG] where corrupted, the original
        character elsewhere. This rewards both catching wrong characters and leaving right ones alone
        (flagging a correct character costs as much as missing a wrong one).
    """
    targets, corrupted = remasking_targets(x, y, wrong_token_id)
    if loss_type == 'corrupted_only':
        return targets.masked_fill(~corrupted, IGNORE_INDEX)
    if loss_type == 'all_positions':
        return targets
    raise UserError(f"remasking_loss_type={loss_type!r} is unknown; use one of {REMASKING_LOSS_TYPES}")


def merged_labels(x, y, mask_token_id, wrong_token_id):
    """Labels (B, T) of the merged model, at every position: the original character where x is
    [MASK] (unmasking) or right, [WRONG] where x holds a real character that differs from y
    (remasking, Approach B). Needs full targets, like remasking."""
    targets, _ = remasking_targets(x, y, wrong_token_id)  # (B, T): [WRONG] wherever x != y, [MASK] included
    return torch.where(x == mask_token_id, y, targets)


def _logits_and_labels(logits, x, y, training_type, remasking_loss_type, wrong_token_id, mask_token_id):
    """The logits and the labels (with IGNORE_INDEX where no loss) that define each training type."""
    if training_type == 'unmasking':
        return logits, y
    if training_type == 'remasking':
        return logits, remasking_labels(x, y, wrong_token_id, remasking_loss_type)
    if training_type == 'merged':
        return logits, merged_labels(x, y, mask_token_id, wrong_token_id)
    if training_type == 'autoregressive':
        # position t predicts character t+1; the model must have been fed clean_text(x, y) (x == y for
        # a full-label queue with no corruption), otherwise this is not the autoregressive reference
        return logits[:, :-1], clean_text(x, y)[:, 1:]  # (B, T-1, V), (B, T-1)
    raise UserError(f"training_type={training_type!r} is unknown; use one of {TRAINING_TYPES}")


def per_row_loss(logits, x, y, training_type, remasking_loss_type=None, wrong_token_id=None, mask_token_id=None):
    """(loss_sum (B,), count (B,)) for each row, so that losses can be averaged per validation stage:
    stage loss = loss_sum[rows].sum() / count[rows].sum()."""
    return _cross_entropy_per_row(*_logits_and_labels(logits, x, y, training_type, remasking_loss_type,
                                                      wrong_token_id, mask_token_id))


def compute_loss(logits, x, y, training_type, remasking_loss_type=None, wrong_token_id=None, mask_token_id=None,
                 loss_weighting='mean'):
    """Scalar training loss: logits (B, T, V) from the model on input x (B, T); y (B, T) the queue's labels;
    the position losses combined as `loss_weighting` says (LOSS_REDUCTIONS)."""
    reduce = LOSS_REDUCTIONS[loss_weighting]
    return reduce(*per_row_loss(logits, x, y, training_type, remasking_loss_type, wrong_token_id, mask_token_id))


def unmasking_loss(logits, targets):
    """CE over positions whose target is not IGNORE_INDEX (all of them with full targets); 0 when none."""
    return _mean(*_cross_entropy_per_row(logits, targets))


def remasking_loss(logits, x, y, wrong_token_id, loss_type):
    """Remasking CE with the scope of `loss_type` (see remasking_labels for what each rewards)."""
    return _mean(*_cross_entropy_per_row(logits, remasking_labels(x, y, wrong_token_id, loss_type)))


def model_input(x, y, training_type):
    """What the model reads: the corrupted x, or for the autoregressive model the clean text."""
    return clean_text(x, y) if training_type == 'autoregressive' else x


def stage_names(meta):
    """'stage_<i>_<type>' for each validation stage, or [] when the queue has no stage list."""
    stages = meta.get('validation_stages')
    if not isinstance(stages, (list, tuple)):
        return []
    return [f"stage_{i}_{s.get('type', 'stage') if isinstance(s, dict) else 'stage'}" for i, s in enumerate(stages)]


@torch.no_grad()
def validation_loss(model, batches, meta, training_type, remasking_loss_type=None, autocast=None,
                    rank=0, world_size=1):
    """{'val/loss': ..., 'val/stage_<i>_<type>': ...}: the loss over validation `batches` (dicts of
    (B, T) tensors 'x', 'y' and optionally 'stage' (B,)), overall and per validation stage of `meta`.

    The loss is averaged over labelled positions, not over batches, so it is the same number however
    the set is split. With world_size > 1 each rank takes every world_size-th batch and the sums are
    all-reduced. The model is in eval mode meanwhile and goes back to the mode it was in.
    """
    names = stage_names(meta)
    n = len(names)
    sums = None  # [loss, count, stage losses..., stage counts...] in float64, on the batches' device
    was_training = model.training
    model.eval()
    for i, batch in enumerate(batches):
        if sums is None:
            sums = torch.zeros(2 + 2 * n, dtype=torch.float64, device=batch['x'].device)
        if i % world_size != rank:
            continue
        with autocast or nullcontext():
            logits, _ = model(model_input(batch['x'], batch['y'], training_type))  # (B, T, V)
        loss_sum, count = per_row_loss(logits, batch['x'], batch['y'], training_type, remasking_loss_type,
                                       meta['wrong_token_id'], meta['mask_token_id'])  # (B,), (B,)
        sums[0] += loss_sum.sum().double()
        sums[1] += count.sum().double()
        if n and 'stage' in batch:
            stage = batch['stage'].long()
            sums[2:2 + n].index_add_(0, stage, loss_sum.double())
            sums[2 + n:].index_add_(0, stage, count.double())
    model.train(was_training)
    if sums is not None and world_size > 1:
        dist.all_reduce(sums)
    if sums is None or sums[1] == 0:
        raise UserError("the validation set gave no labelled positions; is eval_iters at least 1 and "
                        "does the queue have validation files?")
    losses = {'val/loss': (sums[0] / sums[1]).item()}
    for i, name in enumerate(names):
        if sums[2 + n + i] > 0:
            losses[f'val/{name}'] = (sums[2 + i] / sums[2 + n + i]).item()
    return losses


# for the training types that need a particular queue: the config that makes one
QUEUE_FIXES = {
    'remasking': ("use config/train_remasking_all_positions.py (char_random_replacement with "
                  "dataset_partial_targets=False and train_corruption_mixture with mask weight 0)"),
    'merged': ("use config/train_merged.py (char_sampler_states with left_masked_ratio_range above 0), or "
               "char_random_replacement with dataset_partial_targets=False and a mask weight above 0"),
}


VAL_NELBO_SEED = 0  # the masks of validation_nelbo_bits: the same in every evaluation and every run


@torch.no_grad()
def validation_nelbo_bits(model, batches, meta, autocast=None, rank=0, world_size=1):
    """The masked-diffusion NELBO in bits per character of the clean text of validation `batches`
    (clean_text(x, y) of each), by eval_metrics' count estimator: one random set of k ~ U{1..T}
    masked positions per row, weight T/k. Batch i masks with a generator seeded VAL_NELBO_SEED + i,
    so every evaluation and every run (any world size: rank r takes every world_size-th batch)
    scores the same masked rows. An estimate over eval_iters * batch_size rows, not the full bound.
    """
    def logits_fn(ids):
        with autocast or nullcontext():
            return model(ids)[0]  # (B, T, V)
    sums = None  # [sum of the row estimates in nats per character, rows], float64 on the batches' device
    was_training = model.training
    model.eval()
    for i, batch in enumerate(batches):
        if sums is None:
            sums = torch.zeros(2, dtype=torch.float64, device=batch['x'].device)
        if i % world_size != rank:
            continue
        generator = torch.Generator(device=batch['x'].device).manual_seed(VAL_NELBO_SEED + i)
        rows = em.elbo_row_estimates(logits_fn, clean_text(batch['x'], batch['y']), len(meta['stoi']),
                                     meta['mask_token_id'], generator, estimator='count')  # (B,)
        sums[0] += rows.sum()
        sums[1] += rows.numel()
    model.train(was_training)
    if sums is not None and world_size > 1:
        dist.all_reduce(sums)
    if sums is None or sums[1] == 0:
        raise UserError("the validation set is empty; is eval_iters at least 1?")
    return (sums[0] / sums[1]).item() / em.LN2


def check_queue_fits(meta, training_type):
    """Raise UserError (one line naming the config to use) when the queue described by `meta` cannot
    train `training_type`.

    unmasking accepts partial or full labels. remasking needs full labels and corruption made only of
    real characters (no [MASK] share), because it derives [WRONG] from x != y. merged needs full labels
    and a [MASK] share (it learns to fill [MASK] and to flag the other changed characters).
    autoregressive accepts any queue: it learns from clean_text(x, y), which every label semantics can
    reconstruct.
    """
    if training_type not in TRAINING_TYPES:
        raise UserError(f"training_type={training_type!r} is unknown; use one of {TRAINING_TYPES}")
    if training_type not in QUEUE_FIXES:
        return
    fix = QUEUE_FIXES[training_type]
    queue = (f"the queue has label_semantics={meta.get('label_semantics')!r}, corruption_type="
             f"{meta.get('corruption_type')!r}, mixture_has_mask={meta.get('mixture_has_mask')!r}")
    if meta.get('label_semantics') != 'full':
        raise UserError(f"{training_type} needs full targets but {queue}: {fix}")
    has_mask = meta.get('mixture_has_mask') or meta.get('corruption_type') not in MASK_FREE_CORRUPTIONS
    if training_type == 'remasking' and has_mask:
        raise UserError(f"remasking needs full targets without a [MASK] share but {queue}: {fix}")
    if training_type == 'merged' and not meta.get('mixture_has_mask'):
        raise UserError(f"merged needs [MASK] positions in x (besides wrong characters) but {queue}: {fix}")
