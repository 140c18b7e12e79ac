"""Speed paths of the Transformer, kept apart from the readable model in `core/model.py`.

Each one computes what the plain code in `model.py` (or PyTorch's plain module) computes, only
cheaper, and `tests/test_fast.py` or `tests/test_model.py` checks that it does. The model joins
them at a few named places: `Dropout` in every layer, `project` and `attention` inside
`MultiHeadAttention`, `RealTokens` in `Transformer.loss`, `contiguous` in `LayerCache` and
`output_projection` in `Transformer.logits`. How much each one saves is measured
by `bench/train_speed.py` (training) and `bench/decode_speed.py` (translation), the decoding ones
one by one by `bench/decode_attempts.py`; the figures are in
`bench/results.md` and the README's speed section, not here, because they change with the machine.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary


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
    on the fly (`_joined`: once per weight update when no gradient is recorded, so a decoder step
    does not copy them again). Joining needs the weights as float tensors: layers that keep theirs
    in another form, such as the int8 copies `core/quantize.py` makes after training, are applied
    one by one.
    Benchmarks: bench/train_speed.py, bench/decode_speed.py, bench/decode_attempts.py.
    """
    if all(isinstance(layer, nn.Linear) for layer in layers):
        projected = F.linear(x, *_joined(layers))
    else:
        projected = torch.cat([layer(x) for layer in layers], dim=-1)
    if packed is not None:
        projected = packed.pad(projected)
    return list(projected.chunk(len(layers), dim=-1))


_JOINED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Tensor, Tensor]] = weakref.WeakKeyDictionary()


def _joined(layers: Sequence[nn.Linear]) -> tuple[Tensor, Tensor]:
    """The layers' weights and biases concatenated along the output dimension.

    Why: joining copies every weight, and during decoding (no gradient) the same weights are
    joined again at every step, by every layer: kept here until a weight changes (its storage or
    its in-place version counter), so a decoder step reads them without copying them first. A
    single layer needs no joining. While a gradient is recorded they are joined afresh, as the
    joined tensor is part of the autograd graph.
    Benchmark: bench/decode_attempts.py ("joined_weights_kept").
    """
    if len(layers) == 1:
        return layers[0].weight, layers[0].bias
    if torch.is_grad_enabled():
        return torch.cat([layer.weight for layer in layers]), torch.cat([layer.bias for layer in layers])
    key = tuple((id(p), *_stamp(p)) for layer in layers for p in (layer.weight, layer.bias))
    kept = _JOINED.get(layers[0])
    if kept is None or kept[0] != key:
        kept = key, torch.cat([layer.weight for layer in layers]), torch.cat([layer.bias for layer in layers])
        _JOINED[layers[0]] = kept
    return kept[1], kept[2]


def _stamp(tensor: Tensor) -> tuple[int, int | None]:
    """Where a tensor's values are and how often they were changed in place (inference tensors,
    made under `torch.inference_mode`, keep no such count and cannot change outside it)."""
    return tensor.data_ptr(), None if tensor.is_inference() else tensor._version


def output_projection(hidden: Tensor, weight: Tensor) -> Tensor:
    """`hidden @ weight.t()`: [..., d_model] states times the [vocab, d_model] embedding matrix.

    Why: during decoding on the CPU this vocabulary-sized matmul is the largest single operation
    of a step (a quarter of greedy search's time on the shipped model). oneDNN's matmul with the
    weight reordered once into its blocked layout (`torch.ops.mkldnn`, what torch.compile's
    freezing uses on the CPU) runs it about 1.5x faster at 64 rows and several times faster at
    one row. The sums are the same but taken in another order, so logits can differ in the last
    bits (about 1e-6); searches of the shipped model give the same tokens (bench/decode_attempts.py
    checks it on 256 test sentences). Used only in float32 on the CPU without gradients or
    autocast; training, bf16 and other devices keep the plain matmul.
    Benchmark: bench/decode_attempts.py ("packed_output_projection").
    """
    if _packable(hidden, weight):
        return torch.ops.mkldnn._linear_pointwise(hidden, _packed(weight), None, "none", [], "")
    return hidden @ weight.t()


def _packable(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and x.dim() >= 2
    )


_PACKED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # weight -> (its storage and version, packed)


def _packed(weight: Tensor) -> Tensor:
    """`weight` [out, in] in oneDNN's blocked layout, made again only when the weight changes."""
    key = _stamp(weight)
    kept = _PACKED.get(weight)
    if kept is None or kept[0] != key:
        kept = key, torch.ops.mkldnn._reorder_linear_weight(weight)
        _PACKED[weight] = kept
    return kept[1]


def contiguous(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The tensors, each in contiguous memory (copied only when it is not already).

    Why: the source keys/values for cross-attention come out of one joined projection
    (`project`) as strided views of it. Attention's matmul needs them contiguous, so without
    this every decoder step copies every layer's source keys and values again (a tenth of greedy
    search's time on the shipped model); `LayerCache` copies them once instead. The same numbers
    in the same layout: the arithmetic is unchanged.
    Benchmark: bench/decode_attempts.py ("contiguous_cross_cache").
    """
    return tuple(t.contiguous() for t in tensors)


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
