"""loss_weighting ('mean' | 'elbo') against hand-computed values, its checks, and val/nelbo_bits:
eval_metrics' count estimator over the validation rows with the same masks at every evaluation."""
import math

import pytest
import torch
from torch.nn import functional as F

import eval_metrics as em
from common import UserError
from data.corpus import IGNORE_INDEX as IGNORE
from objectives import (LOSS_WEIGHTINGS, VAL_NELBO_SEED, check_loss_weighting, clean_text, compute_loss,
                        validation_nelbo_bits)

# two rows of four positions, vocabulary of three: row 0 has one masked position, row 1 three
LOGITS = torch.log(torch.tensor([
    [[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2]],
    [[0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.6, 0.2, 0.2], [0.5, 0.25, 0.25]],
]))
LABELS = torch.tensor([[0, IGNORE, IGNORE, IGNORE],
                       [1, 2, IGNORE, 1]])
X = torch.zeros(2, 4, dtype=torch.long)  # the unmasking loss reads only the labels


def test_mean_is_over_every_masked_position():
    expected = (-math.log(0.5) - math.log(0.8) - math.log(0.5) - math.log(0.25)) / 4
    assert compute_loss(LOGITS, X, LABELS, 'unmasking').item() == pytest.approx(expected)
    assert compute_loss(LOGITS, X, LABELS, 'unmasking', loss_weighting='mean').item() == pytest.approx(expected)


def test_elbo_weights_each_row_by_one_over_its_masked_fraction():
    # row i: (1 / t_i) * sum of its masked losses / T with t_i = k_i / T, i.e. the mean of its masked losses
    row_0 = (1 / (1 / 4)) * -math.log(0.5) / 4
    row_1 = (1 / (3 / 4)) * (-math.log(0.8) - math.log(0.5) - math.log(0.25)) / 4
    loss = compute_loss(LOGITS, X, LABELS, 'unmasking', loss_weighting='elbo')
    assert loss.item() == pytest.approx((row_0 + row_1) / 2)
    # a row with nothing masked has no term in the bound: it is left out, not averaged in as 0
    labels = torch.cat([LABELS, torch.full((1, 4), IGNORE)])
    logits = torch.cat([LOGITS, LOGITS[:1]])
    assert compute_loss(logits, torch.zeros(3, 4, dtype=torch.long), labels, 'unmasking',
                        loss_weighting='elbo').item() == pytest.approx((row_0 + row_1) / 2)


def test_elbo_loss_has_gradients_and_no_nan_without_any_label():
    logits = LOGITS.clone().requires_grad_()
    compute_loss(logits, X, LABELS, 'unmasking', loss_weighting='elbo').backward()
    assert logits.grad[0, 0].abs().sum() > 0 and logits.grad[0, 1].abs().sum() == 0
    empty = compute_loss(logits, X, torch.full((2, 4), IGNORE), 'unmasking', loss_weighting='elbo')
    assert empty.item() == 0.0


@pytest.mark.parametrize('weighting,training_type,meta,message', [
    ('sum', 'unmasking', None, r"loss_weighting='sum' is unknown; use one of \('mean', 'elbo'\)"),
    ('elbo', 'remasking', None, r"use loss_weighting='mean' for training_type='remasking'"),
    ('elbo', 'unmasking', dict(label_semantics='full'), r"needs labels only at the masked positions"),
])
def test_loss_weighting_refusals_are_one_line(weighting, training_type, meta, message):
    with pytest.raises(UserError, match=message) as error:
        check_loss_weighting(weighting, training_type, meta)
    assert '\n' not in str(error.value)


def test_loss_weightings_accepted():
    assert LOSS_WEIGHTINGS == ('mean', 'elbo')
    check_loss_weighting('elbo', 'unmasking', dict(label_semantics='partial'))
    check_loss_weighting('mean', 'remasking', dict(label_semantics='full'))


# ---------------------------------------------------------------------------------------------
# val/nelbo_bits

N_CHARS, MASK_ID, T = 5, 5, 12


class TinyModel(torch.nn.Module):
    """A model whose logits depend on its input ids and that remembers whether it was in eval mode."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(N_CHARS + 2, N_CHARS + 2)
        self.modes = []

    def forward(self, idx):
        self.modes.append(self.training)
        return self.table(idx) + 0.1 * idx.float().cumsum(1).unsqueeze(-1), None  # (B, T, V), no loss


def validation_batches(n_batches=3, batch_size=4):
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n_batches):
        clean = torch.randint(0, N_CHARS, (batch_size, T), generator=generator)
        masked = torch.rand(batch_size, T, generator=generator) < 0.5
        batches.append({'x': clean.masked_fill(masked, MASK_ID), 'y': clean.masked_fill(~masked, IGNORE)})
    return batches


META = {'stoi': {c: i for i, c in enumerate('abcde')}, 'mask_token_id': MASK_ID}


def test_val_nelbo_is_the_count_estimator_on_clean_text_with_fixed_masks():
    torch.manual_seed(0)
    model, batches = TinyModel(), validation_batches()
    model.train()
    bits = validation_nelbo_bits(model, batches, META)
    assert model.training and set(model.modes) == {False}  # evaluated in eval mode, mode restored
    # by hand: each batch's clean text, masks drawn by the count estimator from the batch's own seed
    rows = []
    for i, batch in enumerate(batches):
        clean = clean_text(batch['x'], batch['y'])
        generator = torch.Generator().manual_seed(VAL_NELBO_SEED + i)
        masked, weight = em.elbo_masks(4, T, 'count', generator, 'cpu')
        nll = em.char_nll(model(clean.masked_fill(masked, MASK_ID))[0], clean, N_CHARS)
        rows.append((nll.double() * masked).sum(1) * weight / T)
    assert bits == pytest.approx(torch.cat(rows).mean().item() / math.log(2))
    # the same masks at every evaluation, whatever random numbers were drawn in between
    torch.rand(100)
    assert validation_nelbo_bits(model, batches, META) == bits


def test_val_nelbo_of_a_uniform_model_is_log2_of_the_characters():
    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, N_CHARS + 2), None
    # every masked character costs log(5) nats: weight T/k times k masked positions / T = log 5 per character
    assert validation_nelbo_bits(Uniform(), validation_batches(), META) == pytest.approx(math.log2(N_CHARS))


def test_val_nelbo_of_an_empty_set_is_one_line():
    with pytest.raises(UserError, match='validation set is empty'):
        validation_nelbo_bits(TinyModel(), [], META)


def test_unmasking_loss_of_mean_weighting_is_cross_entropy():
    # the 'mean' weighting is exactly F.cross_entropy with ignore_index: today's behaviour
    reference = F.cross_entropy(LOGITS.reshape(-1, 3), LABELS.reshape(-1), ignore_index=IGNORE)
    assert compute_loss(LOGITS, X, LABELS, 'unmasking').item() == pytest.approx(reference.item())
