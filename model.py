"""
The transformer shared by every training type: a GPT-style stack of pre-LayerNorm blocks whose
attention is bidirectional (unmasking and remasking diffusion models) or causal (the autoregressive
reference). Unlike a next-token LM at inference, `forward` always returns logits for every position,
because a diffusion step reads predictions everywhere in the sequence.

Every model has the same vocabulary (corpus characters + [MASK] + [WRONG]), so an unmasking and a
remasking checkpoint have identical shapes and can be merged later. See docs/model.md.
"""

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from common import UserError
from objectives import unmasking_loss

ATTENTION_TYPES = ('bidirectional', 'causal')
POS_ENCODINGS = ('learned', 'rotary')


@dataclass
class GPTConfig:
    block_size: int = 256
    vocab_size: int = 67          # corpus characters + [MASK] + [WRONG]
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False            # biases in Linear and LayerNorm layers
    attention_type: str = 'bidirectional'  # 'bidirectional' | 'causal'
    pos_encoding: str = 'learned'          # 'learned' (absolute table) | 'rotary' (RoPE on q and k)

    def __post_init__(self):
        if self.attention_type not in ATTENTION_TYPES:
            raise UserError(f"attention_type={self.attention_type!r} is unknown; use one of {ATTENTION_TYPES}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise UserError(f"pos_encoding={self.pos_encoding!r} is unknown; use one of {POS_ENCODINGS}")
        for name in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd'):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.n_embd % self.n_head != 0:
            raise UserError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.pos_encoding == 'rotary' and (self.n_embd // self.n_head) % 2 != 0:
            raise UserError(f"rotary positions need an even head size; n_embd/n_head = {self.n_embd // self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout} must be in [0, 1)")


def rotary_tables(block_size, head_size, base=10000.0):
    """cos and sin tables (T, head_size/2) for rotary position embedding."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate pairs (first half, second half) of each head vector by a position-dependent angle.
    The plain formula, kept as the reference that tests compare the fast path with."""
    first, second = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1).type_as(x)


def swap_halves(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((second, first), dim=-1)


class Rotary(torch.autograd.Function):
    """apply_rotary with full-width tables, in three passes over memory each way.

    y = x * cos_full + swap_halves(x) * sin_signed, with cos_full = [cos, cos] and
    sin_signed = [-sin, sin] (T, hs). Autograd of the plain formula makes about twice as many passes,
    which on a CPU made rotary positions ~18% slower per step than learned ones. The rotation is
    orthogonal, so the gradient is the incoming one rotated back (the same formula with -sin) and
    nothing but the tables is saved.
    """

    @staticmethod
    def forward(ctx, x, cos_full, sin_signed):  # x (B, nh, T, hs); tables (T, hs)
        cos_full, sin_signed = cos_full.to(x.dtype), sin_signed.to(x.dtype)
        ctx.save_for_backward(cos_full, sin_signed)
        return torch.addcmul(x * cos_full, swap_halves(x), sin_signed)

    @staticmethod
    def backward(ctx, grad):
        cos_full, sin_signed = ctx.saved_tensors
        return torch.addcmul(grad * cos_full, swap_halves(grad), sin_signed, value=-1), None, None


class SelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.is_causal = config.attention_type == 'causal'
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.residual_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rotary=None):
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if rotary is not None:
            q, k = Rotary.apply(q, *rotary), Rotary.apply(k, *rotary)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=self.is_causal)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.residual_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.expand = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.residual_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.residual_proj(F.gelu(self.expand(x))))


class Block(nn.Module):
    """Pre-LN: normalise the input of each sub-layer, keep the residual stream itself unnormalised."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rotary=None):
        x = x + self.attn(self.ln_1(x), rotary)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos_encoding == 'learned' else None
        if config.pos_encoding == 'rotary':
            # not persistent: derived from the config, so checkpoints hold only learned weights
            cos, sin = rotary_tables(config.block_size, config.n_embd // config.n_head)  # (T, hs/2) each
            self.register_buffer('rotary_cos', torch.cat((cos, cos), dim=-1), persistent=False)  # (T, hs)
            self.register_buffer('rotary_sin', torch.cat((-sin, sin), dim=-1), persistent=False)  # signed
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: one matrix both embeds tokens and scores them, fewer parameters for the same quality
        self.lm_head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self):
        """Normal(0, 0.02) everywhere; the projections that write into the residual stream get a
        smaller std (divided by sqrt(2 * n_layer), two per block) so its variance does not grow with depth."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith('residual_proj') else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # lm_head is visited after wte and re-initialised the shared matrix with std 0.02: same distribution

    def get_num_params(self, non_embedding=True):
        """Parameter count. With non_embedding, the learned position table is left out; the token
        embedding stays in because, tied to lm_head, it does real work as the output layer."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n_params -= self.wpe.weight.numel()
        return n_params

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> (logits (B, T, vocab_size), loss or None).

        loss is the float32 cross-entropy over positions whose target is not IGNORE_INDEX (-100);
        0 when every target is ignored. Objectives other than plain unmasking live in objectives.py
        and take the logits.
        """
        B, T = idx.size()
        if T > self.config.block_size:
            raise UserError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rotary = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (T, C) broadcast over B
        else:
            rotary = (self.rotary_cos[:T], self.rotary_sin[:T])  # (T, hs) each: see Rotary
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rotary)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
        loss = unmasking_loss(logits, targets) if targets is not None else None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW that decays only matrices (weights of Linear layers and embeddings); biases and
        LayerNorm gains are left alone, since shrinking them towards 0 only hurts."""
        params = [p for p in self.parameters() if p.requires_grad]  # the tied matrix appears once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay},
                  {'params': no_decay, 'weight_decay': 0.0}]
        print(f"optimizer: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} params), "
              f"{len(no_decay)} non-decayed tensors ({sum(p.numel() for p in no_decay):,} params)")
        use_fused = device_type == 'cuda' and 'fused' in inspect.signature(torch.optim.AdamW).parameters
        extra = {'fused': True} if use_fused else {}
        print(f"optimizer: fused AdamW {'on' if use_fused else 'off'}")
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    def flops_per_token(self):
        """Training FLOPs (forward + backward) per token, PaLM appendix B: 6 per weight, plus attention
        scores and weighted sums over the full block (the same count for causal and bidirectional)."""
        cfg = self.config
        return 6 * self.get_num_params() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops=312e12):
        """Model FLOPs utilisation: achieved FLOP/s over `peak_flops` (default: A100 bf16 dense).
        fwdbwd_per_iter is the number of sequences of block_size processed per iteration
        (batch_size * gradient_accumulation_steps); dt the iteration time in seconds."""
        flops_per_iter = self.flops_per_token() * self.config.block_size * fwdbwd_per_iter
        return flops_per_iter / dt / peak_flops
