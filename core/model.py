"""The encoder-decoder Transformer (Vaswani et al. 2017), pre-LN variant, read top to bottom.

Shapes use B = batch, S = source length, T = target length, H = heads, d_k = d_model / H.

Choices and why:
- Pre-LN (LayerNorm before each sub-layer, Xiong et al. 2020): trains stably with a large
  learning rate and short warm-up, which matters when a classroom trains for three minutes.
- One embedding matrix shared by the encoder input, the decoder input and the output
  projection (Press & Wolf 2017): the vocabulary is shared across languages anyway, and tying
  saves parameters on a small model.
- `scaled_dot_product_attention` is the fast path. When attention maps are asked for, the same
  maths is spelled out (softmax(QKᵀ/√d_k)·V) so the weights can be returned.
- Decoding is incremental: each new target position attends to cached keys/values of earlier
  positions, and the cross-attention keys/values of the source are computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def pick_device(name: str = "auto") -> torch.device:
    """"auto" takes a CUDA GPU, else Apple's MPS, else the CPU; any other name is used as given."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        # On Hopper GPUs PyTorch sends masked bf16/fp16 attention to cuDNN, which builds a new
        # kernel graph (hundreds of ms) for every new tensor shape. Length-bucketed batches change
        # shape at every step, so that made bf16 training 10x slower on an H200 (bench/results/gpu).
        # The flash and memory-efficient kernels need no such build. (A process-wide switch.)
        torch.backends.cuda.enable_cudnn_sdp(False)
    return device


def sinusoidal_positions(max_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) — section 3.5 of the paper."""
    position = torch.arange(max_positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


@dataclass
class AttentionMaps:
    """Attention weights per layer, each [B, H, queries, keys]; filled only when asked for."""

    encoder_self: list[Tensor] = field(default_factory=list)
    decoder_self: list[Tensor] = field(default_factory=list)
    cross: list[Tensor] = field(default_factory=list)


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014): zero each element with probability p, scale the
    rest by 1/(1-p) so the expected value is unchanged and inference needs no rescaling.

    On the CPU, PyTorch's dropout draws one random number per element, and that costs about as
    much as the matmul that produced the activations. Here each 64-bit draw is cut into four
    16-bit numbers, so a mask needs a quarter of the draws (p is rounded to a multiple of
    1/65536). Other devices have fast random generators and use PyTorch's own dropout.
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
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)  # 64 random bits each
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


@dataclass
class RealTokens:
    """Where the real (non-padding) tokens of a padded [B, T] batch are.

    Training keeps the decoder's states packed, [N, d_model] for the N real target tokens, so the
    position-wise layers (projections, feed-forward, LayerNorm) and the vocabulary-sized output
    projection skip the padding — about a quarter of the target positions of a bucketed batch.
    Attention alone needs the padded [B, T, …] layout, and gets it from `pad`. Targets are
    left-aligned, so under the causal mask no real query ever looks at a padded position.
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


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, L, d_model] -> [B, H, L, d_k]"""
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_k).transpose(1, 2)

    def _project(self, x: Tensor, projections: tuple[nn.Linear, ...], packed: RealTokens | None) -> list[Tensor]:
        """Several projections of the same input as one matmul: the input is read once and one
        wider matmul replaces two or three narrow ones. The weights stay separate parameters,
        named as in the paper."""
        if not all(isinstance(p, nn.Linear) for p in projections):  # int8-quantized copies: one by one
            projected = torch.cat([p(x) for p in projections], dim=-1)
        else:
            weight = torch.cat([p.weight for p in projections])
            bias = torch.cat([p.bias for p in projections])
            projected = F.linear(x, weight, bias)
        if packed is not None:
            projected = packed.pad(projected)
        return [self.split_heads(part) for part in projected.chunk(len(projections), dim=-1)]

    def project_queries(self, x: Tensor, packed: RealTokens | None = None) -> Tensor:
        (queries,) = self._project(x, (self.query,), packed)
        return queries

    def project_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = self._project(x, (self.key, self.value), None)
        return keys, values

    def project_queries_keys_values(self, x: Tensor, packed: RealTokens | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """From `x` [B, L, d_model] (or packed [N, d_model]) to queries, keys, values [B, H, L, d_k]."""
        queries, keys, values = self._project(x, (self.query, self.key, self.value), packed)
        return queries, keys, values

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        packed: RealTokens | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from queries [B, H, T, d_k] to keys/values [B, H, S, d_k]; returns [B, T, d_model]
        (packed [N, d_model] when `packed` is given).

        `mask` is boolean [B, 1, 1 or T, S], True where attention is allowed.
        The maths is spelled out when the weights are wanted, and for a single query (one
        decoding step), where it is faster on the CPU than the fused kernel built for long inputs.
        """
        if need_weights or queries.shape[2] == 1:
            scores = queries @ keys.transpose(-2, -1) / math.sqrt(self.d_k)
            if causal:
                t, s = scores.shape[-2:]
                scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool, device=queries.device).tril(s - t), -math.inf)
            if mask is not None:
                scores = scores.masked_fill(~mask, -math.inf)
            weights = scores.softmax(dim=-1)
            context = F.dropout(weights, self.dropout, self.training) @ values
        else:
            weights = None
            context = F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=mask, is_causal=causal,
                dropout_p=self.dropout if self.training else 0.0,
            )
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, self.n_heads * self.d_k)
        if packed is not None:
            context = packed.pack(context)
        return self.output(context), weights if need_weights else None


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, source_mask: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        queries, keys, values = self.self_attention.project_queries_keys_values(self.self_attention_norm(x))
        attended, weights = self.self_attention(queries, keys, values, mask=source_mask, need_weights=need_weights)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, weights


