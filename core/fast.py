"""Speed paths of the Transformer, kept apart from the readable model in `core/model.py`.

Each one computes what the plain code in `model.py` (or PyTorch's plain module) computes, only
cheaper, and `tests/test_fast.py` or `tests/test_model.py` checks that it does. The model joins
them at a few named places: `Dropout` in every layer, `project`, `attention` and `linear` inside
`MultiHeadAttention` and `FeedForward` (`linear_relu` there too), `RealTokens` in `Transformer.loss`
and `Transformer.encode_embedded`, `contiguous` and `append` in `LayerCache`, and `dense` in
`Transformer.logits`; the searches of `core/decoding.py` pick their next pieces with `argmax` and
`top_candidates`. How much each one saves is measured by `bench/train_speed.py` (training) and
`bench/decode_speed.py` (translation), the decoding ones one by one by `bench/decode_attempts.py`;
the figures are in `bench/results.md` and the README's speed section, not here, because they
change with the machine.
"""

from __future__ import annotations

import ctypes
import functools
import platform
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


MOSTLY_REAL = 0.9  # share of real tokens above which `RealTokens.if_padded` leaves a batch padded


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

    @classmethod
    def if_padded(cls, real: Tensor) -> RealTokens | None:
        """`of(real)` when at least a tenth of the positions are padding, else None.

        Why: the encoder reads padded sources. A batch of sentences to translate mixes lengths
        (even sorted by length, a test batch's shorter sentences leave much padding), and packing
        skips that padding in its position-wise layers; training batches are bucketed by length and carry
        almost none, and there packing and padding back would cost more than they save.
        Benchmark: bench/decode_attempts.py ("packed_encoder").
        """
        return cls.of(real) if real.sum() <= MOSTLY_REAL * real.numel() else None

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
        projected = dense(x, *_joined(layers))
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


