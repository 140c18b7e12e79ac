"""Speed paths of the Transformer, kept apart from the readable model in `core/model.py`.

Each one computes what the plain code in `model.py` (or PyTorch's plain module) computes, only
cheaper, and `tests/test_fast.py` or `tests/test_model.py` checks that it does. The model joins
them at a few named places: `Dropout` in every layer, `project` and `attention` inside
`MultiHeadAttention`, and `RealTokens` in `Transformer.loss`. How much each one saves is measured
by `bench/train_speed.py` (training) and `bench/decode_speed.py` (translation); the figures are in
`bench/results.md` and the README's speed section, not here, because they change with the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014), as `nn.Dropout`: zero each element with
    probability p and scale the rest by 1/(1-p), so the expected value is unchanged and inference
    needs no rescaling.

    Why: on the CPU, PyTorch's dropout draws one random number per element, and that costs about
    as much as the matmul that produced the activations. Here each 64-bit draw is cut into four
    16-bit numbers, so a mask needs a quarter of the draws (p is rounded to a multiple of 1/65536).
    Other devices have fast random generators and use PyTorch's own dropout.
    Benchmark: bench/train_speed.py.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(-32768 + p * 65536)  # keep a uniform int16 when it is >= this

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # 64 random bits each
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


@dataclass
class RealTokens:
    """Where the real (non-padding) tokens of a padded [B, T] batch are.

    Why: training keeps the decoder's states packed, [N, d_model] for the N real target tokens,
    so the position-wise layers (projections, feed-forward, LayerNorm) and the vocabulary-sized
    output projection skip the padding, a sizeable share of the target positions of a bucketed
    batch. Attention alone needs the padded [B, T, …] layout, and gets it from `pad`. Targets are
    left-aligned, so under the causal mask no real query ever looks at a padded position; the loss
    and its gradients are those of the padded computation (tests/test_model.py).
    Benchmark: bench/train_speed.py.
    """

    index: Tensor  # [N] flat positions in B·T of the real tokens
    batch: int
    length: int

    @classmethod
    def of(cls, real: Tensor) -> RealTokens:
        """`real`: boolean [B, T], True on real tokens."""
        return cls(real.reshape(-1).nonzero().squeeze(1), *real.shape)

    def pack(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [N, C]"""
        return x.reshape(self.batch * self.length, -1).index_select(0, self.index)

    def pad(self, x: Tensor) -> Tensor:
        """[N, C] -> [B, T, C], zeros at the padding"""
        padded = x.new_zeros(self.batch * self.length, x.shape[-1]).index_copy(0, self.index, x)
        return padded.view(self.batch, self.length, -1)


def project(x: Tensor, layers: Sequence[nn.Module], packed: RealTokens | None = None) -> list[Tensor]:
    """`[layer(x) for layer in layers]`, each [B, L, d_out], as one matmul. `x` is [B, L, d_model],
    or packed [N, d_model] when `packed` is given; the results are padded back to [B, L, d_out].

    Why: self-attention projects the same input to queries, keys and values, and cross-attention
    the same memory to keys and values. One wider matmul reads the input once and replaces two or
    three narrow ones. The weights stay separate parameters, named as in the paper, and are joined
    on the fly. Joining needs the weights as float tensors: layers that keep theirs in another
    form, such as the int8 copies `core/quantize.py` makes after training, are applied one by one.
    Benchmarks: bench/train_speed.py, bench/decode_speed.py.
    """
    if all(isinstance(layer, nn.Linear) for layer in layers):
        weight = torch.cat([layer.weight for layer in layers])
        bias = torch.cat([layer.bias for layer in layers])
        projected = F.linear(x, weight, bias)
    else:
        projected = torch.cat([layer(x) for layer in layers], dim=-1)
    if packed is not None:
        projected = packed.pad(projected)
    return list(projected.chunk(len(layers), dim=-1))


def fused_attention_pays(queries: Tensor) -> bool:
    """Whether PyTorch's fused attention kernel is the faster way for these queries [B, H, T, d_k].

    Why: the fused kernel is built for long inputs. A single query (one decoding step, T = 1)
    is faster on the CPU with the spelled-out maths of `core.model.attention`, which is then used.
    Benchmark: bench/decode_speed.py.
    """
    return queries.shape[2] > 1


def attention(queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, causal: bool, dropout: float) -> Tensor:
    """softmax(QKᵀ/√d_k)·V as PyTorch's fused kernel (`F.scaled_dot_product_attention`):
    queries [B, H, T, d_k], keys/values [B, H, S, d_k] -> [B, H, T, d_k]. `mask` is boolean,
    True where attention is allowed; `causal` hides later positions instead.

    Why: the fused kernel never writes the [B, H, T, S] weights to memory, and on a GPU it picks
    a flash or memory-efficient kernel (`core/device.py` keeps it off cuDNN's). It cannot return
    the weights, so the model uses `core.model.attention` when attention maps are asked for.
    Benchmarks: bench/train_speed.py, bench/decode_speed.py.
    """
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, is_causal=causal, dropout_p=dropout)
