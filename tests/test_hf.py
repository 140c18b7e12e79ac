"""Pretrained Hugging Face models behind the Translator interface (core/hf.py), with no network.

Tiny random Marian (one pair, and several targets) and M2M100 models with real tokenizers are
built in a temporary folder with `save_pretrained`; a Lab model exported with
`python -m core export --format hf` is opened through the same path and must give the Lab's own
translations, scores and attention maps.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core import hf
from core.__main__ import main as cli
from core.analysis import compare_translations
from core.decoding import SearchLimits
from core.evaluate import evaluate
from tests.helpers import child_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "The dog runs in the park."
TEXTS = [SENTENCE, "A cat sleeps on the mat.", "Zwei Kinder spielen im Sand."]
CORPUS = [
    "The dog runs in the park.",
    "Der Hund läuft im Park.",
    "Le chien court dans le parc.",
    "A cat sleeps on the mat.",
    "Eine Katze schläft auf der Matte.",
    "Un chat dort sur le tapis.",
] * 4


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the network: the Hub is only ever asked for what is in the (empty) local cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("POLYGLOT_HOSTED", raising=False)


def _sentencepiece(folder: Path, name: str) -> Path:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        unk_id=0,
        bos_id=-1,
        eos_id=1,
        pad_id=2,
        num_threads=1,
    )
    path = folder / name
    path.write_bytes(model.getvalue())
    return path


def _layers(**sizes) -> dict:
    return dict(
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        **sizes,
    )


def build_marian(folder: Path, targets: list[str] | None = None) -> Path:
    """opus-mt-style: en→de, or en→each of `targets` picked by a `>>xx<<` token."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True)
    spm_path = _sentencepiece(folder, "source.spm")
    shutil.copyfile(spm_path, folder / "target.spm")
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(spm_path))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f">>{t}<<": 3 + i for i, t in enumerate(targets or [])}}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = MarianTokenizer(
        str(folder / "source.spm"),
        str(folder / "target.spm"),
        str(folder / "vocab.json"),
        source_lang="en",
        target_lang=None if targets else "de",
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    model = MarianMTModel(
        MarianConfig(vocab_size=len(vocab), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1, **_layers())
    )
    model.generation_config = GenerationConfig(
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, bad_words_ids=[[0]], max_length=64
    )  # as opus-mt: never <pad>
    model.save_pretrained(folder)
    return folder


def build_m2m100(folder: Path) -> Path:
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    folder.mkdir(parents=True)
    import sentencepiece as spm

    spm_path = _sentencepiece(folder, "sentencepiece.bpe.model")
    processor = spm.SentencePieceProcessor(model_file=str(spm_path))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = M2M100Tokenizer(str(folder / "vocab.json"), str(spm_path))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    size = max(tokenizer.lang_code_to_id.values()) + 1 + 8  # pieces, 100 language tokens, 8 made-up words
    M2M100ForConditionalGeneration(M2M100Config(vocab_size=size, **_layers())).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    return {
        "marian": build_marian(root / "opus-mt-en-de"),
        "multi": build_marian(root / "opus-mt-en-mul", targets=["de", "fr"]),
        "m2m": build_m2m100(root / "m2m100-tiny"),
    }


@pytest.fixture(scope="module")
def marian(models: dict[str, Path]) -> hf.HFTranslator:
    return core.load(models["marian"])


@pytest.fixture(scope="module")
def m2m(models: dict[str, Path]) -> hf.HFTranslator:
    return core.load(models["m2m"])


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Lab model written as an M2M100 folder by the CLI."""
    out = tmp_path_factory.mktemp("export") / "tiny-hf"
    subprocess.run(
        [sys.executable, "-m", "core", "export", "--checkpoint", str(tiny_checkpoint), "--format", "hf", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=child_env(),
        check=True,
        capture_output=True,
    )
    return out


# --- start-up cost ----------------------------------------------------------------------------


def test_importing_core_and_the_app_does_not_import_transformers() -> None:
    code = "import sys, core, app; bad = [m for m in ('transformers', 'core.hf') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("[]", "['core.hf']"), out.stdout  # core.hf itself is light: no transformers


# --- the Translator interface, per family --------------------------------------------------------


def test_marian_one_pair(marian: hf.HFTranslator) -> None:
    assert isinstance(marian, hf.HFTranslator) and marian.name == "opus-mt-en-de"
    assert marian.languages == ["en", "de"] and marian.directions == ["en-de"]
    with pytest.raises(ValueError, match="translates: en-de"):
        marian.translate(SENTENCE, "de", "en")
    with pytest.raises(ValueError, match="Unknown language 'fr'"):
        marian.check_pair("en", "fr")
    results = marian.translate([SENTENCE, "", "A cat."], "en", "de")
    assert results[1].text == "" and all(r.text for r in (results[0], results[2]))
    assert results[0].log_prob == pytest.approx(results[0].score) and results[0].log_prob < 0


def test_greedy_is_what_the_step_by_step_view_takes(marian: hf.HFTranslator) -> None:
    """generate() and the hand-made step loop agree: same pieces, and their probabilities make the score."""
    translation = marian.translate(SENTENCE, "en", "de")[0]
    steps = marian.step_by_step(SENTENCE, "en", "de", top_k=5)
    assert [s.chosen for s in steps] in ([*translation.pieces, "</s>"], translation.pieces)  # no </s>: cut at the limit
    assert all(s.candidates[0][0] == s.chosen for s in steps)  # greedy: the most probable piece
    assert sum(math.log(s.chosen_probability) for s in steps) == pytest.approx(translation.log_prob, abs=1e-3)
    followed = marian.step_by_step(SENTENCE, "en", "de", follow="Der Hund")
    assert "".join(s.chosen for s in followed[:-1]).replace("▁", " ").strip() == "Der Hund" and followed[-1].chosen == "</s>"


def test_beam_search_n_best(marian: hf.HFTranslator) -> None:
    greedy = marian.translate(SENTENCE, "en", "de")[0]
    beam = marian.translate(SENTENCE, "en", "de", beam_size=4, n_best=3)[0]
    scores = [score for _, score in beam.n_best]
    assert len(beam.n_best) == 3 and scores == sorted(scores, reverse=True)
    assert beam.n_best[0] == (beam.text, beam.score)
    limit = marian._max_tokens(len(marian._encode(SENTENCE, "en", "de")[0]), SearchLimits())
    length = len(beam.pieces) + (len(beam.pieces) < limit)  # core's ranking: </s> counted, unless cut at the limit
    assert beam.score == pytest.approx(beam.log_prob / length)
    assert marian.translate(SENTENCE, "en", "de", beam_size=4, length_penalty=0.0)[0].score < 0
    assert marian.translate(SENTENCE, "en", "de", beam_size=1, n_best=3)[0].n_best == greedy.n_best


def test_sampling(marian: hf.HFTranslator) -> None:
    first = marian.sample(SENTENCE, "en", "de", n=4, seed=3)
    assert len(first) == 4 and [c.log_prob for c in first] == sorted((c.log_prob for c in first), reverse=True)
    assert [c.text for c in marian.sample(SENTENCE, "en", "de", n=4, seed=3)] == [c.text for c in first]
    assert [c.text for c in marian.sample(SENTENCE, "en", "de", n=4, seed=4)] != [c.text for c in first]
    top1 = marian.sample(SENTENCE, "en", "de", n=2, top_k=1)
    assert top1[0].text == top1[1].text == marian.translate(SENTENCE, "en", "de")[0].text  # top-1 sampling is greedy
    with pytest.raises(ValueError, match="temperature"):
        marian.sample(SENTENCE, "en", "de", temperature=0)


def test_marian_several_targets(models: dict[str, Path]) -> None:
    multi = core.load(models["multi"])
    assert multi.languages == ["en", "de", "fr"] and multi.directions == ["en-de", "en-fr"]
    to_fr, _, _, _ = multi._encode(SENTENCE, "en", "fr")
    to_de, _, _, _ = multi._encode(SENTENCE, "en", "de")
    assert multi.tokenizer.pieces(to_fr[:1]) == [">>fr<<"] and to_fr[1:] == to_de[1:]
    assert set(multi.translate_to_all(SENTENCE, "en")) == {"de", "fr"}
    view = multi.attention(SENTENCE, "en", "fr")
    assert view.source_pieces[0] == ">>fr<<"
    with pytest.raises(ValueError, match="en-de, en-fr"):
        multi.translate(SENTENCE, "de", "fr")


def test_m2m100_languages_and_forced_target(m2m: hf.HFTranslator) -> None:
    assert {"en", "de", "fr", "cs"} <= set(m2m.languages) and "de-fr" in m2m.directions
    ids, lead, tail, _ = m2m._encode(SENTENCE, "en", "de")
    assert m2m.tokenizer.pieces([ids[0], ids[-1]]) == ["__en__", "</s>"] and (lead, tail) == (1, 1)
    view = m2m.attention(SENTENCE, "en", "de")
    assert view.target_pieces[0] == "__de__"  # the forced first token is the first row
    assert view.target_pieces[1:-1] == view.translation.pieces
    assert view.cross.shape == (2, 2, len(view.target_pieces), len(view.source_pieces))
    assert view.decoder_self.shape == (2, 2, len(view.target_pieces), len(view.target_pieces))
    assert view.encoder_self.shape == (2, 2, len(view.source_pieces), len(view.source_pieces))
    np.testing.assert_allclose(view.cross.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.triu(view.decoder_self[0, 0], 1), 0.0)  # no peeking at later pieces
    with pytest.raises(ValueError, match="Unknown language 'xx'"):
        m2m.translate(SENTENCE, "en", "xx")


def _starts_with(text: str, prefix: str) -> bool:
    return text.replace(" ", "").startswith(prefix.replace(" ", ""))


@pytest.mark.parametrize("name", ["marian", "m2m"])
def test_scores_and_prefix_follow_the_translator_interface(name: str, request: pytest.FixtureRequest) -> None:
    """translate(scores=True), translate/sample(prefix=…), next_pieces: what the tabs call on any engine."""
    model: hf.HFTranslator = request.getfixturevalue(name)
    tgt = "de"
    plain = model.translate(TEXTS[:2], "en", tgt)
    scored = model.translate(TEXTS[:2], "en", tgt, scores=True)
    assert [t.text for t in scored] == [t.text for t in plain]  # scores change nothing else
    for t in scored:
        assert len(t.piece_probs) == len(t.pieces) + 1 and all(0 < p <= 1 for p in t.piece_probs)
        assert t.confidence == pytest.approx(math.exp(sum(map(math.log, t.piece_probs)) / len(t.piece_probs)))
    assert plain[0].piece_probs == [] and plain[0].confidence is None
    assert model.translate(SENTENCE, "en", tgt, prefix="")[0].text == plain[0].text  # empty prefix: ordinary decoding
    for beam in (1, 3):
        started = model.translate(TEXTS[:2], "en", tgt, beam_size=beam, prefix="Der Hund")
        assert all(_starts_with(t.text, "Der Hund") for t in started), [t.text for t in started]
    assert all(_starts_with(c.text, "Der Hund") for c in model.sample(SENTENCE, "en", tgt, n=3, prefix="Der Hund"))
    following = model.step_by_step(SENTENCE, "en", tgt, top_k=3, follow="Der Hund")
    after = model.next_pieces(SENTENCE, "en", tgt, prefix="Der Hund", top_k=3)
    assert [piece for piece, _ in after] == [piece for piece, _ in following[len(following) - 1].candidates]
    first = model.next_pieces(SENTENCE, "en", tgt, top_k=1)[0][0]
    assert first == model.step_by_step(SENTENCE, "en", tgt, top_k=1)[0].chosen
    assert model.config.get("corpus") == ""
    with pytest.raises(ValueError, match="Lab models only"):
        model.beam_tree(SENTENCE, "en", tgt)
    with pytest.raises(ValueError, match="engine="):
        model.translate(SENTENCE, "en", tgt, engine="ctranslate2")


@pytest.mark.parametrize("name", ["marian", "m2m"])
def test_attribution_and_alignments(name: str, models: dict[str, Path], request: pytest.FixtureRequest) -> None:
    fresh = core.load(models[name])
    encoder = fresh.model.get_encoder()
    if name == "marian":
        encoder.embed_scale = 3.0  # opus-mt scales its embeddings (scale_embedding); the tiny one does not
    ids = fresh._batch([fresh._encode(SENTENCE, "en", "de")[0]])[0]
    decoder = torch.tensor([fresh.tokenizer.start + fresh.tokenizer.forced("de")])
    with torch.no_grad():  # the embeddings attribution varies are the ones the encoder computes itself
        by_ids = fresh.model(input_ids=ids, decoder_input_ids=decoder).logits
        by_embeddings = fresh.model(inputs_embeds=fresh._embed_source(ids), decoder_input_ids=decoder).logits
    assert torch.allclose(by_ids, by_embeddings, atol=1e-5)
    model: hf.HFTranslator = request.getfixturevalue(name)
    view = model.attribution(SENTENCE, "en", "de", steps=64)
    assert view.scores.shape == (len(view.target_pieces), len(view.source_pieces))
    assert view.target_pieces[-1] == "</s>"
    scale = np.abs(view.difference).max()  # a random tiny model moves its probabilities very little
    assert scale > 0
    np.testing.assert_allclose(view.scores.sum(1), view.difference, atol=0.05 * scale)  # completeness
    found = model.alignments(SENTENCE, "en", "de", forced="Der Hund läuft im Park.")
    assert found.target_words == ["Der", "Hund", "läuft", "im", "Park."] and len(found.pairs) == 5
    assert found.source_words == SENTENCE.split()


def test_sentence_embeddings_ignore_padding(m2m: hf.HFTranslator, marian: hf.HFTranslator) -> None:
    for model in (m2m, marian):
        both = model.sentence_embeddings([SENTENCE, "A cat sleeps on the mat, and the dog runs."], "en")
        alone = model.sentence_embeddings([SENTENCE], "en")
        assert both.shape == (3, 2, 16)
        np.testing.assert_allclose(both[:, :1], alone, atol=1e-5)
        assert not np.allclose(both[:, 0], both[:, 1])


def test_precisions(marian: hf.HFTranslator) -> None:
    assert marian.at_precision("float32") is marian
    assert marian.at_precision("bfloat16").translate(SENTENCE, "en", "de")[0].text
    assert marian.at_precision("int8").translate(SENTENCE, "en", "de")[0].text
    with pytest.raises(ValueError, match="Unknown precision"):
        marian.at_precision("float8")


def test_evaluate_and_side_by_side(marian: hf.HFTranslator, tiny_translator) -> None:
    report = evaluate(marian, {"en": TEXTS[:2], "de": ["Der Hund läuft im Park.", "Eine Katze schläft."]}, ["en-de"], beam_size=1)
    assert report.model == "opus-mt-en-de" and report.scores["en-de"].sentences == 2 and not report.zero_shot
    rows = compare_translations([tiny_translator, marian], SENTENCE, "en", "de", beam_size=1)
    assert [r["model"] for r in rows] == [tiny_translator.name, "opus-mt-en-de"]
    assert [r["error"] for r in rows] == [None, None] and rows[1]["text"] == marian.translate(SENTENCE, "en", "de")[0].text
    refused = compare_translations([marian], SENTENCE, "en", "fr")[0]
    assert "Unknown language 'fr'" in refused["error"]


# --- the Lab's own model, exported and opened as an M2M100 model -------------------------------


def test_round_trip_of_an_exported_lab_model(exported: Path, tiny_checkpoint: Path) -> None:
    lab, other = core.load(tiny_checkpoint, device="cpu"), core.load(exported, device="cpu")
    assert isinstance(other, hf.HFTranslator) and "Lab model" in other.summary()
    assert sorted(other.languages) == sorted(lab.languages)
    for src, tgt in [("en", "de"), ("de", "fr")]:
        ours, theirs = lab.translate(TEXTS, src, tgt), other.translate(TEXTS, src, tgt)
        assert [t.text for t in theirs] == [t.text for t in ours]
        assert [t.pieces for t in theirs] == [t.pieces for t in ours]
        np.testing.assert_allclose([t.log_prob for t in theirs], [t.log_prob for t in ours], atol=1e-3)
    ours, theirs = lab.attention(SENTENCE, "en", "de"), other.attention(SENTENCE, "en", "de")
    assert (theirs.source_pieces, theirs.target_pieces) == (ours.source_pieces, ours.target_pieces)
    for name in ("encoder_self", "decoder_self", "cross"):
        np.testing.assert_allclose(getattr(theirs, name), getattr(ours, name), atol=1e-4)
    steps_ours, steps_theirs = lab.step_by_step(SENTENCE, "en", "fr", top_k=3), other.step_by_step(SENTENCE, "en", "fr", top_k=3)
    assert [s.chosen for s in steps_theirs] == [s.chosen for s in steps_ours]
    np.testing.assert_allclose([s.chosen_probability for s in steps_theirs], [s.chosen_probability for s in steps_ours], atol=1e-4)
    # Both use the tag of the first language for every sentence; the export does not keep the Lab's order.
    lab.languages = list(other.languages)
    np.testing.assert_allclose(other.sentence_embeddings(TEXTS, "en"), lab.sentence_embeddings(TEXTS, "en"), atol=1e-4)


# --- errors, limits, memory ---------------------------------------------------------------------


def test_offline_and_missing_models_give_clear_messages(tmp_path: Path) -> None:
    with pytest.raises(hf.HFModelError, match="not in the Hugging Face cache.*HF_HUB_OFFLINE=1"):
        core.load("hf:Helsinki-NLP/opus-mt-en-de")
    with pytest.raises(hf.HFModelError, match="not a Hugging Face model id"):
        core.load("hf:../../etc")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "marian"}), encoding="utf-8")
    with pytest.raises(hf.HFModelError, match="broken: cannot read this Hugging Face model folder"):
        core.load(broken)


def test_hosted_mode_opens_only_allowed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGLOT_HOSTED", "1")
    monkeypatch.setenv(hf.ALLOW_ENV, "Helsinki-NLP/opus-mt-en-de, hf:facebook/m2m100_418M")
    with pytest.raises(hf.HFModelError, match=r"only opens.*hf:Helsinki-NLP/opus-mt-en-de, hf:facebook/m2m100_418M"):
        core.load("hf:facebook/nllb-200-distilled-600M")
    with pytest.raises(hf.HFModelError, match="not in the Hugging Face cache"):  # allowed: it gets as far as the cache
        core.load("hf:facebook/m2m100_418M")


def test_memory_is_reported_and_checked(models: dict[str, Path], marian: hf.HFTranslator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hf.memory_line(615_000_000) == "615M parameters, about 2.5 GB in float32"
    assert marian.parameters == sum(p.numel() for p in marian.model.parameters())
    assert hf.memory_line(marian.parameters) in marian.summary()
    monkeypatch.setattr(hf, "available_bytes", lambda device: 10_000)
    with pytest.raises(hf.HFModelError, match="does not fit: .* parameters, about .* GB in float32"):
        core.load(models["marian"])


# --- CLI, app handlers, HTTP -------------------------------------------------------------------


def test_cli_translate_and_evaluate(models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(f"{SENTENCE}\n\nA cat.\n", encoding="utf-8")
    assert (
        cli(
            [
                "translate",
                "--checkpoint",
                str(models["marian"]),
                "--src",
                "en",
                "--tgt",
                "de",
                "--beam",
                "2",
                "--input",
                str(source),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    expected = [t.text for t in core.load(models["marian"]).translate([SENTENCE, "", "A cat."], "en", "de", beam_size=2)]
    assert output.read_text(encoding="utf-8").splitlines() == expected
    assert cli(["evaluate", "--checkpoint", str(models["marian"]), "--beam", "1", "--max-sentences", "3"]) == 0
    table = capsys.readouterr().out
    assert "| en-de |" in table and "de-en" not in table  # only the pair the model translates
    assert cli(["translate", "--checkpoint", "hf:nobody/nothing", "--src", "en", "--tgt", "de"]) == 2
    assert "not in the Hugging Face cache" in capsys.readouterr().err


@pytest.fixture
def app_folder(models: dict[str, Path], tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from demo import state

    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint, folder / "tiny")
    shutil.copytree(models["marian"], folder / "opus-mt-en-de")
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(folder))
    state.MODELS.clear()
    return folder


def test_app_handlers(app_folder: Path) -> None:
    from demo import app as demo_app
    from demo import attention_tab, inside_tab, state, translate_tab

    assert state.checkpoint_names() == ["tiny", "opus-mt-en-de"]
    assert "Hugging Face Marian" in demo_app.describe_model("opus-mt-en-de")
    assert "not in the Hugging Face cache" in demo_app.describe_model("hf:Helsinki-NLP/opus-mt-en-fr")
    output, *_ = translate_tab.translate("opus-mt-en-de", SENTENCE, "en", "de")
    assert output == core.load(app_folder / "opus-mt-en-de").translate(SENTENCE, "en", "de")[0].text
    view = attention_tab.attend("opus-mt-en-de", SENTENCE, "en", "de", 1)[0]
    assert view.cross.shape[:2] == (2, 2)
    table, first, second = inside_tab.side_by_side("tiny", "opus-mt-en-de", SENTENCE, "en", "de", 1)
    assert list(table.iloc[:, 0]) == ["tiny", "opus-mt-en-de"] and table.iloc[1, 1] == output
    assert not any(str(text).startswith("⚠️") for text in table.iloc[:, 1])


def test_the_bulk_engine_choice_leaves_hugging_face_models_on_transformers(app_folder: Path) -> None:
    """They have no CTranslate2 path: the engine picked for the Lab's models is not passed on, and
    the output says transformers translated."""
    pytest.importorskip("ctranslate2")
    from demo import evaluate_tab, translate_tab, ui

    output, _, note = translate_tab.translate("opus-mt-en-de", SENTENCE, "en", "de", engine="ctranslate2")
    assert output == translate_tab.translate("opus-mt-en-de", SENTENCE, "en", "de", engine="torch")[0]
    assert note.startswith("Engine: Transformers (a Hugging Face model")
    summary, *_ = evaluate_tab.run_evaluation("opus-mt-en-de", ui.NONE, "Built-in test split", None, "en-de", 1, 2, "ctranslate2")
    assert "Engine: Transformers (a Hugging Face model" in summary


@pytest.mark.slow
def test_app_over_http(models: dict[str, Path], tmp_path: Path) -> None:
    from gradio_client import Client

    from tests.app_server import launch_app

    folder = tmp_path / "checkpoints"
    shutil.copytree(models["marian"], folder / "opus-mt-en-de")
    server = launch_app(folder, tmp_path / "app.log", env={"HF_HUB_OFFLINE": "1"})
    try:
        client = Client(server.url, verbose=False)
        assert "Hugging Face Marian" in client.predict("opus-mt-en-de", api_name="/describe_model")
        output, table, _ = client.predict("opus-mt-en-de", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")
        assert output == core.load(models["marian"]).translate(SENTENCE, "en", "de")[0].text and table["data"]
    finally:
        server.stop()
