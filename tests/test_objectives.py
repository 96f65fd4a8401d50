"""objectives.py on hand-made batches whose cross-entropies are computed by hand with math.log."""
import math

import pytest
import torch
from torch.nn import functional as F

from common import UserError
from objectives import (check_queue_fits, clean_text, compute_loss, merged_labels, per_row_loss, remasking_loss,
                        remasking_targets, unmasking_loss)

# vocabulary of the hand-made batch: 'a' = 0, 'b' = 1, [MASK] = 2, [WRONG] = 3
A, B_, MASK, WRONG = 0, 1, 2, 3
IGNORE = -100

# one row, three positions; log-probabilities are exactly the logs of these probabilities
PROBS = [[0.5, 0.25, 0.125, 0.125],
         [0.1, 0.2, 0.1, 0.6],
         [0.2, 0.4, 0.1, 0.3]]
LOGITS = torch.tensor(PROBS).log().unsqueeze(0)  # (1, 3, 4)

# original "aab"; the corruption replaced position 1 by the real character 'b'
CLEAN = torch.tensor([[A, A, B_]])
CORRUPTED = torch.tensor([[A, B_, B_]])


def nll(position, token):
    return -math.log(PROBS[position][token])


def test_remasking_targets_mark_changed_positions_wrong():
    targets, corrupted = remasking_targets(CORRUPTED, CLEAN, WRONG)
    assert corrupted.tolist() == [[False, True, False]]
    assert targets.tolist() == [[A, WRONG, B_]]


def test_remasking_targets_on_a_two_row_batch():
    x = torch.tensor([[1, 2, 3, 4], [5, 5, 5, 5]])
    y = torch.tensor([[1, 0, 3, 0], [5, 5, 5, 5]])
    targets, corrupted = remasking_targets(x, y, wrong_token_id=9)
    assert targets.tolist() == [[1, 9, 3, 9], [5, 5, 5, 5]]
    assert corrupted.sum().item() == 2


def test_unmasking_loss_with_partial_and_full_targets():
    partial = torch.tensor([[IGNORE, A, IGNORE]])  # only the masked position has a label
    assert unmasking_loss(LOGITS, partial).item() == pytest.approx(nll(1, A))
    full = CLEAN
    expected = (nll(0, A) + nll(1, A) + nll(2, B_)) / 3
    assert unmasking_loss(LOGITS, full).item() == pytest.approx(expected)


def test_remasking_approach_a_scores_only_the_corrupted_position():
    loss = remasking_loss(LOGITS, CORRUPTED, CLEAN, WRONG, 'corrupted_only')
    assert loss.item() == pytest.approx(nll(1, WRONG))


def test_remasking_approach_b_scores_every_position():
    loss = remasking_loss(LOGITS, CORRUPTED, CLEAN, WRONG, 'all_positions')
    expected = (nll(0, A) + nll(1, WRONG) + nll(2, B_)) / 3
    assert loss.item() == pytest.approx(expected)


def test_approach_a_does_not_penalise_flagging_correct_characters():
    """A model that says [WRONG] everywhere is perfect under A and punished under B."""
    always_wrong = torch.full((1, 3, 4), -20.0)
    always_wrong[..., WRONG] = 20.0
    loss_a = remasking_loss(always_wrong, CORRUPTED, CLEAN, WRONG, 'corrupted_only')
    loss_b = remasking_loss(always_wrong, CORRUPTED, CLEAN, WRONG, 'all_positions')
    assert loss_a.item() < 1e-6
    assert loss_b.item() > 10.0


def test_remasking_without_corruption_is_zero_under_a_with_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    loss = remasking_loss(logits, CLEAN, CLEAN, WRONG, 'corrupted_only')
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# the merged model's input: position 0 masked, position 1 replaced by the real character 'b'
MERGED_X = torch.tensor([[MASK, B_, B_]])


def test_merged_labels_unmask_the_masked_and_flag_the_wrong():
    assert merged_labels(MERGED_X, CLEAN, MASK, WRONG).tolist() == [[A, WRONG, B_]]
    x = torch.tensor([[MASK, 1, 7, MASK], [5, MASK, 6, 5]])
    y = torch.tensor([[4, 1, 3, 0], [5, 2, 5, 5]])
    # masked: the original (even when it equals another character of x); visible: itself or [WRONG]
    assert merged_labels(x, y, mask_token_id=MASK, wrong_token_id=9).tolist() == [[4, 1, 9, 0], [5, 2, 9, 5]]


def test_merged_loss_scores_every_position_by_hand():
    loss = compute_loss(LOGITS, MERGED_X, CLEAN, 'merged', None, WRONG, MASK)
    expected = (nll(0, A) + nll(1, WRONG) + nll(2, B_)) / 3  # unmask 'a', flag the 'b', keep the 'b'
    assert loss.item() == pytest.approx(expected)
    loss_sum, count = per_row_loss(LOGITS, MERGED_X, CLEAN, 'merged', None, WRONG, MASK)
    assert loss_sum.item() == pytest.approx(3 * expected) and count.tolist() == [3]
    # a remasking objective would call the masked position wrong: the merged one does not
    assert remasking_targets(MERGED_X, CLEAN, WRONG)[0].tolist() == [[WRONG, WRONG, B_]]


def test_unknown_loss_and_training_types_are_refused():
    with pytest.raises(UserError, match='remasking_loss_type'):
        remasking_loss(LOGITS, CORRUPTED, CLEAN, WRONG, 'some_positions')
    with pytest.raises(UserError, match='training_type'):
        compute_loss(LOGITS, CORRUPTED, CLEAN, 'denoising')


