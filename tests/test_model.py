"""model.py: attention masks, SDPA against a plain reference, tying, counts, optimizer groups, loss."""
import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from checkpoints import model_from_checkpoint
from common import UserError
from model import GPT, GPTConfig, Rotary, apply_rotary, rotary_tables


def tiny_config(**overrides):
    fields = dict(block_size=12, vocab_size=9, n_layer=2, n_head=2, n_embd=16)
    fields.update(overrides)
    return GPTConfig(**fields)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(tiny_config(**overrides)).eval()


ALL_VARIANTS = [(a, p) for a in ('bidirectional', 'causal') for p in ('learned', 'rotary')]


@pytest.mark.parametrize('attention_type,pos_encoding', ALL_VARIANTS)
def test_forward_gives_logits_at_every_position(attention_type, pos_encoding):
    model = tiny_model(attention_type=attention_type, pos_encoding=pos_encoding)
    idx = torch.randint(0, 9, (3, 12))
    logits, loss = model(idx)
    assert logits.shape == (3, 12, 9)
    assert loss is None
    logits, loss = model(idx[:, :5], idx[:, :5])  # shorter than block_size works too
    assert logits.shape == (3, 5, 9) and torch.isfinite(loss)


def logits_after_changing_token(model, position):
    torch.manual_seed(1)
    idx = torch.randint(0, 9, (2, 12))
    changed = idx.clone()
    changed[:, position] = (changed[:, position] + 1) % 9
    with torch.no_grad():
        return model(idx)[0], model(changed)[0]


@pytest.mark.parametrize('pos_encoding', ['learned', 'rotary'])
def test_causal_attention_hides_the_future(pos_encoding):
    before, after = logits_after_changing_token(tiny_model(attention_type='causal', pos_encoding=pos_encoding), 6)
    assert torch.equal(before[:, :6], after[:, :6])
    assert not torch.allclose(before[:, 6:], after[:, 6:])


@pytest.mark.parametrize('pos_encoding', ['learned', 'rotary'])
def test_bidirectional_attention_sees_the_future(pos_encoding):
    before, after = logits_after_changing_token(tiny_model(pos_encoding=pos_encoding), 6)
    for t in range(12):
        assert not torch.allclose(before[:, t], after[:, t]), f"position {t} ignored a change at 6"


