"""The shared SentencePiece vocabulary: tags stay whole, languages are balanced, BPE works too."""

from __future__ import annotations

import pytest

from core.tokenizer import Tokenizer, balanced_sample
from core.vocab import EOS_ID


@pytest.fixture(scope="module")
def texts(builtin_corpus) -> dict[str, list[str]]:
    train = builtin_corpus.split("train")
    return {lang: train[lang][:1500] for lang in ("en", "de", "cs")}


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_tags_are_single_symbols_and_round_trip(texts, model_type: str) -> None:
    tokenizer = Tokenizer.train(texts, vocab_size=400, model_type=model_type)
    for lang in ("en", "de", "cs"):
        assert tokenizer.pieces([tokenizer.tag_id(lang)]) == [f"<2{lang}>"]
    ids = tokenizer.source_ids("Der Hund läuft.", "cs")
    assert ids[0] == tokenizer.tag_id("cs") and ids[-1] == EOS_ID
    assert tokenizer.decode(ids[1:]) == "Der Hund läuft."
    # A tag typed inside a sentence is still one piece, never split into characters.
    assert tokenizer.encode("<2de>").count(tokenizer.tag_id("de")) == 1
    with pytest.raises(ValueError, match="Unknown language 'fr'"):
        tokenizer.tag_id("fr")


def test_languages_are_sampled_equally(texts) -> None:
    """A language with ten times more text must not get ten times more say in the vocabulary."""
    lopsided = {"en": texts["en"] * 10, "cs": texts["cs"] + ["", "  "]}
    sample = balanced_sample(lopsided, per_language=5000)
    english = set(texts["en"])
    assert sum(line in english for line in sample) == len(sample) // 2 == len(texts["cs"])
    assert all(line.strip() for line in sample)
    assert balanced_sample(lopsided, per_language=100) != balanced_sample(lopsided, per_language=100, seed=2)


def test_round_trip_of_a_saved_model(tmp_path, texts) -> None:
    tokenizer = Tokenizer.train(texts, vocab_size=300)
    (tmp_path / "spm.model").write_bytes(tokenizer.model_proto)
    again = Tokenizer.load(tmp_path / "spm.model", ["cs", "de", "en"])
    line = texts["cs"][0]
    assert again.encode(line) == tokenizer.encode(line)
    assert again.decode(again.encode(line)) == line
