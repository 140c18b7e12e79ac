"""The CTranslate2 engine (core/ct2.py): same translations as core in float32, a cached export
rebuilt when the weights change, clear messages for what it cannot do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("ctranslate2")

import core  # noqa: E402
from core import checkpoint, ct2, export  # noqa: E402
from core.decoding import SearchLimits  # noqa: E402


@pytest.fixture(scope="module")
def ct2_run(tmp_path_factory: pytest.TempPathFactory, builtin_corpus) -> Path:
    """The tiny model trained 300 steps instead of 60 (seconds): the 60-step one repeats itself until
    the length limit in most searches, so comparing would prove less."""
    from core.train import train
    from tests.helpers import tiny_config

    folder = tmp_path_factory.mktemp("ct2") / "tiny300"
    train(tiny_config(steps=300), folder, corpus=builtin_corpus)
    return folder


@pytest.fixture(scope="module")
def translator(ct2_run: Path):
    return core.load(ct2_run, device="cpu")


@pytest.fixture(scope="module")
def sentences(builtin_corpus) -> list[str]:
    lines = builtin_corpus.split("test")["en"][:40]
    return [*lines, "", "a", "the the the the the the the the the the the the the the"]


def _same(a, b) -> None:
    """CT2's translations `a` are core's `b`: text, pieces, scores and the n-best list."""
    assert [t.truncated for t in a] == [t.truncated for t in b]
    for x, y in zip(a, b):
        assert (x.text, x.pieces) == (y.text, y.pieces)
        assert (x.score, x.log_prob) == pytest.approx((y.score, y.log_prob), abs=1e-3)
        assert [t for t, _ in x.n_best] == [t for t, _ in y.n_best]
        assert [s for _, s in x.n_best] == pytest.approx([s for _, s in y.n_best], abs=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 1},
        {"beam_size": 4},
        {"beam_size": 4, "n_best": 3},
        {"beam_size": 4, "length_penalty": 0.6},
        {"beam_size": 4, "length_penalty": 0.0, "n_best": 2},
        {"beam_size": 5, "length_penalty": 2.0, "n_best": 2, "patience": 2.0},
    ],
    ids=["greedy", "beam4", "nbest3", "lp0.6", "lp0-nbest2", "beam5-lp2-patience2"],
)
def test_same_translations_as_core(translator, sentences, options) -> None:
    before = ct2.stats["ct2"]
    for src, tgt in (("en", "de"), ("en", "fr")):
        _same(
            translator.translate(sentences, src, tgt, engine="ctranslate2", batch_size=16, **options),
            translator.translate(sentences, src, tgt, batch_size=16, **options),
        )
    assert ct2.stats["ct2"] - before == 2 * sum(bool(s) for s in sentences)  # CT2 translated every non-empty line


def test_length_limit_is_cores_per_sentence_rule(translator, sentences) -> None:
    """Tight limits make many translations stop at their own limit, inside one batch of mixed lengths."""
    limits = SearchLimits(max_len_a=0.3, max_len_b=2)
    for beam in (1, 4):
        ours = translator.translate(sentences, "en", "de", beam_size=beam, limits=limits, engine="ctranslate2")
        _same(ours, translator.translate(sentences, "en", "de", beam_size=beam, limits=limits))
    assert any(len(t.pieces) >= 3 for t in ours)  # some were cut at their limit, not all at one


def test_beam_search_runs_each_batch_at_once(translator, sentences, monkeypatch) -> None:
    """Sentences of a batch have their own length limits, CT2 one per call: a batch runs at once to
    its longest, and only searches that reached their own limit run again with it."""
    calls: list[int] = []
    beam = ct2._beam

    def counted(model, tokens, *args):
        calls.append(len(tokens))
        return beam(model, tokens, *args)

    monkeypatch.setattr(ct2, "_beam", counted)
    ours = translator.translate(sentences, "en", "de", engine="ctranslate2", beam_size=4, batch_size=64)
    assert calls[0] == sum(bool(s) for s in sentences)  # the whole batch in one call
    assert sum(calls[1:]) < calls[0] // 2  # a few ran again, with their own limit
    _same(ours, translator.translate(sentences, "en", "de", beam_size=4, batch_size=64))


def test_int8_engine_translates(translator, sentences) -> None:
    out = translator.translate(sentences, "en", "de", beam_size=2, engine="ctranslate2-int8")
    assert len(out) == len(sentences) and out[-3].text == ""
    assert (ct2.cache_folder(translator, int8=True) / "model.bin").is_file()


def test_bad_options_say_what_to_do(translator) -> None:
    with pytest.raises(ValueError, match="Unknown engine 'ct2'"):
        translator.translate(["a"], "en", "de", engine="ct2")
    with pytest.raises(ValueError, match="torch engine"):
        translator.translate(["a"], "en", "de", engine="ctranslate2", scores=True)
    with pytest.raises(ValueError, match="torch engine"):
        translator.translate(["a"], "en", "de", engine="ctranslate2", prefix="Ein")
    with pytest.raises(ValueError, match="at least 1"):
        translator.translate(["a"], "en", "de", engine="ctranslate2", beam_size=0)
    with pytest.raises(ValueError, match="raise patience"):
        translator.translate(["a"], "en", "de", engine="ctranslate2", beam_size=4, n_best=3, patience=0.5)
    with pytest.raises(ValueError, match="Unknown language"):
        translator.translate(["a"], "en", "xx", engine="ctranslate2")
    with pytest.raises(ValueError, match="bfloat16"):
        translator.in_bf16().translate(["a"], "en", "de", engine="ctranslate2")
    with pytest.raises(ValueError, match="ctranslate2-int8"):
        translator.quantized().translate(["a"], "en", "de", engine="ctranslate2")


def test_missing_ctranslate2_names_the_install_command(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ct2(name, *args, **kwargs):
        if name == "ctranslate2":
            raise ImportError("No module named 'ctranslate2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ct2)
    with pytest.raises(ImportError, match=r"pip install ctranslate2==4\.8\.5"):
        ct2.require()


def test_export_is_cached_and_rebuilt_when_weights_change(tmp_path, tiny_checkpoint, monkeypatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run, ignore=shutil.ignore_patterns("ct2-*"))  # without exports other tests made
    exports = []
    real = export.to_ctranslate2
    monkeypatch.setattr(export, "to_ctranslate2", lambda *a, **k: exports.append(a[2]) or real(*a, **k))
    first = core.load(run, device="cpu")
    first.translate(["a house"], "en", "de", engine="ctranslate2")
    first.translate(["a dog"], "en", "de", beam_size=2, engine="ctranslate2")
    ct2.forget_loaded()
    core.load(run, device="cpu").translate(["a cat"], "en", "de", engine="ctranslate2")  # a new process, same weights
    assert len(exports) == 1
    folders = [p for p in run.iterdir() if p.name.startswith("ct2-")]
    assert [p.name for p in folders] == [f"ct2-{ct2.weights_hash(first)}"]  # no staging folder left behind

    state = checkpoint.load_weights(run / checkpoint.WEIGHTS)
    state["encoder_norm.bias"] = state["encoder_norm.bias"] + 0.5
    checkpoint.save_weights(state, run / checkpoint.WEIGHTS)
    changed = core.load(run, device="cpu")
    ours = changed.translate(["a house", "two dogs"], "en", "de", beam_size=2, engine="ctranslate2")
    assert len(exports) == 2
    assert [t.text for t in ours] == [t.text for t in changed.translate(["a house", "two dogs"], "en", "de", beam_size=2)]


def test_in_memory_translator_exports_to_a_temporary_folder(translator) -> None:
    from core.translator import Translator

    memory = Translator(translator.model, translator.tokenizer, translator.config)
    assert ct2.cache_folder(memory).parent == ct2.TEMP_CACHE
    assert [t.text for t in memory.translate(["a house"], "en", "de", engine="ctranslate2")] == [
        t.text for t in translator.translate(["a house"], "en", "de")
    ]


def test_cli_engine_flag(ct2_run, tmp_path, capsys) -> None:
    from core.__main__ import main

    source = tmp_path / "in.txt"
    source.write_text("A dog runs.\nTwo men sit in the park.\n", encoding="utf-8")
    outputs = []
    for extra in ([], ["--engine", "ctranslate2"]):
        main(["translate", "--checkpoint", str(ct2_run), "--src", "en", "--tgt", "de", "--beam", "1", "--input", str(source), *extra])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 2
    main(
        [
            "translate",
            "--checkpoint",
            str(ct2_run),
            "--src",
            "en",
            "--tgt",
            "de",
            "--input",
            str(source),
            "--engine",
            "ctranslate2",
            "--int8",
        ]
    )
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert any(p.name.endswith("-int8") for p in ct2_run.iterdir())
