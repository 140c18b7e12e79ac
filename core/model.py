"""The encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need"), pre-LN
variant, in the paper's order: positional encoding (3.5), scaled dot-product attention (3.2.1),
multi-head attention (3.2.2), the position-wise feed-forward network (3.3), the encoder and
decoder layers (3.1), and the whole `Transformer` with its tied embeddings (3.4).

Shapes use B = batch, S = source length, T = target length, H = heads, d_k = d_model / H.

Choices and why:
- Pre-LN (LayerNorm before each sub-layer, Xiong et al. 2020): trains stably with a large
  learning rate and short warm-up, which matters when a classroom trains for three minutes.
- One embedding matrix shared by the encoder input, the decoder input and the output
  projection (Press & Wolf 2017): the vocabulary is shared across languages anyway, and tying
  saves parameters on a small model.
- Decoding is incremental: each new target position attends to cached keys/values of earlier
  positions, and the cross-attention keys/values of the source are computed once.
- Speed paths live in `core/fast.py`, each computing what the code here computes: cheaper
  dropout masks (`fast.Dropout`), projections joined into one matmul (`fast.project`), PyTorch's
  fused attention kernel (`fast.attention`, where `fast.fused_attention_pays`), training on
  the real tokens only (`fast.RealTokens`: the decoder's target tokens in training, the
  encoder's source tokens when a batch is much padded), the feed-forward ReLU fused into its
  matmul (`fast.linear_relu`), and for decoding the source keys/values laid out once
  (`fast.contiguous`), the self-attention cache reordered and extended in one copy
  (`fast.append`), and every linear map on a prepacked weight (`fast.linear` for the layers,
  `fast.dense` for the output projection).
  They join this file at those names and nowhere else; `attention` below stays the readable
  reference, used whenever attention maps are asked for and for a single query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core import fast
from core.config import ModelConfig
from core.vocab import PAD_ID

# --- 3.5 Positional encoding --------------------------------------------------------------------


def sinusoidal_positions(max_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): [max_positions, d_model].
    Fixed, not learned: the paper found the two nearly identical and chose these as they may
    extend to sentences longer than any seen in training (`ModelConfig.positions = "learned"`
    uses a learned table instead)."""
    position = torch.arange(max_positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


# --- 3.2.1 Scaled dot-product attention ---------------------------------------------------------


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None, dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """softmax(QKᵀ/√d_k)·V, and the weights.

    query [B, H, T, d_k], key and value [B, H, S, d_k]; `mask` is boolean and broadcasts to
    [B, H, T, S], True where a query may look. Returns [B, H, T, d_k] and the weights [B, H, T, S].
    `dropout` drops attention weights while training (0 otherwise).
    """
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # [B, H, T, S]; √d_k keeps the softmax from saturating
    if mask is not None:
        scores = torch.where(mask, scores, -math.inf)  # exactly zero weight after the softmax
    weights = scores.softmax(dim=-1)
    return (F.dropout(weights, dropout) if dropout > 0 else weights) @ value, weights


def subsequent_mask(queries: int, keys: int, device: torch.device | None = None) -> Tensor:
    """[T, S] boolean, True where query t may see key s: the queries are the last T of S positions,
    and none looks ahead of itself (the decoder predicts each token from the ones before it)."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)


# --- 3.2.2 Multi-head attention -----------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, …, head_h)·W^O, head_i = Attention(Q·W_i^Q, K·W_i^K, V·W_i^V).

    The h heads' projections are held as one d_model × d_model matrix each (`query`, `key`,
    `value`), split into heads after projecting. Projecting and attending are separate methods,
    so the decoder can cache keys/values between steps.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        self.dropout = dropout  # on the attention weights
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, L, d_model] -> [B, H, L, d_k]"""
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_k).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        """[B, H, L, d_k] -> [B, L, d_model], the heads concatenated"""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.n_heads * self.d_k)

    def heads(self, x: Tensor, *projections: nn.Module, packed: fast.RealTokens | None = None) -> list[Tensor]:
        """`x` [B, L, d_model] (packed [N, d_model]) through each projection: one [B, H, L, d_k] each.
        Reads as `[self.split_heads(p(x)) for p in projections]`; `fast.project` does it in one matmul."""
        return [self.split_heads(part) for part in fast.project(x, projections, packed)]

    def project_queries(self, x: Tensor, packed: fast.RealTokens | None = None) -> Tensor:
        (queries,) = self.heads(x, self.query, packed=packed)
        return queries

    def project_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = self.heads(x, self.key, self.value)
        return keys, values

    def project_queries_keys_values(self, x: Tensor, packed: fast.RealTokens | None = None) -> tuple[Tensor, Tensor, Tensor]:
        queries, keys, values = self.heads(x, self.query, self.key, self.value, packed=packed)
        return queries, keys, values

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        packed: fast.RealTokens | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from queries [B, H, T, d_k] to keys/values [B, H, S, d_k]; returns [B, T, d_model]
        (packed [N, d_model] when `packed` is given) and, if `need_weights`, the weights [B, H, T, S].

        `mask` is boolean [B, 1, 1 or T, S], True where attention is allowed; `causal` instead
        hides from each query the positions after it (`subsequent_mask`).
        """
        dropout = self.dropout if self.training else 0.0
        if need_weights or not fast.fused_attention_pays(queries):
            if causal:
                mask = subsequent_mask(queries.shape[2], keys.shape[2], queries.device)
            context, weights = attention(queries, keys, values, mask, dropout)
        else:  # the same maths as one fused kernel, which cannot return the weights
            context, weights = fast.attention(queries, keys, values, mask, causal, dropout), None
        context = self.merge_heads(context)  # [B, T, d_model]
        if packed is not None:
            context = packed.pack(context)
        return fast.linear(self.output, context), weights if need_weights else None  # self.output(context)


# --- 3.3 Position-wise feed-forward network -----------------------------------------------------


class FeedForward(nn.Module):
    """FFN(x) = max(0, x·W_1 + b_1)·W_2 + b_2, applied to each position alone."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = fast.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # self.linear2(self.dropout(F.relu(self.linear1(x)))), through `fast.linear_relu` and `fast.linear`
        hidden = fast.linear_relu(self.linear1, x)
        return fast.linear(self.linear2, self.dropout(hidden))


