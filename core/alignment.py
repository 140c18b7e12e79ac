"""Word alignments from cross-attention: which source word each produced word translates.

The cross-attention row of the step that produced a piece says where the decoder looked for it.
Words are what people align, so pieces are merged into words first (a SentencePiece piece that
starts with "▁" begins a word; special pieces such as the `<2de>` tag and `</s>` belong to none):
a target word's row is the mean of its pieces' rows, and a source word's column the sum of its
pieces' columns (attention mass), renormalised over the real source words. Each target word is
then aligned to its most attended source word (argmax), or with a `threshold` to every source
word holding at least that share of its attention.

Which layer? No gold alignments ship with the Lab's data, so `bench/alignment.py` scores each
decoder layer (heads averaged, and every single head) on 100 Multi30K test pairs by agreement
between the two directions of the same sentence pair: en→de attention on the German reference
and de→en attention on the English source should link the same words. For the shipped model the
second-to-last layer agreed best (figures per layer: bench/results/alignment.json, README
"Word alignments"), as
Garg et al. (2019, "Jointly Learning to Align and Translate with Transformer Models") found for
larger Transformers: the last layer is already busy predicting the next word. `DEFAULT_LAYER`
holds that choice, counted from the top so it suits models of any depth.

Pairs are written in the Pharaoh format of Moses and fast_align: "i-j" with i the source word and
j the target word, both from 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

WORD_START = "▁"  # SentencePiece's mark of a piece that begins a word
SPECIAL = re.compile(r"^(<[^>]+>|>>[\w-]+<<|__[\w-]+__|[a-z]{3}_[A-Z][a-z]{3})$")  # tags, </s>, language tokens
DEFAULT_LAYER = -2  # the decoder layer used (Python index: the second to last), chosen by bench/alignment.py


def word_index(pieces: list[str]) -> list[int | None]:
    """The word each piece belongs to (0, 1, …), None for special pieces. A lone "▁" (SentencePiece
    writes one before a piece it has no "▁" form of) spells no word of its own: it joins the next,
    and at the end it belongs to none."""
    index: list[int | None] = []
    word, spelled = -1, ""  # the current word and what it spells so far
    for position, piece in enumerate(pieces):
        if SPECIAL.match(piece):
            index.append(None)
            continue
        previous = index[position - 1] if position else None
        if (piece.startswith(WORD_START) or word < 0 or previous is None) and (word < 0 or spelled or previous is None):
            word, spelled = word + 1, ""
        spelled += piece.replace(WORD_START, "")
        index.append(word)
    if word >= 0 and not spelled:  # trailing lone "▁": no word to join, so none
        index = [None if w == word else w for w in index]
    return index


def words(pieces: list[str]) -> list[str]:
    """The words the pieces spell, in order (special pieces left out)."""
    found: list[str] = []
    for piece, word in zip(pieces, word_index(pieces)):
        if word is None:
            continue
        if word == len(found):
            found.append("")
        found[word] += piece
    return [w.replace(WORD_START, " ").strip() for w in found]


def word_matrix(weights: np.ndarray, source_pieces: list[str], target_pieces: list[str]) -> np.ndarray:
    """Piece attention [T, S] -> word attention [target words, source words]: the mean row of each
    target word's pieces, the summed column of each source word's pieces, each row renormalised
    to add up to 1 over the source words."""
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (len(target_pieces), len(source_pieces)):
        raise ValueError(f"weights {weights.shape} do not match {len(target_pieces)} target × {len(source_pieces)} source pieces")
    source, target = word_index(source_pieces), word_index(target_pieces)
    n_source = max((w for w in source if w is not None), default=-1) + 1
    n_target = max((w for w in target if w is not None), default=-1) + 1
    columns = np.zeros((len(target_pieces), n_source))
    for j, word in enumerate(source):
        if word is not None:
            columns[:, word] += weights[:, j]
    matrix = np.zeros((n_target, n_source))
    counts = np.zeros(n_target)
    for i, word in enumerate(target):
        if word is not None:
            matrix[word] += columns[i]
            counts[word] += 1
    matrix /= np.maximum(counts, 1)[:, None]
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def align(weights: np.ndarray, source_pieces: list[str], target_pieces: list[str], threshold: float | None = None) -> list[tuple[int, int]]:
    """(source word, target word) pairs: each target word to its most attended source word, or
    with `threshold` to every source word with at least that share of its attention."""
    matrix = word_matrix(weights, source_pieces, target_pieces)
    if matrix.size == 0:
        return []
    if threshold is None:
        pairs = [(int(row.argmax()), j) for j, row in enumerate(matrix)]
    else:
        pairs = [(int(i), int(j)) for j, i in zip(*np.nonzero(threshold <= matrix.T))]
    return sorted(pairs)


def layer_index(layers: int, layer: int) -> int:
    """A Python layer index (negative from the top) clamped to 0 … layers − 1."""
    return min(max(layer if layer >= 0 else layers + layer, 0), layers - 1)


def layer_weights(cross: np.ndarray, layer: int = DEFAULT_LAYER, head: int | None = None) -> np.ndarray:
    """One layer's cross-attention [T, S] from all of them [L, H, T, S]: its heads averaged, or one
    `head`. `layer` is a Python index (negative from the top), clamped to the layers there are."""
    weights = cross[layer_index(cross.shape[0], layer)]
    return weights.mean(axis=0) if head is None else weights[head]


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """ "0-0 1-2 …": source word - target word, from 0."""
    return " ".join(f"{i}-{j}" for i, j in pairs)


def diagonal(n_source: int, n_target: int) -> list[tuple[int, int]]:
    """The positional baseline: target word j to the source word at the same relative position."""
    if not n_source:
        return []
    return [(round(j * (n_source - 1) / max(n_target - 1, 1)), j) for j in range(n_target)]


def agreement(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> float:
    """F1 of two sets of pairs (1.0 when both are empty): 2·|A∩B| / (|A| + |B|)."""
    a, b = set(first), set(second)
    return 1.0 if not a and not b else 2 * len(a & b) / (len(a) + len(b))


@dataclass
class AlignmentView:
    """The word alignment of one translation (any engine's `AttentionView`)."""

    translation: object  # the view's `Translation`
    source_words: list[str]
    target_words: list[str]
    pairs: list[tuple[int, int]]  # (source word, target word)
    matrix: np.ndarray  # [target words, source words]: the word attention the pairs come from
    layer: int  # the decoder layer used, from 1

    @property
    def pharaoh(self) -> str:
        return pharaoh(self.pairs)


def of_attention(view, layer: int = DEFAULT_LAYER, threshold: float | None = None) -> AlignmentView:
    """Word alignments of an `AttentionView` (core's or the Hugging Face engine's), heads averaged."""
    weights = layer_weights(view.cross, layer)
    shown = layer_index(view.cross.shape[0], layer) + 1
    return AlignmentView(
        view.translation,
        words(view.source_pieces),
        words(view.target_pieces),
        align(weights, view.source_pieces, view.target_pieces, threshold),
        word_matrix(weights, view.source_pieces, view.target_pieces),
        shown,
    )
