"""The transfer experiment (core.transfer) end to end in a tiny setting, and the off-target rate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF

import core
from core import checkpoint, plots
from core.batching import BatchStream
from core.config import ModelConfig
from core.corpus import Corpus
from core.evaluate import evaluate
from core.language_id import identify, off_target_rate
from core.transfer import METHODS, SMALL, findings, low_resource_corpus, run_experiment, total_steps, transfer_table

TINY = dataclasses.replace(
    SMALL,
    sizes=(60, 200),
    helper_sentences=None,
    vocab_size=300,
    new_language_pieces=150,
    pretrained="",
    model=ModelConfig(d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1, max_positions=128),
    train=dataclasses.replace(SMALL.train, tokens_per_batch=800, eval_every=4, save_every=4, eval_sentences=4, log_every=2, threads=1),
    pretrain_steps=8,
    scratch_steps=12,
    finetune_steps=4,
    test_sentences=12,
    bootstrap_samples=50,
)


def test_low_resource_corpus_leaves_only_low_size_usable_pairs(builtin_corpus: Corpus) -> None:
    corpus = low_resource_corpus(builtin_corpus, ["en", "cs", "de"], "cs", 50)
    train = corpus.split("train")
    assert len({len(lines) for lines in train.values()}) == 1  # still N-way aligned
    assert train["cs"][:50] == builtin_corpus.split("train")["cs"][:50]
    assert corpus.split("test") == builtin_corpus.restrict(["en", "cs", "de"]).split("test")
    encoded = {lang: [[10 + len(word) for word in line.split()] for line in lines] for lang, lines in train.items()}
    stream = BatchStream(encoded, ["en-cs", "en-de"], {"en": 4, "cs": 5, "de": 6}, 500, 1.0, 1, 64)
    assert len(stream.usable["en-cs"]) == 50
    assert len(stream.usable["en-de"]) == len(train["de"])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, builtin_corpus: Corpus) -> tuple[dict, Path, list[dict]]:
    folder = tmp_path_factory.mktemp("transfer")
    events: list[dict] = []
    return run_experiment(builtin_corpus, TINY, folder, listeners=[events.append]), folder, events


def test_the_three_methods_train_on_what_they_should(experiment, builtin_corpus: Corpus) -> None:
    result, folder, events = experiment
    assert sorted({e["run"] for e in events if e["event"] == "start"}) == sorted(
        ["pretrain", "n60/joint", "n60/bilingual", "n60/finetuned", "n200/joint", "n200/bilingual", "n200/finetuned"]
    )
    pretrain = checkpoint.read_config(folder / "pretrain")
    assert "cs" not in pretrain["languages"]  # the pretrained model has never seen Czech
    for n in (60, 200):
        bilingual = checkpoint.read_config(folder / f"n{n}" / "bilingual")
        joint = checkpoint.read_config(folder / f"n{n}" / "joint")
        tuned = checkpoint.read_config(folder / f"n{n}" / "finetuned")
        assert bilingual["directions"] == ["en-cs"] and bilingual["corpus_sizes"]["train"] == n
        assert joint["directions"] == ["en-cs", "en-de", "de-en", "en-fr", "fr-en"]
        assert tuned["started_from"]["path"] == str(folder / "pretrain")
        assert tuned["started_from"]["added_languages"] == ["cs"] and tuned["started_from"]["added_pieces"] > 1
        # The caps of the budget: scratch_steps for (a) and (b), finetune_steps for (c).
        assert bilingual["training"]["steps"] <= TINY.scratch_steps
        assert joint["run"]["train"]["steps"] == bilingual["run"]["train"]["steps"] == 12
        assert tuned["run"]["train"]["steps"] == TINY.finetune_steps
        assert tuned["run"]["model"] | {"vocab_size": 0} == joint["run"]["model"] | {"vocab_size": 0}  # same shape
    assert total_steps(TINY) == 8 + 2 * (2 * 12 + 4)
    assert result["budget"]["finetuned"].startswith("8 pretraining steps")


def test_the_stored_numbers_can_be_recomputed_from_the_saved_models(experiment, builtin_corpus: Corpus) -> None:
    result, folder, _ = experiment
    test = builtin_corpus.split("test")
    sources, references = test["en"][: TINY.test_sentences], test["cs"][: TINY.test_sentences]
    assert result["test_sentences"] == len(sources)
    for n in TINY.sizes:
        for method in METHODS:
            translator = core.load(folder / f"n{n}" / method)
            hypotheses = [t.text for t in translator.translate(sources, "en", "cs", beam_size=TINY.beam_size)]
            scores = result["sizes"][str(n)][method]
            assert scores["bleu"]["score"] == pytest.approx(BLEU().corpus_score(hypotheses, [references]).score)
            assert scores["chrf"]["score"] == pytest.approx(CHRF().corpus_score(hypotheses, [references]).score)
            assert (scores["bleu"]["p_value"] is None) == (method == "bilingual")  # (b), (c) are tested against (a)
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed") and "version:" in result["chrf_signature"]


def test_the_experiment_resumes_and_refuses_other_settings(experiment, builtin_corpus: Corpus) -> None:
    result, folder, _ = experiment
    weights = {p: p.stat().st_mtime_ns for p in folder.rglob(checkpoint.WEIGHTS)}
    events: list[dict] = []
    again = run_experiment(builtin_corpus, TINY, folder, listeners=[events.append])
    assert not [e for e in events if e["event"] == "start"], "finished runs must not train again"
    assert {p: p.stat().st_mtime_ns for p in folder.rglob(checkpoint.WEIGHTS)} == weights
    assert again["sizes"] == json.loads(json.dumps(result["sizes"]))
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(builtin_corpus, dataclasses.replace(TINY, finetune_steps=5), folder)


def test_a_given_pretrained_model_replaces_the_pretraining_run(tmp_path: Path, tiny_checkpoint: Path, builtin_corpus: Corpus) -> None:
    shape = core.load(tiny_checkpoint).model.config
    setup = dataclasses.replace(TINY, sizes=(60,), pretrained=str(tiny_checkpoint), model=dataclasses.replace(shape, vocab_size=0))
    events: list[dict] = []
    result = run_experiment(builtin_corpus, setup, tmp_path, listeners=[events.append])
    assert sorted({e["run"] for e in events if e["event"] == "start"}) == ["n60/bilingual", "n60/finetuned", "n60/joint"]
    tuned = checkpoint.read_config(tmp_path / "n60" / "finetuned")
    assert tuned["started_from"]["path"] == str(tiny_checkpoint) and not (tmp_path / "pretrain").exists()
    assert result["budget"]["finetuned"].startswith(f"the pretrained `{tiny_checkpoint}`")
    assert total_steps(setup) == 2 * 12 + 4


def test_the_small_version_fine_tunes_the_shipped_parent() -> None:
    parent = core.load(Path(__file__).parent.parent / SMALL.pretrained)
    assert parent.languages == ["en", "de", "fr"] and SMALL.low_resource not in parent.languages
    assert SMALL.helpers == ("de", "fr")
    shape = parent.model.config
    assert all(getattr(SMALL.model, f) == getattr(shape, f) for f in ("d_model", "d_ff", "n_heads", "n_encoder_layers"))


def test_report_table_and_plot(experiment) -> None:
    result, folder, _ = experiment
    table = transfer_table(result)
    assert table.count("\n| 60 |") == 1 and "| 200 |" in table and "paired bootstrap" in table
    assert "N = 60" in findings(result)
    figure = plots.transfer_curve(result)
    assert [trace.name for trace in figure.data] == [result["methods"][m] for m in METHODS]
    assert list(figure.data[2].x) == [60, 200]
    assert list(figure.data[0].y) == [result["sizes"][n]["bilingual"]["bleu"]["score"] for n in ("60", "200")]
    curves = plots.transfer_validation(result)
    assert len(curves.data) == 6 and curves.data[0].name == f"{result['methods']['bilingual']}, N=60"
    metrics = checkpoint.read_metrics(folder / "n60" / "bilingual")
    validations = [r for r in metrics if r["event"] == "valid" and not r.get("averaged")]
    assert list(curves.data[0].x) == [r["step"] for r in validations]
    assert list(curves.data[0].y) == [r["bleu"]["en-cs"] for r in validations]


def test_transfer_command_writes_the_artifact_and_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from core.__main__ import main

    code = main(
        [
            "transfer",
            "--data",
            "builtin",
            "--setup",
            "small",
            "--sizes",
            "40",
            "--pretrain-steps",
            "3",
            "--scratch-steps",
            "3",
            "--finetune-steps",
            "2",
            "--test-sentences",
            "4",
            "--out",
            str(tmp_path / "runs"),
            "--json",
            str(tmp_path / "result.json"),
        ]
    )
    assert code == 0
    assert "| 40 |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads((tmp_path / "runs" / "transfer.json").read_text())
    assert saved["setup"]["sizes"] == [40] and saved["command"].startswith("python -m core transfer")
    assert len(saved["commit"].removesuffix("+dirty")) == 40  # the code that made it
    assert "plotly" in (tmp_path / "result.html").read_text()


# --- the off-target rate -------------------------------------------------------------------------


def test_language_identification_tells_the_model_languages_apart(builtin_corpus: Corpus) -> None:
    test = builtin_corpus.split("test")
    identify(["Ein Hund läuft."], ["en", "de"])  # a narrower question first must not narrow the next ones
    for lang in ("en", "de", "fr", "cs", "es"):
        found = identify(test[lang][:30], ["en", "de", "fr", "cs", "es"])
        assert sum(f == lang for f in found) >= 27, (lang, found)
    assert identify(["", "Ein Hund läuft im Park."], ["en", "de"]) == ["", "de"]
    with pytest.raises(ValueError, match="two or more languages"):
        identify(["x"], ["en", "zz"])


def test_off_target_rate_counts_outputs_in_the_wrong_language(builtin_corpus: Corpus) -> None:
    test = builtin_corpus.split("test")
    german, english = test["de"][:10], test["en"][:10]
    assert off_target_rate(german, "de", ["en", "de", "fr"]) == 0.0
    assert off_target_rate(german[:6] + english[:4], "de", ["en", "de", "fr"]) == pytest.approx(0.4)
    assert off_target_rate(german, "zz", ["en", "zz"]) is None  # a language the identifier does not know


def test_evaluate_reports_the_off_target_rate(builtin_corpus: Corpus) -> None:
    shipped = core.load(Path(__file__).parent.parent / "checkpoints" / "multi30k-4lang")
    test = builtin_corpus.split("test")
    report = evaluate(shipped, test, ["en-de", "de-fr"], max_sentences=8, beam_size=1, off_target=True)
    for name, score in report.scores.items():
        target = name.split("-")[1]
        assert score.off_target is not None and score.off_target <= 0.25, (name, score.hypotheses)
        assert score.off_target == pytest.approx(off_target_rate(score.hypotheses, target, shipped.languages))
    assert "off_target" in report.to_dict()["scores"]["en-de"]
    assert evaluate(shipped, test, ["en-de"], max_sentences=2, beam_size=1).scores["en-de"].off_target is None