def dense(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)`: x·weightᵀ + bias, for [..., d_in] inputs and a [d_out, d_in] weight.

    Why: during decoding on the CPU the matmuls of the linear layers and of the vocabulary-sized
    output projection take most of a step. PyTorch runs them on MKL, whose sgemm on this AMD CPU
    is slower than oneDNN's matmul with the weight reordered once into its blocked layout
    (`torch.ops.mkldnn`, what torch.compile's freezing uses on the CPU; CTranslate2 uses oneDNN on
    AMD CPUs too), most of all for the vocabulary-sized output projection. The sums are the same
    but taken in another order, so results can differ in the last bits (about 1e-6); searches of
    the shipped model give the same tokens (bench/decode_attempts.py checks it on the test
    sentences). Used only in float32 on the CPU without gradients or autocast; training, bf16 and
    other devices keep PyTorch's own.
    Benchmark: bench/decode_attempts.py ("packed_output_projection", "packed_linear_layers").
    """
    if _packable(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, _packed(weight), bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear(layer: nn.Module, x: Tensor) -> Tensor:
    """`layer(x)` for a linear layer: an `nn.Linear` through `dense`; any other form (such as the
    int8 layers `core/quantize.py` swaps in), and a layer someone watches with hooks, as itself."""
    if _plain_linear(layer):
        return dense(x, layer.weight, layer.bias)
    return layer(x)


def linear_relu(layer: nn.Module, x: Tensor) -> Tensor:
    """`F.relu(layer(x))`, the ReLU applied by oneDNN's matmul as it writes its output where
    `dense` would run it (a post-op: the hidden activations, the widest of the feed-forward
    network, are not read and written again by a separate ReLU); otherwise as written.
    Benchmark: bench/decode_attempts.py ("fused_relu")."""
    if _plain_linear(layer) and _packable(x, layer.weight):
        return torch.ops.mkldnn._linear_pointwise(x, _packed(layer.weight), layer.bias, "relu", [], "")
    return F.relu(linear(layer, x))


def _plain_linear(layer: nn.Module) -> bool:
    """An `nn.Linear` that nobody watches with hooks: its maths can run another way."""
    return isinstance(layer, nn.Linear) and not (layer._forward_hooks or layer._forward_pre_hooks)


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


def append(past: Tensor, new: Tensor, order: Tensor | None) -> Tensor:
    """`torch.cat([past if order is None else past.index_select(0, order), new], dim=2)`: the
    past [B, H, T, d_k] keys or values (their rows picked by `order`), then the new positions.

    Why: beam search reorders the cache after every step, and every layer then appends to it:
    two copies of the whole cache per step. Here the reordered rows are written straight into
    the grown cache, one copy. The same numbers.
    Benchmark: bench/decode_attempts.py ("one_copy_cache").
    """
    rows = past.shape[0] if order is None else order.shape[0]
    length = past.shape[2]
    grown = past.new_empty(rows, past.shape[1], length + new.shape[2], past.shape[3])
    if order is None:
        grown[:, :, :length] = past
    else:
        torch.index_select(past, 0, order, out=grown[:, :, :length])
    grown[:, :, length:] = new
    return grown


def group_beams(queries: Tensor, beams: int) -> Tensor:
    """[B, H, 1, d_k] queries of B = sentences × beams rows (a sentence's beams neighbours) ->
    [sentences, H, beams, d_k]: the beams of each sentence as that sentence's queries.

    Why: the beams of a sentence all attend to the same source keys/values. Kept once per sentence
    (`LayerCache.beams`), not once per beam, they are a quarter of the memory at beam 4 that every
    step and layer reads, and that beam search copies when finished sentences leave the batch; and
    attention's matmul runs on `beams` queries at once instead of one. The same sums, though the
    matmul may take them in another order (last bits, about 1e-6).
    Benchmark: bench/decode_attempts.py ("shared_source_cache").
    """
    if beams == 1:
        return queries
    rows, heads, _, d_k = queries.shape
    return queries.reshape(rows // beams, beams, heads, d_k).transpose(1, 2)


def ungroup_beams(weights: Tensor | None, beams: int) -> Tensor | None:
    """Attention weights [sentences, H, beams, S] of `group_beams`' queries back to one row per
    beam, [sentences × beams, H, 1, S] (None stays None)."""
    if weights is None or beams == 1:
        return weights
    sentences, heads, _, length = weights.shape
    return weights.transpose(1, 2).reshape(sentences * beams, heads, 1, length)


FEW_QUERIES = 8  # up to this many queries per row, `fused_attention_pays` says no


def fused_attention_pays(queries: Tensor) -> bool:
    """Whether PyTorch's fused attention kernel is the faster way for these queries [B, H, T, d_k].

    Why: the fused kernel is built for long inputs. A few queries (a decoding step: one query
    per row, or a sentence's beams attending to its source together, `group_beams`) are faster
    on the CPU with the spelled-out maths of `core.model.attention`, which is then used.
    Benchmarks: bench/decode_speed.py, bench/decode_attempts.py ("shared_source_cache").
    """
    return queries.shape[2] > FEW_QUERIES


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


# --- Memory --------------------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BLOCKS_UP_TO = 64 * 2**20  # bytes: larger blocks still get their own pages from the OS
KEEP_FREE_UP_TO = 256 * 2**20  # bytes of free memory at the top of the heap kept, not trimmed


@functools.cache  # asked at every search: the platform is looked at once
def reuse_freed_memory() -> bool:
    """Have the C allocator give freed memory to the next allocation rather than back to the OS;
    glibc only (elsewhere nothing changes), once per process. Returns whether it is in effect.

    Why: a decoding step allocates tensors of a few megabytes: logits, log-probabilities, and
    the self-attention cache, which grows by one position every step. glibc gives blocks that
    large pages of their own, fresh from the OS, and its adaptive threshold cannot follow sizes
    that keep growing, so every step has its pages faulted in and zeroed again. Blocks up to
    64 MB kept on the heap, and up to 256 MB of free heap kept, make the steps reuse memory
    instead. The price: memory freed after a decoding stays with the process
    (bench/decode_memory.py).
    Benchmark: bench/decode_attempts.py ("reused_memory").
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BLOCKS_UP_TO) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_UP_TO))


# --- Choosing the next pieces -------------------------------------------------------------------
# On the CPU, PyTorch's argmax and topk walk a row one element at a time, while a plain maximum
# (`amax`) is vectorised and many times faster. A search step asks for the best of a vocabulary of
# log-probabilities per row, so both look at block maxima first and only then at the few elements
# of the winning blocks. Benchmark: bench/decode_attempts.py ("blocked_choice").


def _block_size(n: int) -> int | None:
    """A block length that cuts a row of `n` into at least 16 equal blocks (None if none does)."""
    return next((size for size in (64, 50, 40, 32, 25, 20, 16) if n % size == 0 and n // size >= 16), None)


def argmax(x: Tensor) -> Tensor:
    """`x.argmax(dim=-1)` of [rows, n]: the first index of each row's largest value.

    The first block whose maximum is the row's maximum holds the row's first largest value, and
    the first largest value inside that block is it; so the answer is exactly torch's (NaN, the
    largest value for both, included). Used on the CPU (see above); elsewhere torch's own.
    """
    size = _block_size(x.shape[-1])
    if x.device.type != "cpu" or x.dim() != 2 or size is None:
        return x.argmax(dim=-1)
    rows, n = x.shape
    blocks = x.view(rows, n // size, size)
    block = blocks.amax(dim=-1).argmax(dim=-1)  # [rows]: the first block holding the maximum
    inside = blocks[torch.arange(rows, device=x.device), block].argmax(dim=-1)
    return block * size + inside


def candidate_block_size(scores: Tensor, log_probs: Tensor, k: int) -> int | None:
    """The block length `top_candidates` (and its compiled twin, `core/compiled.py`) cut the rows
    into, or None where blocks do not apply: not on the CPU, no block length divides the
    vocabulary, or fewer blocks than the k candidates wanted."""
    vocab = log_probs.shape[-1]
    size = _block_size(vocab)
    if log_probs.device.type != "cpu" or size is None or k > scores.shape[1] * (vocab // size):
        return None
    return size


def top_candidates(scores: Tensor, log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Beam search's candidates: `(scores.view(-1, 1) + log_probs).view(groups, -1).topk(k, dim=1)`.

    `scores` [groups, beams] are the beams' path scores and `log_probs` [groups·beams, vocab] their
    next pieces'; returns the k best path scores of each group, best first, and their indices into
    beams × vocab. Each of the k best lies in a block whose maximum is among the k best block
    maxima (a block outside those has k blocks, so k values, above its maximum), and a block's
    maximum plus a beam's score is the maximum of its sums (adding one number keeps the order).
    So the k best are found among k blocks per group, with the very same sums: the answer is
    torch's, except that equal scores may come in another order. Used on the CPU (see above).
    """
    groups, beams = scores.shape
    vocab = log_probs.shape[-1]
    size = candidate_block_size(scores, log_probs, k)
    if size is None:
        return (scores.view(-1, 1) + log_probs).view(groups, beams * vocab).topk(k, dim=1)
    per_row = vocab // size
    blocks = log_probs.view(groups * beams, per_row, size)
    block_best = (scores.view(-1, 1) + blocks.amax(dim=-1)).view(groups, beams * per_row)
    chosen = block_best.topk(k, dim=1).indices  # [groups, k] indices into beams × blocks
    beam, block = chosen // per_row, chosen % per_row
    rows = beam + torch.arange(groups, device=scores.device)[:, None] * beams
    sums = scores.gather(1, beam)[:, :, None] + blocks[rows, block]  # [groups, k, size]
    values, at = sums.view(groups, k * size).topk(k, dim=1)
    which = at // size
    return values, (beam.gather(1, which) * per_row + block.gather(1, which)) * size + at % size