@dataclass
class LayerCache:
    """What one decoder layer remembers while generating: its own past keys/values, and the
    source keys/values for cross-attention (fixed for the whole decoding)."""

    self_keys: Tensor | None
    self_values: Tensor | None
    cross_keys: Tensor
    cross_values: Tensor


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.cross_attention_norm = nn.LayerNorm(config.d_model)
        self.cross_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cache: LayerCache,
        source_mask: Tensor,
        incremental: bool,
        need_weights: bool,
        packed: RealTokens | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        queries, keys, values = self.self_attention.project_queries_keys_values(self.self_attention_norm(x), packed)
        if incremental:
            # Append this step's keys/values to the cache; the new query may see all of them,
            # so no causal mask is needed.
            if cache.self_keys is not None:
                keys = torch.cat([cache.self_keys, keys], dim=2)
                values = torch.cat([cache.self_values, values], dim=2)
            cache.self_keys, cache.self_values = keys, values
        attended, self_weights = self.self_attention(
            queries, keys, values, causal=not incremental, need_weights=need_weights, packed=packed
        )
        x = x + self.dropout(attended)
        queries = self.cross_attention.project_queries(self.cross_attention_norm(x), packed)
        attended, cross_weights = self.cross_attention(
            queries, cache.cross_keys, cache.cross_values, mask=source_mask, need_weights=need_weights, packed=packed
        )
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, self_weights, cross_weights


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=PAD_ID)
        if config.positions == "learned":
            self.positions = nn.Embedding(config.max_positions, config.d_model)
        else:
            self.register_buffer("sinusoids", sinusoidal_positions(config.max_positions, config.d_model), persistent=False)
        self.embedding_dropout = Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(config.d_model)
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(config.d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1 and name != "embedding.weight":
                nn.init.xavier_uniform_(parameter)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        # Embeddings are scaled by √d_model on input, so start them at 1/√d_model.
        nn.init.normal_(self.embedding.weight, std=self.config.d_model ** -0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        length = ids.shape[1]
        if offset + length > self.config.max_positions:
            raise ValueError(f"Sequence of {offset + length} positions exceeds max_positions={self.config.max_positions}")
        if self.config.positions == "learned":
            positions = self.positions.weight[offset:offset + length]
        else:
            positions = self.sinusoids[offset:offset + length]
        return self.embedding_dropout(self.embedding(ids) * math.sqrt(self.config.d_model) + positions)

    @staticmethod
    def source_mask(source_ids: Tensor) -> Tensor:
        """[B, S] ids -> [B, 1, 1, S] boolean, True on real tokens (padding is never attended)."""
        return (source_ids != PAD_ID)[:, None, None, :]

    def encode(self, source_ids: Tensor, maps: AttentionMaps | None = None) -> Tensor:
        """[B, S] -> memory [B, S, d_model]"""
        mask = self.source_mask(source_ids)
        x = self.embed(source_ids)
        for layer in self.encoder_layers:
            x, weights = layer(x, mask, need_weights=maps is not None)
            if maps is not None:
                maps.encoder_self.append(weights)
        return self.encoder_norm(x)

    def encoder_states(self, source_ids: Tensor) -> list[Tensor]:
        """The output of the embedding and of every encoder layer, each [B, S, d_model] (the last
        one after the final LayerNorm) — used to look at the multilingual representation space."""
        mask = self.source_mask(source_ids)
        x = self.embed(source_ids)
        states = [x]
        for layer in self.encoder_layers:
            x, _ = layer(x, mask, need_weights=False)
            states.append(x)
        states[-1] = self.encoder_norm(x)
        return states

    def start_cache(self, memory: Tensor) -> list[LayerCache]:
        """Cross-attention keys/values, computed once per source sentence."""
        caches = []
        for layer in self.decoder_layers:
            keys, values = layer.cross_attention.project_keys_values(memory)
            caches.append(LayerCache(None, None, keys, values))
        return caches

    def decode(
        self,
        target_ids: Tensor,
        caches: list[LayerCache],
        source_mask: Tensor,
        offset: int = 0,
        incremental: bool = False,
        maps: AttentionMaps | None = None,
        packed: RealTokens | None = None,
    ) -> Tensor:
        """Decoder hidden states [B, T, d_model] (before the output projection), or [N, d_model]
        for the real tokens only when `packed` is given.

        With `incremental=True`, `target_ids` holds only the new positions starting at `offset`,
        and the caches grow by those positions.
        """
        x = self.embed(target_ids, offset)
        if packed is not None:
            x = packed.pack(x)
        for layer, cache in zip(self.decoder_layers, caches):
            x, self_weights, cross_weights = layer(x, cache, source_mask, incremental, maps is not None, packed)
            if maps is not None:
                maps.decoder_self.append(self_weights)
                maps.cross.append(cross_weights)
        return self.decoder_norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Output projection tied to the embedding matrix."""
        return hidden @ self.embedding.weight.t()

    def forward(self, source_ids: Tensor, target_in: Tensor, maps: AttentionMaps | None = None) -> Tensor:
        """Teacher-forced decoder states for a whole batch: [B, T, d_model]."""
        memory = self.encode(source_ids, maps)
        return self.decode(target_in, self.start_cache(memory), self.source_mask(source_ids), maps=maps)

    def loss(self, source_ids: Tensor, target_in: Tensor, target_out: Tensor, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean label-smoothed cross-entropy over real target tokens, and their count.

        The decoder runs on the real target tokens only (see `RealTokens`), so padding costs
        nothing in its position-wise layers nor in the vocabulary-sized output projection.
        """
        real = target_out != PAD_ID
        packed = RealTokens.of(real)
        memory = self.encode(source_ids)
        hidden = self.decode(target_in, self.start_cache(memory), self.source_mask(source_ids), packed=packed)
        loss = F.cross_entropy(self.logits(hidden).float(), target_out[real], label_smoothing=label_smoothing)
        return loss, len(packed.index)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def reorder_caches(caches: list[LayerCache], order: Tensor, cross: bool = True) -> list[LayerCache]:
    """Select/duplicate batch rows of every cache (beam search keeps the surviving hypotheses).

    With `cross=False` the source keys/values are left as they are: correct whenever rows only
    move among the beams of one sentence, which all share the same source.
    """
    return [
        LayerCache(
            None if c.self_keys is None else c.self_keys.index_select(0, order),
            None if c.self_values is None else c.self_values.index_select(0, order),
            c.cross_keys.index_select(0, order) if cross else c.cross_keys,
            c.cross_values.index_select(0, order) if cross else c.cross_values,
        )
        for c in caches
    ]