# --- 3.1 Encoder and decoder layers -------------------------------------------------------------
# Each sub-layer is pre-LN with a residual connection: x + Dropout(SubLayer(LayerNorm(x))).


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the feed-forward network."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = fast.Dropout(config.dropout)

    def forward(
        self, x: Tensor, source_mask: Tensor, need_weights: bool, packed: fast.RealTokens | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """x [B, S, d_model] (packed [N, d_model]) -> the same shape, and the self-attention
        weights if asked for."""
        queries, keys, values = self.self_attention.project_queries_keys_values(self.self_attention_norm(x), packed)
        attended, weights = self.self_attention(queries, keys, values, mask=source_mask, need_weights=need_weights, packed=packed)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, weights


@dataclass
class LayerCache:
    """What one decoder layer remembers while generating: its own past keys/values, and the
    source keys/values for cross-attention (fixed for the whole decoding)."""

    self_keys: Tensor | None  # [B, H, T so far, d_k]
    self_values: Tensor | None
    cross_keys: Tensor  # [B / beams, H, S, d_k]: one per source sentence
    cross_values: Tensor
    # Rows of the past keys/values that the next step continues (beam search moves hypotheses
    # between rows, `reorder_caches`): applied when that step appends to them, in the same copy.
    order: Tensor | None = None
    # Rows per source sentence: beam search's hypotheses of one sentence are `beams` neighbouring
    # rows, and they share its source keys/values (`fast.group_beams`).
    beams: int = 1

    def __post_init__(self) -> None:
        # Read at every step: laid out once in contiguous memory (`fast.contiguous`).
        self.cross_keys, self.cross_values = fast.contiguous(self.cross_keys, self.cross_values)

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """The past keys/values (their rows in `order`), then this step's [B, H, 1, d_k]: kept as
        the cache and returned. Reads as `torch.cat([past[order], new], dim=2)` (`fast.append`)."""
        if self.self_keys is not None:
            keys = fast.append(self.self_keys, keys, self.order)
            values = fast.append(self.self_values, values, self.order)
        self.self_keys, self.self_values, self.order = keys, values, None
        return keys, values


class DecoderLayer(nn.Module):
    """Masked self-attention over the target so far, cross-attention to the source, then the
    feed-forward network."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.cross_attention_norm = nn.LayerNorm(config.d_model)
        self.cross_attention = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = fast.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cache: LayerCache,
        source_mask: Tensor,
        incremental: bool,
        need_weights: bool,
        packed: fast.RealTokens | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x [B, T, d_model] (packed [N, d_model]) -> the same shape, and the self- and
        cross-attention weights if asked for."""
        queries, keys, values = self.self_attention.project_queries_keys_values(self.self_attention_norm(x), packed)
        if incremental:
            # Append this step's keys/values to the cache; the new query may see all of them,
            # so no causal mask is needed.
            keys, values = cache.append(keys, values)
        attended, self_weights = self.self_attention(
            queries, keys, values, causal=not incremental, need_weights=need_weights, packed=packed
        )
        x = x + self.dropout(attended)
        # The beams of one sentence attend to its source together, as that sentence's queries.
        queries = fast.group_beams(self.cross_attention.project_queries(self.cross_attention_norm(x), packed), cache.beams)
        attended, cross_weights = self.cross_attention(
            queries, cache.cross_keys, cache.cross_values, mask=source_mask, need_weights=need_weights, packed=packed
        )
        x = x + self.dropout(attended.view(x.shape))
        cross_weights = fast.ungroup_beams(cross_weights, cache.beams)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, self_weights, cross_weights


# --- The Transformer ----------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    """Attention weights per layer, each [B, H, queries, keys]; filled only when asked for."""

    encoder_self: list[Tensor] = field(default_factory=list)
    decoder_self: list[Tensor] = field(default_factory=list)
    cross: list[Tensor] = field(default_factory=list)


class Transformer(nn.Module):
    """Embeddings and positions, N encoder layers, N decoder layers, and the output projection
    tied to the embedding matrix (3.4)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=PAD_ID)
        if config.positions == "learned":
            self.positions = nn.Embedding(config.max_positions, config.d_model)
        else:
            self.register_buffer("sinusoids", sinusoidal_positions(config.max_positions, config.d_model), persistent=False)
        self.embedding_dropout = fast.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(config.d_model)  # pre-LN leaves the last layer's output unnormalised
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
        nn.init.normal_(self.embedding.weight, std=self.config.d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        """[B, L] ids at positions offset… -> [B, L, d_model]: embedding·√d_model + position."""
        length = ids.shape[1]
        if offset + length > self.config.max_positions:
            raise ValueError(f"Sequence of {offset + length} positions exceeds max_positions={self.config.max_positions}")
        if self.config.positions == "learned":
            positions = self.positions.weight[offset : offset + length]
        else:
            positions = self.sinusoids[offset : offset + length]
        return self.embedding_dropout(self.embedding(ids) * math.sqrt(self.config.d_model) + positions)

    @staticmethod
    def source_mask(source_ids: Tensor) -> Tensor:
        """[B, S] ids -> [B, 1, 1, S] boolean, True on real tokens (padding is never attended)."""
        return (source_ids != PAD_ID)[:, None, None, :]

    def encode(self, source_ids: Tensor, maps: AttentionMaps | None = None) -> Tensor:
        """[B, S] -> memory [B, S, d_model]"""
        return self.encode_embedded(self.embed(source_ids), self.source_mask(source_ids), maps)

    def encode_embedded(self, x: Tensor, mask: Tensor, maps: AttentionMaps | None = None) -> Tensor:
        """The encoder layers on an already embedded source: x [B, S, d_model] (`embed`) and its
        `source_mask` -> memory [B, S, d_model] (zeros at the padding when the layers skipped
        it). A seam for input attribution (`core.attribution`), which feeds embeddings between
        the sentence's and a baseline's."""
        packed = fast.RealTokens.if_padded(mask[:, 0, 0])  # the layers skip the padding, if there is much
        if packed is not None:
            x = packed.pack(x)
        for layer in self.encoder_layers:
            x, weights = layer(x, mask, need_weights=maps is not None, packed=packed)
            if maps is not None:
                maps.encoder_self.append(weights)
        x = self.encoder_norm(x)
        return x if packed is None else packed.pad(x)

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
        packed: fast.RealTokens | None = None,
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
        """[…, d_model] -> […, vocab]: the output projection, tied to the embedding matrix.
        Reads as `hidden @ self.embedding.weight.t()`; `fast.dense` runs it faster."""
        return fast.dense(hidden, self.embedding.weight)

    def forward(self, source_ids: Tensor, target_in: Tensor, maps: AttentionMaps | None = None) -> Tensor:
        """Teacher-forced decoder states for a whole batch: [B, S] and [B, T] ids -> [B, T, d_model]."""
        memory = self.encode(source_ids, maps)
        return self.decode(target_in, self.start_cache(memory), self.source_mask(source_ids), maps=maps)

    def loss(self, source_ids: Tensor, target_in: Tensor, target_out: Tensor, label_smoothing: float) -> tuple[Tensor, int]:
        """Mean label-smoothed cross-entropy over real target tokens, and their count.

        The same as `cross_entropy(logits(forward(…))[real], target_out[real])`, with the decoder
        run on the real target tokens only (`fast.RealTokens`), so padding costs nothing in its
        position-wise layers nor in the vocabulary-sized output projection.
        """
        real = target_out != PAD_ID  # [B, T]
        packed = fast.RealTokens.of(real)
        memory = self.encode(source_ids)
        hidden = self.decode(target_in, self.start_cache(memory), self.source_mask(source_ids), packed=packed)
        loss = F.cross_entropy(self.logits(hidden).float(), target_out[real], label_smoothing=label_smoothing)
        return loss, len(packed.index)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def reorder_caches(caches: list[LayerCache], rows: Tensor, sentences: Tensor | None = None, beams: int | None = None) -> list[LayerCache]:
    """Select/duplicate the rows of every cache (beam search keeps the surviving hypotheses).

    `rows`: the row whose past keys/values each new row continues. They are reordered when the
    next step appends to them (`LayerCache.order`), so they are copied once per step, not twice.
    `sentences`: the source keys/values each remaining sentence keeps; None leaves them as they
    are, right whenever rows only move among the beams of their sentence. `beams`: rows per
    sentence from now on (None: as before).
    """
    return [
        LayerCache(
            c.self_keys,
            c.self_values,
            c.cross_keys if sentences is None else c.cross_keys.index_select(0, sentences),
            c.cross_values if sentences is None else c.cross_values.index_select(0, sentences),
            rows if c.order is None else c.order.index_select(0, rows),
            c.beams if beams is None else beams,
        )
        for c in caches
    ]
