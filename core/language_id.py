"""Which language is this sentence in? The off-target rate of a translation direction.

A multilingual model asked for a direction it never trained on (zero-shot) often answers in the
wrong language, usually English or the source language (Arivazhagan et al. 2019; Zhang et al. 2020
call this the off-target problem). BLEU hides why a zero-shot score is low; the share of outputs
in the wrong language shows it.

Language identification is py3langid (a maintained fork of langid.py, Lui & Baldwin 2012), whose
model ships inside the pip package, so nothing is downloaded. It is restricted to the languages of
the model being scored: the question is "which of the model's languages is this", not "which of
97 languages", which makes short captions far easier to tell apart.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

_LOCK = threading.Lock()  # the model holds the language restriction: one caller at a time


@functools.cache
def _model() -> tuple[LanguageIdentifier, frozenset[str]]:
    """The identifier, loaded once per process, and every language it knows. The set is taken before
    any restriction: `set_languages` narrows the identifier's own list of classes."""
    model = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE)
    return model, frozenset(model.nb_classes)


def supported(languages: Sequence[str]) -> list[str]:
    """The `languages` the identifier knows."""
    return [lang for lang in languages if lang in _model()[1]]


def identify(texts: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """The most likely of `candidates` for each text ("" for an empty text)."""
    known = supported(candidates)
    if len(known) < 2:
        raise ValueError(
            f"Language identification needs two or more languages it knows; of "
            f"{', '.join(candidates)} it knows {', '.join(known) or 'none'}"
        )
    model, _ = _model()
    with _LOCK:
        model.set_languages(known)
        return [model.classify(text)[0] if text.strip() else "" for text in texts]


def off_target_rate(texts: Sequence[str], target: str, candidates: Sequence[str]) -> float | None:
    """The share of non-empty `texts` not identified as `target` among `candidates`; None when the
    identifier does not know `target` or there is nothing to judge."""
    if target not in supported(candidates) or len(supported(candidates)) < 2:
        return None
    found = [lang for lang in identify(texts, candidates) if lang]
    return sum(lang != target for lang in found) / len(found) if found else None
