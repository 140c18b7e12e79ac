"""The Translator API: bad input, batching, n-best, sampling, attention views, embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.evaluate import evaluate


def test_unknown_and_identical_languages(tiny_translator) -> None:
    with pytest.raises(ValueError, match=r"Unknown language 'xx'. This model knows: en \(English\)"):
        tiny_translator.translate("Hello", "xx", "de")
    with pytest.raises(ValueError, match="both 'en'"):
        tiny_translator.translate("Hello", "en", "en")


def test_each_line_gets_one_translation_and_empty_stays_empty(tiny_translator) -> None:
    lines = ["The dog runs.", "", "   ", "The woman reads a book in the park."]
    out = tiny_translator.translate(lines, "en", "de", beam_size=3)
    assert len(out) == 4
    assert out[1].text == "" and out[2].text == ""
    assert out[0].text and out[3].text


def test_batch_order_and_batch_size_do_not_change_results(tiny_translator) -> None:
    lines = ["The dog runs.", "The old man buys two red apples in the city.", "We sleep."]
    one_by_one = [tiny_translator.translate(line, "en", "fr")[0].text for line in lines]
    batched = [t.text for t in tiny_translator.translate(lines, "en", "fr", batch_size=2)]
    assert batched == one_by_one


def test_long_input_is_truncated_with_notice(tiny_translator) -> None:
    out = tiny_translator.translate("The dog runs. " * 400, "en", "de")[0]
    assert out.truncated


def test_n_best(tiny_translator) -> None:
    out = tiny_translator.translate("The cat sleeps.", "en", "de", beam_size=4, n_best=3)[0]
    assert len(out.n_best) == 3
    assert out.n_best[0][0] == out.text
    assert [s for _, s in out.n_best] == sorted((s for _, s in out.n_best), reverse=True)


def test_to_every_language(tiny_translator) -> None:
    everything = tiny_translator.translate_to_all("The dog runs.", "en")
    assert set(everything) == {"de", "fr"}
    for lang, translation in everything.items():
        assert translation.text == tiny_translator.translate("The dog runs.", "en", lang)[0].text


def test_sampling_candidates(tiny_translator) -> None:
    candidates = tiny_translator.sample("The dog runs.", "en", "de", n=4, temperature=1.2, top_k=20, seed=3)
    assert len(candidates) == 4
    assert [c.log_prob for c in candidates] == sorted((c.log_prob for c in candidates), reverse=True)
    assert all(c.log_prob <= 0 for c in candidates)


def test_step_by_step_reproduces_greedy_translation(tiny_translator) -> None:
    greedy = tiny_translator.translate("The dog runs.", "en", "de")[0]
    steps = tiny_translator.step_by_step("The dog runs.", "en", "de", top_k=5)
    assert [s.chosen for s in steps] in (greedy.pieces, [*greedy.pieces, "</s>"])  # no </s>: cut at the limit


def test_attention_view_belongs_to_shown_translation(tiny_translator) -> None:
    view = tiny_translator.attention("The dog runs in the park.", "en", "de", beam_size=3)
    layers, heads = tiny_translator.model.config.n_decoder_layers, tiny_translator.model.config.n_heads
    assert view.cross.shape == (layers, heads, len(view.target_pieces), len(view.source_pieces))
    assert view.source_pieces[0] == "<2de>" and view.source_pieces[-1] == "</s>"
    assert view.target_pieces[:-1] == view.translation.pieces
    assert view.translation.text == tiny_translator.translate("The dog runs in the park.", "en", "de", beam_size=3)[0].text
    for maps in (view.cross, view.encoder_self, view.decoder_self):
        np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)


def test_sentence_embeddings_shape(tiny_translator) -> None:
    vectors = tiny_translator.sentence_embeddings(["The dog runs.", "We sleep."], "en")
    layers = tiny_translator.model.config.n_encoder_layers + 1
    assert vectors.shape == (layers, 2, tiny_translator.model.config.d_model)


def test_evaluate_reports_signatures_and_zero_shot(tiny_translator, tiny_checkpoint, builtin_corpus, tmp_path) -> None:
    import json
    import shutil

    import core

    test = builtin_corpus.split("test")
    report = evaluate(tiny_translator, test, ["en-de", "de-fr"], beam_size=2, max_sentences=10)
    assert set(report.scores) == {"en-de", "de-fr"}
    assert report.bleu_signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "chrF2" in report.chrf_signature or "nc:6" in report.chrf_signature
    assert not report.zero_shot  # the tiny model was trained on every direction
    data = report.to_dict()
    assert data["mean_bleu"] == pytest.approx(report.mean())
    assert "| en-de |" in report.table() and "(zero-shot)" not in report.table()

    # The same weights, declared as trained on en↔de and en↔fr only: de→fr is now zero-shot.
    held_out = shutil.copytree(tiny_checkpoint, tmp_path / "en-centric")
    config = json.loads((held_out / "config.json").read_text(encoding="utf-8"))
    config["directions"] = ["en-de", "en-fr", "de-en", "fr-en"]
    (held_out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    marked = evaluate(core.load(held_out), test, ["en-de", "de-fr", "fr-en"], beam_size=2, max_sentences=10)
    assert marked.zero_shot == {"de-fr"}
    assert [s.zero_shot for s in marked.scores.values()] == [False, True, False]
    assert "| de-fr (zero-shot) |" in marked.table() and "| en-de |" in marked.table()
    assert marked.to_dict()["scores"]["de-fr"]["zero_shot"] is True
    for direction in ("en-de", "de-fr"):  # the mark changes no score
        assert marked.scores[direction].bleu == pytest.approx(report.scores[direction].bleu)


def test_evaluation_reports_record_the_engine_that_translated(tiny_translator, builtin_corpus, tmp_path) -> None:
    import json

    from core.evaluate import EvalReport

    pytest.importorskip("ctranslate2")
    test = builtin_corpus.split("test")
    fast = evaluate(tiny_translator, test, ["en-de"], beam_size=1, max_sentences=4, engine="ctranslate2")
    assert fast.engine == "ctranslate2" and evaluate(tiny_translator, test, ["en-de"], beam_size=1, max_sentences=4).engine == "torch"
    fast.save(tmp_path / "fast.json")
    assert EvalReport.load(tmp_path / "fast.json").engine == "ctranslate2"
    older = {k: v for k, v in fast.to_dict().items() if k != "engine"}  # written before the engine was recorded: by torch
    (tmp_path / "older.json").write_text(json.dumps(older), encoding="utf-8")
    assert EvalReport.load(tmp_path / "older.json").engine == "torch"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=60), min_size=1, max_size=4))
def test_any_unicode_gives_one_string_per_line(tiny_translator, lines: list[str]) -> None:
    """Random Unicode — control characters, emoji, RTL scripts, surrogates-free text — never raises."""
    out = tiny_translator.translate(lines, "en", "de")
    assert len(out) == len(lines)
    assert all(isinstance(t.text, str) for t in out)


def test_int8_quantized_copy_translates_and_leaves_the_original(tiny_translator) -> None:
    import torch

    quantized = tiny_translator.quantized()
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized.model.modules())
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in tiny_translator.model.modules())
    out = quantized.translate(["The dog runs.", ""], "en", "de", beam_size=2)
    assert len(out) == 2 and out[1].text == ""


def test_bf16_translator_shares_the_model_and_multiplies_in_bf16(tiny_translator) -> None:
    import torch

    fast = tiny_translator.in_bf16()
    assert fast.model is tiny_translator.model and fast.bf16 and not tiny_translator.bf16
    seen: list[torch.dtype] = []
    hook = tiny_translator.model.decoder_layers[0].feed_forward.linear1.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype)
    )
    try:
        plain = tiny_translator.translate(["The dog runs in the park."], "en", "de", beam_size=2)
        assert set(seen) == {torch.float32}
        seen.clear()
        out = fast.translate(["The dog runs in the park.", ""], "en", "de", beam_size=2)
        assert set(seen) == {torch.bfloat16}
        seen.clear()  # batches decoded on worker threads run under autocast too
        fast.translate(["The dog runs.", "A girl reads a book."], "en", "de", batch_size=1, workers=2)
        assert set(seen) == {torch.bfloat16}
        seen.clear()
        fast.sample("The dog runs.", "en", "de", n=2)
        fast.step_by_step("The dog runs.", "en", "de")
        assert set(seen) == {torch.bfloat16}
    finally:
        hook.remove()
    assert len(out) == 2 and out[1].text == "" and out[0].text and plain[0].text


def test_batches_decoded_side_by_side_give_the_same_translations(tiny_translator) -> None:
    """Several batches at once, one thread each (core.parallel): same results as one after the
    other, really on several threads, and the caller's thread count is left as it was."""
    import threading

    import torch

    lines = [
        "The dog runs.",
        "The old man buys two red apples in the city.",
        "We sleep.",
        "A girl reads.",
        "Two men play football in the park.",
        "The cat sleeps on the red chair.",
        "",
    ]
    threads_seen: set[int] = set()
    hook = tiny_translator.model.decoder_layers[0].register_forward_hook(
        lambda module, inputs, output: threads_seen.add(threading.get_ident())
    )
    before = torch.get_num_threads()
    try:
        for beam in (1, 3):
            one_stream = tiny_translator.translate(lines, "en", "de", beam_size=beam, n_best=beam, batch_size=2, workers=1)
            threads_seen.clear()
            side_by_side = tiny_translator.translate(lines, "en", "de", beam_size=beam, n_best=beam, batch_size=2, workers=2)
            assert len(threads_seen) == 2 and threading.get_ident() not in threads_seen
            assert [(t.text, t.n_best) for t in side_by_side] == [(t.text, t.n_best) for t in one_stream]
            assert [t.score for t in side_by_side] == pytest.approx([t.score for t in one_stream], abs=1e-5)
    finally:
        hook.remove()
    assert torch.get_num_threads() == before
    in_new_thread: list[int] = []
    fresh = threading.Thread(target=lambda: in_new_thread.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert in_new_thread == [before]  # threads started later are not left on one core