def manual_attention(attn, x, causal, rotary=None):
    """Plain softmax(Q K^T / sqrt(d) [+ causal mask]) V with the module's own weights."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, v = (t.view(B, T, attn.n_head, hs).transpose(1, 2) for t in attn.qkv(x).split(C, dim=2))
    if rotary is not None:
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
    if causal:
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float('-inf'))
    y = torch.softmax(scores, dim=-1) @ v  # (B, nh, T, hs)
    return attn.residual_proj(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize('attention_type,pos_encoding', ALL_VARIANTS)
def test_sdpa_matches_manual_attention(attention_type, pos_encoding):
    model = tiny_model(attention_type=attention_type, pos_encoding=pos_encoding)
    attn = model.blocks[0].attn
    x = torch.randn(2, 12, 16)
    hs = model.config.n_embd // model.config.n_head
    rotary = rotary_tables(model.config.block_size, hs) if pos_encoding == 'rotary' else None  # the plain tables
    with torch.no_grad():
        expected = manual_attention(attn, x, attention_type == 'causal', rotary)
        fast = (model.rotary_cos, model.rotary_sin) if pos_encoding == 'rotary' else None
        assert torch.allclose(attn(x, fast), expected, atol=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = rotary_tables(block_size=10, head_size=8)
    q, k = torch.randn(8), torch.randn(8)

    def score(q_pos, k_pos):
        return apply_rotary(q, cos[q_pos], sin[q_pos]) @ apply_rotary(k, cos[k_pos], sin[k_pos])

    assert torch.allclose(score(2, 5), score(6, 9), atol=1e-5)
    assert not torch.allclose(score(2, 5), score(2, 6), atol=1e-3)


def test_fast_rotary_matches_the_plain_formula_in_values_and_gradients():
    B, nh, T, hs = 2, 3, 7, 8
    cos, sin = rotary_tables(T, hs)  # (T, hs/2)
    cos_full, sin_signed = torch.cat((cos, cos), -1).double(), torch.cat((-sin, sin), -1).double()
    x = torch.randn(B, nh, T, hs, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(B, nh, T, hs, dtype=torch.float64)
    fast = Rotary.apply(x, cos_full, sin_signed)
    (fast_grad,) = torch.autograd.grad(fast, x, grad)
    plain = apply_rotary(x, cos.double(), sin.double())
    (plain_grad,) = torch.autograd.grad(plain, x, grad)
    assert torch.allclose(fast, plain) and torch.allclose(fast_grad, plain_grad)
    assert torch.autograd.gradcheck(lambda t: Rotary.apply(t, cos_full, sin_signed), (x[:1, :1],))
    assert Rotary.apply(x.float().detach(), cos_full.float(), sin_signed.float()).dtype == torch.float32
    assert Rotary.apply(x.bfloat16().detach(), cos_full.float(), sin_signed.float()).dtype == torch.bfloat16


def test_lm_head_is_tied_to_token_embedding():
    model = tiny_model()
    assert model.lm_head.weight is model.wte.weight
    assert sum(p is model.wte.weight for p in model.parameters()) == 1


@pytest.mark.parametrize('bias', [False, True])
def test_parameter_count(bias):
    V, T, C, L = 9, 12, 16, 2
    model = tiny_model(bias=bias)
    per_layer = 12 * C * C + 2 * C  # qkv 3C^2, attention proj C^2, MLP 8C^2, two LayerNorm gains
    if bias:
        per_layer += 3 * C + C + 4 * C + C + 2 * C  # qkv, proj, MLP in and out, LayerNorm biases
    final_ln = 2 * C if bias else C
    expected = V * C + T * C + L * per_layer + final_ln
    assert model.get_num_params(non_embedding=False) == expected
    assert model.get_num_params() == expected - T * C  # the position table is not counted


def test_rotary_has_no_position_table_and_no_saved_buffers():
    model = tiny_model(pos_encoding='rotary')
    assert model.wpe is None
    assert not any('rotary' in key for key in model.state_dict())


def test_optimizer_decays_only_matrices(capsys):
    model = tiny_model(bias=True)
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95), device_type='cpu')
    decayed, not_decayed = optimizer.param_groups
    assert decayed['weight_decay'] == 0.1 and not_decayed['weight_decay'] == 0.0
    assert all(p.dim() >= 2 for p in decayed['params'])
    assert all(p.dim() < 2 for p in not_decayed['params'])
    in_groups = {id(p) for p in decayed['params'] + not_decayed['params']}
    assert in_groups == {id(p) for p in model.parameters()}
    assert not optimizer.defaults.get('fused')  # fused only on cuda
    assert 'decayed' in capsys.readouterr().out


def test_loss_matches_cross_entropy_with_ignored_positions():
    model = tiny_model()
    idx = torch.randint(0, 9, (3, 12))
    targets = torch.randint(0, 9, (3, 12))
    targets[torch.rand(3, 12) < 0.5] = -100
    targets[0, 0] = 4  # at least one labelled position
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits.view(-1, 9), targets.view(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_all_ignored_batch_gives_zero_loss_with_gradient():
    model = tiny_model()
    model.train()
    idx = torch.randint(0, 9, (2, 12))
    _, loss = model(idx, torch.full((2, 12), -100))
    assert loss.item() == 0.0
    loss.backward()  # must not fail, and must not poison the weights with NaN
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_model_args_round_trip_through_a_checkpoint():
    config = tiny_config(attention_type='causal', pos_encoding='rotary', dropout=0.1, bias=True)
    assert GPTConfig(**dataclasses.asdict(config)) == config
    model = GPT(config).eval()
    checkpoint = {'model': model.state_dict(), 'model_args': dataclasses.asdict(config)}
    rebuilt = model_from_checkpoint(checkpoint)
    idx = torch.randint(0, 9, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], rebuilt(idx)[0])


@pytest.mark.parametrize('bad,word', [
    (dict(n_embd=15, n_head=2), 'divisible'),
    (dict(attention_type='sideways'), 'attention_type'),
    (dict(pos_encoding='alibi'), 'pos_encoding'),
    (dict(n_embd=12, n_head=4, pos_encoding='rotary'), 'even'),
    (dict(n_layer=0), 'n_layer'),
])
def test_bad_config_is_refused_with_a_clear_message(bad, word):
    with pytest.raises(UserError, match=word):
        tiny_config(**bad)


def test_sequence_longer_than_block_size_is_refused():
    with pytest.raises(UserError, match='block_size'):
        tiny_model()(torch.zeros(1, 13, dtype=torch.long))


def test_dropout_only_in_training():
    model = tiny_model(dropout=0.5)
    idx = torch.randint(0, 9, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], model(idx)[0])
        model.train()
        assert not torch.equal(model(idx)[0], model(idx)[0])


def test_mfu_follows_the_flop_count():
    model = tiny_model()
    flops_per_iter = model.flops_per_token() * 12 * 4
    assert model.estimate_mfu(fwdbwd_per_iter=4, dt=2.0, peak_flops=1e9) == pytest.approx(flops_per_iter / 2.0 / 1e9)


@pytest.mark.parametrize('attention_type', ['bidirectional', 'causal'])
def test_a_few_steps_memorise_a_tiny_batch(attention_type):
    model = tiny_model(attention_type=attention_type)
    model.train()
    optimizer = model.configure_optimizers(0.0, 1e-2, (0.9, 0.95), 'cpu')
    torch.manual_seed(2)
    idx = torch.randint(0, 9, (4, 12))
    targets = torch.randint(0, 9, (4, 12))
    losses = []
    for _ in range(40):
        _, loss = model(idx, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
