"""The analysis API (core.analysis): zero-shot vs pivot, embedding space, tokenization."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from core import checkpoint, plots
from core.analysis import (
    compare_translations,
    embedding_space,
    fertility,
    parallel_sentences,
    pca_2d,
    retrieval_accuracy,
    sentence_space,
    shared_languages,
    to_series,
    tokenization_report,
    tokenization_view,
    vocab_size_sweep,
    vocabulary_usage,
    zero_shot_report,
    zero_shot_table,
)
from core.corpus import Corpus
from core.tokenizer import Tokenizer
from core.translator import Translator
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def en_centric_run(tmp_path_factory: pytest.TempPathFactory, builtin_corpus: Corpus) -> Path:
    """A tiny model trained on en↔de and en↔fr only: de↔fr are zero-shot."""
    from core.train import train

    config = tiny_config(steps=30)
    config.data.directions = "en-centric"
    folder = tmp_path_factory.mktemp("runs") / "en-centric"
    train(config, folder, corpus=builtin_corpus)
    return folder


def distinct_sentences(lines: list[str], n: int) -> list[int]:
    """Indices of `n` lines with different bags of words: at the embedding layer a mean over
    pieces ignores word order, so two sentences with the same words would be indistinguishable."""
    seen, chosen = set(), []
    for index, line in enumerate(lines):
        bag = tuple(sorted(line.split()))
        if bag not in seen:
            seen.add(bag)
            chosen.append(index)
        if len(chosen) == n:
            break
    return chosen


# --- zero-shot -----------------------------------------------------------------------------


def test_zero_shot_report_marks_held_out_directions_and_pivots(en_centric_run: Path, builtin_corpus: Corpus) -> None:
    config = checkpoint.read_config(en_centric_run)
    assert "de-fr" not in config["directions"] and "fr-de" not in config["directions"]
    translator = Translator.load(en_centric_run)
    test = builtin_corpus.split("test")
    fractions: list[float] = []
    report = zero_shot_report(
        translator, test, ["en", "de", "fr"], beam_size=1, max_sentences=6, progress=lambda fraction, _: fractions.append(fraction)
    )
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    assert report["zero_shot"] == ["de-fr", "fr-de"]
    assert sorted(report["supervised"]) == ["de-en", "en-de", "en-fr", "fr-en"]
    assert [d for d, row in report["directions"].items() if row["kind"] == "zero-shot"] == ["de-fr", "fr-de"]
    assert set(report["pivot_bleu"]) == {"de-fr", "fr-de"}
    assert all(report["directions"][d]["pivot_bleu"] is None for d in report["supervised"])
    # The pivot score is sacreBLEU on src → en → tgt translations of the same sentences.
    pivoted = translator.pivot(test["de"][:6], "de", "fr", via="en", beam_size=1)
    expected = BLEU().corpus_score([t.text for t in pivoted], [test["fr"][:6]]).score
    assert report["pivot_bleu"]["de-fr"] == pytest.approx(expected)
    summary = report["summary"]
    assert summary["mean_pivot_bleu"] == pytest.approx(np.mean(list(report["pivot_bleu"].values())))
    assert summary["mean_zero_shot_bleu"] == pytest.approx(np.mean(list(report["zero_shot_bleu"].values())))
    assert summary["mean_supervised_bleu"] == pytest.approx(np.mean([report["bleu"][d] for d in report["supervised"]]))
    assert "off-target" in zero_shot_table(report)


class Oracle:
    """A stand-in translator that answers with the reference (`echo=False`) or with the source itself
    (`echo=True`, every output in the wrong language), to test the off-target rate of a zero-shot report."""

    def __init__(self, test: dict[str, list[str]], echo: bool) -> None:
        self.test, self.echo, self.name = test, echo, "oracle"
        self.languages, self.directions = ["en", "de", "fr"], ["en-de", "de-en", "en-fr", "fr-en"]
        self.config: dict = {}  # a Lab model's config names no engine of its own (a Hugging Face one's does)

    def translate(self, texts: list[str], src: str, tgt: str, **_: object) -> list[SimpleNamespace]:
        rows = [self.test[src].index(text) for text in texts]
        return [SimpleNamespace(text=text if self.echo else self.test[tgt][row]) for text, row in zip(texts, rows)]

    def pivot(self, texts: list[str], src: str, tgt: str, via: str = "en", **options: object) -> list[SimpleNamespace]:
        return self.translate(texts, src, tgt, **options)


@pytest.mark.parametrize("echo", [False, True])
def test_zero_shot_report_measures_the_off_target_rate(builtin_corpus: Corpus, echo: bool) -> None:
    test = builtin_corpus.split("test")
    report = zero_shot_report(Oracle(test, echo), test, ["en", "de", "fr"], beam_size=1, max_sentences=20)
    rates = {name: row["off_target"] for name, row in report["directions"].items()}
    if echo:  # answering in the source language: off target nearly always
        assert all(rate >= 0.9 for rate in rates.values()), rates
    else:
        assert all(rate <= 0.1 for rate in rates.values()), rates
    summary = report["summary"]
    assert summary["mean_zero_shot_off_target"] == pytest.approx(np.mean([rates[d] for d in report["zero_shot"]]))
    assert summary["mean_supervised_off_target"] == pytest.approx(np.mean([rates[d] for d in report["supervised"]]))
    assert f"| de-fr | zero-shot | {report['bleu']['de-fr']:.1f} | {100 * rates['de-fr']:.0f}% |" in zero_shot_table(report)
    assert report["bleu_signature"].startswith("nrefs:1|")
    assert "| de-fr | zero-shot |" in zero_shot_table(report)
    json.dumps(report)  # plain data all the way down
    plots.direction_matrix(report["bleu"], report["languages"], zero_shot=set(report["zero_shot"]))
    plots.bleu_bars({"direct": report["zero_shot_bleu"], "pivot": report["pivot_bleu"]})


def test_model_trained_on_every_direction_has_no_zero_shot(tiny_translator, builtin_corpus: Corpus) -> None:
    report = zero_shot_report(tiny_translator, builtin_corpus.split("test"), ["en", "de"], beam_size=1, max_sentences=3)
    assert report["zero_shot"] == [] and report["pivot_bleu"] == {}
    assert report["summary"]["mean_zero_shot_bleu"] is None
    assert report["summary"]["mean_supervised_bleu"] is not None


# --- embedding space -----------------------------------------------------------------------


def test_retrieval_finds_real_translations(builtin_corpus: Corpus) -> None:
    """Real en/de translations, encoded by the shipped model: the nearest German sentence to an
    English one is its translation far above chance (1/20), more so in the upper layers; with
    the German lines shifted by one (no sentence's translation is there) nothing is found."""
    import core

    shipped = core.load(Path(__file__).resolve().parent.parent / "checkpoints" / "multi30k-4lang")
    test = builtin_corpus.split("test")
    chosen = distinct_sentences(test["en"], 20)
    sentences = {lang: [test[lang][i] for i in chosen] for lang in ("en", "de")}
    assert all(en != de for en, de in zip(sentences["en"], sentences["de"], strict=True))
    accuracy = retrieval_accuracy(shipped, sentences)
    n_layers = shipped.model.config.n_encoder_layers + 1
    assert list(accuracy) == list(range(n_layers))
    # The same numbers from the sentence vectors directly: cosine similarity, nearest neighbour.
    vectors = {lang: shipped.sentence_embeddings(lines, lang) for lang, lines in sentences.items()}
    for layer in range(n_layers):
        unit = {lang: v[layer] / np.linalg.norm(v[layer], axis=-1, keepdims=True) for lang, v in vectors.items()}
        for a, b in (("en", "de"), ("de", "en")):
            found = (unit[a] @ unit[b].T).argmax(axis=1) == np.arange(20)
            assert accuracy[layer][f"{a}-{b}"] == pytest.approx(found.mean())
    top = accuracy[n_layers - 1]
    assert top["en-de"] >= 0.7 and top["de-en"] >= 0.7, accuracy  # chance: 0.05
    assert sum(top.values()) > sum(accuracy[0].values())  # the encoder makes the space more language-neutral
    shifted = {"en": sentences["en"], "de": sentences["de"][1:] + sentences["de"][:1]}
    assert all(value <= 0.15 for row in retrieval_accuracy(shipped, shifted).values() for value in row.values())
    xs, series = to_series(accuracy)
    assert xs == list(range(n_layers)) and series["en-de"] == [accuracy[k]["en-de"] for k in xs]
    assert retrieval_accuracy(shipped, sentences, layers=[-1]) == {n_layers - 1: top}


def test_embedding_space_points_and_sentence_links(tiny_translator, builtin_corpus: Corpus) -> None:
    test = builtin_corpus.split("test")
    sentences = {lang: test[lang][:5] for lang in ("en", "de", "fr")}
    space = embedding_space(tiny_translator, sentences, layer=1)
    assert space["points"].shape == (15, 2) and np.isfinite(space["points"]).all()
    assert space["languages"] == ["en"] * 5 + ["de"] * 5 + ["fr"] * 5
    for sentence_id in range(5):  # the points sharing an id are one sentence and its translations
        linked = [space["labels"][i] for i, s in enumerate(space["sentence_ids"]) if s == sentence_id]
        assert linked == [sentences[lang][sentence_id] for lang in ("en", "de", "fr")]
    assert space["layer"] == 1 and len(space["explained_variance"]) == 2
    plots.embedding_scatter(space["points"], space["languages"], space["sentence_ids"], space["labels"])
    with pytest.raises(ValueError, match="same"):
        embedding_space(tiny_translator, {"en": test["en"][:3], "de": test["de"][:2]})
    with pytest.raises(ValueError, match="layer"):
        embedding_space(tiny_translator, sentences, layer=99)


def test_parallel_sentences_keeps_the_rows_every_shared_language_has() -> None:
    lines = {"en": ["a", "b", "c", "d"], "de": ["A", " ", "C", "D"], "fr": ["α", "β", "γ"], "cs": ["x"] * 4}
    assert parallel_sentences(["en", "de", "fr"], lines) == {"en": ["a", "c"], "de": ["A", "C"], "fr": ["α", "γ"]}
    assert parallel_sentences(["de", "en", "xx"], lines, 1) == {"de": ["A"], "en": ["a"]}  # the model's order
    with pytest.raises(ValueError, match="fewer than two languages"):
        parallel_sentences(["en", "es"], lines)
    assert shared_languages(["fr", "es", "en"], lines) == ["fr", "en"]


def test_sentence_space_is_the_map_and_retrieval_from_one_pass(
    tiny_translator, builtin_corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = builtin_corpus.split("test")
    sentences = parallel_sentences(tiny_translator.languages, test, 8)
    expected_space = embedding_space(tiny_translator, sentences, layer=0, remove_language_mean=True)
    expected_accuracy = retrieval_accuracy(tiny_translator, sentences, remove_language_mean=True)
    calls = []
    encode = tiny_translator.sentence_embeddings
    monkeypatch.setattr(tiny_translator, "sentence_embeddings", lambda texts, lang: calls.append(lang) or encode(texts, lang))
    result = sentence_space(tiny_translator, test, 8, layer=0, remove_language_mean=True)
    assert calls == tiny_translator.languages  # one encoder pass per language, for the map and retrieval
    assert np.allclose(result["points"], expected_space["points"]) and result["labels"] == expected_space["labels"]
    assert result["layer"] == 0 and result["retrieval"] == expected_accuracy
    assert result["retrieval_mean"] == {k: pytest.approx(sum(row.values()) / len(row)) for k, row in expected_accuracy.items()}
    top = tiny_translator.model.config.n_encoder_layers
    only_map = sentence_space(tiny_translator, test, 8, layer=99)
    assert only_map["layer"] == top and "retrieval" in only_map  # clamped to the model's top layer
    assert sentence_space(tiny_translator, test, 8, layer=-5, retrieval=False).keys() == expected_space.keys()
    assert sentence_space(tiny_translator, test, 8)["layer"] == top  # None: the top
    with pytest.raises(ValueError, match="at least 2 sentences"):
        sentence_space(tiny_translator, test, 1)


def test_pca_finds_the_main_direction() -> None:
    t = np.linspace(-1, 1, 7)[:, None]
    vectors = np.hstack([3 * t, -3 * t, np.zeros((7, 2))]) + 5.0  # a line in 4-D, off the origin
    points, explained = pca_2d(vectors)
    assert points.shape == (7, 2)
    assert np.allclose(np.abs(points[:, 0]), np.abs(t[:, 0]) * np.sqrt(18))
    assert np.allclose(points[:, 1], 0.0, atol=1e-9)
    assert explained[0] == pytest.approx(1.0) and explained[1] == pytest.approx(0.0, abs=1e-12)


# --- tokenization --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer(builtin_corpus: Corpus) -> Tokenizer:
    train = builtin_corpus.split("train")
    return Tokenizer.train({lang: train[lang][:400] for lang in ("en", "de", "cs")}, 200)


def test_fertility_is_pieces_per_word(small_tokenizer: Tokenizer) -> None:
    lines = ["Der kleine Hund schläft .", "Zwei Katzen sehen den Vogel ."]
    pieces = [small_tokenizer.processor.encode(line, out_type=str) for line in lines]
    expected = (len(pieces[0]) + len(pieces[1])) / (5 + 6)
    assert fertility(small_tokenizer, {"de": lines}) == {"de": pytest.approx(expected)}
    assert tokenization_view(small_tokenizer, {"de": lines[0]}) == {"de": pieces[0]}
    assert fertility(small_tokenizer, {"de": []}) == {"de": 0.0}


def test_tokenization_report_of_one_test_sentence(tiny_translator, builtin_corpus: Corpus) -> None:
    test = builtin_corpus.split("test")
    report = tokenization_report(tiny_translator, test, number=2, max_sentences=30)
    lines = parallel_sentences(tiny_translator.languages, test, 30)
    assert report["languages"] == tiny_translator.languages and report["count"] == 30
    assert report["sentences"] == {lang: lines[lang][1] for lang in lines}
    assert report["pieces"] == tokenization_view(tiny_translator, report["sentences"])
    assert report["fertility"] == fertility(tiny_translator, lines)
    assert report["usage"] == vocabulary_usage(tiny_translator, lines)
    for number in (0, 31):
        with pytest.raises(ValueError, match="between 1 and 30"):
            tokenization_report(tiny_translator, test, number=number, max_sentences=30)


def test_vocabulary_usage_of_identical_text_overlaps_fully(small_tokenizer: Tokenizer, builtin_corpus: Corpus) -> None:
    train = builtin_corpus.split("train")
    usage = vocabulary_usage(small_tokenizer, {"en": train["en"][:50], "xx": train["en"][:50], "cs": train["cs"][:50]})
    assert usage["jaccard"]["en-xx"] == usage["jaccard"]["xx-en"] == 1.0
    assert usage["overlap"]["en-xx"] == usage["used"]["en"]
    assert usage["jaccard"]["en-cs"] < 1.0
    assert usage["share"]["en"] == pytest.approx(usage["used"]["en"] / usage["vocab_size"])
    assert usage["vocab_size"] < len(small_tokenizer)  # specials and <2xx> tags are not counted
    assert usage["shared_by_all"] <= min(usage["used"].values())


def test_vocab_sweep_fertility_falls_as_the_vocabulary_grows(builtin_corpus: Corpus) -> None:
    train = builtin_corpus.split("train")
    lines = {lang: train[lang][:300] for lang in ("en", "de")}
    sweep = vocab_size_sweep(lines, sizes=(120, 200, 400))
    assert list(sweep) == [120, 200, 400]
    for lang in lines:
        values = [sweep[size][lang] for size in sweep]
        assert all(later <= earlier for earlier, later in zip(values, values[1:], strict=False)), values
        assert values[-1] >= 1.0  # never fewer pieces than words
    with pytest.raises(ValueError, match="Cannot train"):
        vocab_size_sweep(lines, sizes=(20,))


# --- side by side --------------------------------------------------------------------------


def test_compare_translations(tiny_translator, en_centric_run: Path) -> None:
    en_centric = Translator.load(en_centric_run)
    rows = compare_translations([tiny_translator, en_centric], "Der Hund läuft .", "de", "fr", beam_size=1)
    assert [r["model"] for r in rows] == [tiny_translator.name, en_centric.name]
    assert [r["zero_shot"] for r in rows] == [False, True]
    assert all(r["error"] is None and isinstance(r["text"], str) for r in rows)
    failed = compare_translations([tiny_translator], "Der Hund läuft .", "de", "cs")
    assert failed[0]["error"] and "cs" in failed[0]["error"]
    assert "attention" not in rows[0]


def test_compare_translations_with_attention(tiny_translator) -> None:
    row = compare_translations([tiny_translator], "Der Hund läuft .", "de", "fr", 1, attention=True)[0]
    failed = compare_translations([tiny_translator], "Der Hund läuft .", "de", "cs", attention=True)[0]
    view = tiny_translator.attention("Der Hund läuft .", "de", "fr", beam_size=1)
    assert np.allclose(row["attention"], view.cross[-1].mean(axis=0))
    assert row["attention"].shape == (len(row["target_pieces"]), len(row["source_pieces"]))
    assert row["source_pieces"] == view.source_pieces and row["target_pieces"] == view.target_pieces
    assert failed["attention"].shape == (0, 0) and failed["source_pieces"] == []