def test_compute_loss_dispatches_to_each_objective():
    assert compute_loss(LOGITS, CORRUPTED, CLEAN, 'unmasking').item() == pytest.approx(unmasking_loss(LOGITS, CLEAN).item())
    for loss_type in ('corrupted_only', 'all_positions'):
        expected = remasking_loss(LOGITS, CORRUPTED, CLEAN, WRONG, loss_type).item()
        assert compute_loss(LOGITS, CORRUPTED, CLEAN, 'remasking', loss_type, WRONG).item() == pytest.approx(expected)


def test_autoregressive_predicts_the_next_character():
    loss = compute_loss(LOGITS, CLEAN, CLEAN, 'autoregressive')
    expected = (nll(0, A) + nll(1, B_)) / 2  # position 0 predicts 'a', position 1 predicts 'b'; the last has no next
    assert loss.item() == pytest.approx(expected)


def test_clean_text_rebuilds_the_original_from_partial_labels():
    masked = torch.tensor([[A, MASK, B_]])
    partial = torch.tensor([[IGNORE, A, IGNORE]])
    assert torch.equal(clean_text(masked, partial), CLEAN)
    assert torch.equal(clean_text(CORRUPTED, CLEAN), CLEAN)


@pytest.mark.parametrize('training_type,loss_type', [
    ('unmasking', None), ('remasking', 'corrupted_only'), ('remasking', 'all_positions'), ('autoregressive', None),
    ('merged', None)])
def test_per_row_loss_is_consistent_with_compute_loss(training_type, loss_type):
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 4)
    y = torch.randint(0, 2, (3, 6))
    x = torch.where(torch.rand(3, 6) < 0.3, 1 - y, y)  # some characters swapped
    if training_type == 'merged':
        x = torch.where(torch.rand(3, 6) < 0.3, MASK, x)  # and some masked
    if training_type == 'unmasking':
        y = torch.where(x != y, y, IGNORE)
    loss_sum, count = per_row_loss(logits, x, y, training_type, loss_type, WRONG, MASK)
    assert loss_sum.shape == count.shape == (3,)
    assert compute_loss(logits, x, y, training_type, loss_type, WRONG, MASK).item() == pytest.approx(
        (loss_sum.sum() / count.sum().clamp(min=1)).item())
    # each row alone gives the same sum as its slice of the batch
    for row in range(3):
        row_sum, row_count = per_row_loss(logits[row:row + 1], x[row:row + 1], y[row:row + 1], training_type,
                                          loss_type, WRONG, MASK)
        assert row_sum.item() == pytest.approx(loss_sum[row].item())
        assert row_count.item() == count[row].item()


def test_per_row_loss_on_the_hand_made_batch():
    loss_sum, count = per_row_loss(LOGITS, CORRUPTED, CLEAN, 'remasking', 'all_positions', WRONG)
    assert loss_sum.item() == pytest.approx(nll(0, A) + nll(1, WRONG) + nll(2, B_))
    assert count.tolist() == [3]


def test_loss_is_float32_under_half_precision_logits():
    logits = LOGITS.to(torch.bfloat16)
    loss = unmasking_loss(logits, CLEAN)
    assert loss.dtype == torch.float32
    reference = F.cross_entropy(logits.float().view(-1, 4), CLEAN.view(-1))
    assert loss.item() == pytest.approx(reference.item())


REMASKING_META = dict(label_semantics='full', corruption_type='random_replacement', mixture_has_mask=False)


@pytest.mark.parametrize('meta', [
    REMASKING_META,
    dict(REMASKING_META, corruption_type='inference_replacement'),
])
def test_queue_that_fits_remasking_is_accepted(meta):
    check_queue_fits(meta, 'remasking')


@pytest.mark.parametrize('changes,word', [
    (dict(label_semantics='partial'), 'full targets'),
    (dict(mixture_has_mask=True), '\\[MASK\\]'),
    (dict(corruption_type='bert_masking'), '\\[MASK\\]'),
    (dict(corruption_type=None), '\\[MASK\\]'),
])
def test_queue_that_cannot_train_remasking_is_refused(changes, word):
    with pytest.raises(UserError, match=word) as raised:
        check_queue_fits(dict(REMASKING_META, **changes), 'remasking')
    message = str(raised.value)
    assert 'config/train_remasking_all_positions.py' in message and '\n' not in message


@pytest.mark.parametrize('training_type', ['unmasking', 'autoregressive'])
@pytest.mark.parametrize('label_semantics', ['partial', 'full'])
def test_unmasking_and_autoregressive_accept_any_labels(training_type, label_semantics):
    check_queue_fits(dict(label_semantics=label_semantics, corruption_type='bert_masking'), training_type)


MERGED_META = dict(label_semantics='full', corruption_type='sampler_states', mixture_has_mask=True)


@pytest.mark.parametrize('meta', [
    MERGED_META,
    dict(MERGED_META, corruption_type='random_replacement'),
    dict(MERGED_META, corruption_type='inference_replacement'),
])
def test_queue_that_fits_merged_is_accepted(meta):
    check_queue_fits(meta, 'merged')


@pytest.mark.parametrize('changes,word', [
    (dict(label_semantics='partial'), 'full targets'),
    (dict(mixture_has_mask=False), '\\[MASK\\] positions'),
    (dict(mixture_has_mask=None, corruption_type='masking', label_semantics='partial'), 'full targets'),
])
def test_queue_that_cannot_train_merged_is_refused(changes, word):
    with pytest.raises(UserError, match=word) as raised:
        check_queue_fits(dict(MERGED_META, **changes), 'merged')
    message = str(raised.value)
    assert 'config/train_merged.py' in message and '\n' not in message


def test_unknown_training_type_is_refused_by_check_queue_fits():
    with pytest.raises(UserError, match='training_type'):
        check_queue_fits(REMASKING_META, 'editing')
