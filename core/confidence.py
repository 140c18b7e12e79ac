"""How sure the model is of a translation, and a plain hint when a sentence looks unlike its training data.

Per piece, the confidence is the model's probability of the piece it produced, given the source
and the pieces before it (`decoding.score_tokens`). Per sentence it is their geometric mean,
</s> included:

    confidence = exp( (1/(|y|+1)) · Σ_t log P(y_t | y_<t, x) )

the inverse of the translation's perplexity, in (0, 1]. Unlike the sum, it does not fall just
because a sentence is long. Label smoothing in training (0.1) keeps even certain pieces near 0.9,
so 0.9 is already "sure".

A model trained on one kind of text is least sure on text unlike it: the shipped model learnt
from image captions, and "How are you today?" is not one. `LOW_CONFIDENCE` is where the hint
starts; on the shipped model it ranks in-domain test sentences above out-of-domain ones
(`bench/confidence.py`, figures in the README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Below it the UI shows the hint: between bench/confidence.py's best splits for greedy and beam 4
# (bench/results/confidence.json).
LOW_CONFIDENCE = 0.35
# What each training corpus holds, in words a visitor understands.
DOMAINS = {
    "multi30k": "the short image descriptions (Multi30K) this model was trained on",
    "builtin": "the simple generated sentences of the built-in corpus this model was trained on",
}


def sentence_confidence(piece_log_probs: Sequence[float]) -> float:
    """Geometric mean of the pieces' probabilities (the </s> piece included); 1.0 for nothing."""
    if not piece_log_probs:
        return 1.0
    return math.exp(sum(piece_log_probs) / len(piece_log_probs))


def domain_hint(confidence: float | None, corpus: str | None, threshold: float = LOW_CONFIDENCE) -> str | None:
    """A plain sentence for a low-confidence translation, naming what the model knows; None when sure."""
    if confidence is None or confidence >= threshold:
        return None
    known = DOMAINS.get(corpus or "", "the sentences this model was trained on")
    return f"The model is unsure of this translation ({confidence:.0%}): the sentence looks unlike {known}, so expect mistakes."
