"""core/compiled.py: the compiled decoder step computes what the Python step computes (its caches bit
for bit, its log-probabilities to float rounding: the fused self-attention sums in its own order),
its searches find the same hypotheses, and it steps aside wherever it does not apply."""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import threading
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from core import compiled, decoding
from core.decoding import SearchLimits, beam_search, greedy, step_by_step
from core.quantize import int8_copy

pytestmark = pytest.mark.skipif(shutil.which("c++") is None, reason="building the compiled step needs a C++ compiler")


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Built once, cold, into a cache of the test session's own (nothing written to the user's home);
    the other test modules keep the Python step."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled, "CACHE", tmp_path_factory.mktemp("compiled-cache"))
        assert compiled.build(), compiled.status()
        built = compiled._extension
        compiled._extension = None
        yield built


@pytest.fixture
def compiled_on(extension: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_extension", extension)


def sources(translator, lines: list[str], tgt: str = "de") -> torch.Tensor:
    return translator._pad([translator._encode(line, tgt)[0] for line in lines])


LINES = ["the cat sits on the mat .", "a man rides a horse .", "two children play in the park with a dog .", "hello"]


def searches(model, source: torch.Tensor) -> list:
    limits = SearchLimits(1.2, 4)
    return [
        greedy(model, source, limits),
        greedy(model, source, limits, prefix=[7, 9]),
        beam_search(model, source, beam_size=4, n_best=3, length_penalty=0.6, limits=limits),
        beam_search(model, source, beam_size=3, length_penalty=0.0, limits=limits),
        step_by_step(model, source[:1], top_k=5),
    ]


ROUNDING = 1e-5  # relative and absolute: how far a log-probability (or a sum of them) moves when sums run in another order


def same_results(found, expected) -> bool:
    """The same search results: equal tokens, choices and structure; every float within ROUNDING."""
    if dataclasses.is_dataclass(found):
        return type(found) is type(expected) and same_results(dataclasses.asdict(found), dataclasses.asdict(expected))
    if isinstance(found, dict):
        return found.keys() == expected.keys() and all(same_results(found[key], expected[key]) for key in found)
    if isinstance(found, (list, tuple)):
        return len(found) == len(expected) and all(map(same_results, found, expected))
    if isinstance(found, float):
        return found == expected or math.isclose(found, expected, rel_tol=ROUNDING, abs_tol=ROUNDING)
    return found == expected


def test_searches_find_the_same_hypotheses_and_scores(tiny_translator, extension: ModuleType, monkeypatch) -> None:
    model, source = tiny_translator.model, sources(tiny_translator, LINES)
    python = searches(model, source)
    calls = []

    def counted(name: str):
        def call(*args):
            calls.append(name)
            return getattr(extension, name)(*args)

        return call

    monkeypatch.setattr(compiled, "_extension", ModuleType("spy"))
    for name in ("decoder_step", "top_candidates"):
        monkeypatch.setattr(compiled._extension, name, counted(name), raising=False)
    assert same_results(searches(model, source), python)  # tokens exactly, log-probabilities and scores to rounding
    assert set(calls) == {"decoder_step", "top_candidates"}  # and the compiled code did the steps


@pytest.mark.parametrize("vocab", [8000, 1000, 96, 17])  # the last two have no blocks: fast.top_candidates
@pytest.mark.parametrize(("groups", "beams", "k"), [(64, 4, 8), (3, 1, 8), (5, 2, 4), (2, 1, 24)])  # 1000: 20 blocks < 24
def test_compiled_candidates_are_torchs_topk_of_the_path_scores(vocab: int, groups: int, beams: int, k: int, compiled_on) -> None:
    if k > beams * vocab:
        pytest.skip("more candidates than pieces")
    torch.manual_seed(vocab + groups)
    log_probs, scores = torch.randn(groups * beams, vocab).log_softmax(dim=-1), torch.randn(groups, beams)
    values, indices = compiled.top_candidates()(scores, log_probs, k)
    expected = (scores.view(-1, 1) + log_probs).view(groups, beams * vocab).topk(k, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)


@pytest.mark.parametrize("vocab", [8000, 1000])
def test_compiled_candidates_of_equal_score_come_smaller_index_first(vocab: int, compiled_on) -> None:
    torch.manual_seed(vocab)
    groups, beams, k = 40, 4, 8
    # Many equal sums, within and across blocks and beams, and pieces ruled out (a prefix).
    log_probs = (torch.randn(groups * beams, vocab).log_softmax(dim=-1) * 2).round() / 2
    log_probs[:, ::3] = -torch.inf
    scores = (torch.randn(groups, beams) * 2).round() / 2
    sums = (scores.view(-1, 1) + log_probs).view(groups, beams * vocab)
    expected = sums.sort(dim=1, descending=True, stable=True)  # equal values keep their order
    values, indices = compiled.top_candidates()(scores, log_probs, k)
    assert torch.equal(values, expected.values[:, :k]) and torch.equal(indices, expected.indices[:, :k])


def test_one_step_gives_the_python_log_probs_and_bitwise_its_caches(tiny_translator, compiled_on) -> None:
    model, source = tiny_translator.model, sources(tiny_translator, LINES)
    with torch.inference_mode():
        caches = {}
        for name in ("python", "compiled"):
            caches[name], mask = decoding._start(model, source)
        steps = {"python": lambda *a: decoding._next_log_probs(model, *a), "compiled": decoding._decoder_step(model)}
        assert steps["compiled"].__name__ == "step"  # not the Python step
        tokens = torch.full((len(LINES), 1), 1)
        order = torch.tensor([3, 0, 0, 2])  # rows continue other rows' past, as in beam search
        for step in range(4):
            found = {name: steps[name](tokens, caches[name], mask, step) for name in steps}
            torch.testing.assert_close(found["compiled"], found["python"], rtol=ROUNDING, atol=ROUNDING)
            for ours, theirs in zip(caches["python"], caches["compiled"]):
                assert torch.equal(ours.self_keys, theirs.self_keys) and torch.equal(ours.self_values, theirs.self_values)
                ours.order = theirs.order = order
            tokens = found["python"].argmax(dim=-1, keepdim=True)


def test_steps_aside_where_it_does_not_apply(tiny_translator, compiled_on) -> None:
    model = tiny_translator.model
    python_step = decoding._next_log_probs
    with torch.inference_mode():
        assert compiled.decoder_step(model, python_step) is not None
        handle = model.decoder_layers[0].feed_forward.linear1.register_forward_hook(lambda *a: None)
        assert compiled.decoder_step(model, python_step) is None  # someone watches a layer
        handle.remove()
        model.train()
        assert compiled.decoder_step(model, python_step) is None  # dropout would be on
        model.eval()
        assert compiled.decoder_step(int8_copy(model), python_step) is None  # int8 layers run as themselves
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert compiled.decoder_step(model, python_step) is None
    assert compiled.decoder_step(model, python_step) is None  # gradients recorded


def test_more_beams_than_few_queries_take_the_python_step(tiny_translator, compiled_on, monkeypatch) -> None:
    model, source = tiny_translator.model, sources(tiny_translator, LINES[:2])
    widths = []
    original = decoding._next_log_probs

    def python_step(*args):
        widths.append(args[2][0].beams)  # (model, tokens, caches, mask, step)
        return original(*args)

    monkeypatch.setattr(decoding, "_next_log_probs", python_step)
    beam_search(model, source, beam_size=10)
    # The Python step runs its fused attention kernel for 10 queries per sentence; the compiled
    # step took the first step only (one beam per sentence).
    assert widths and set(widths) == {10}


def test_a_failed_build_says_why_and_translation_goes_on(tiny_translator, tmp_path, monkeypatch) -> None:
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'polyglot_decoder_step'\nc++: not found")

    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(compiled, "_status", "not built")
    monkeypatch.setattr(compiled, "CACHE", tmp_path)  # nothing built before
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    assert not compiled.build()
    assert compiled.status() == "not built: RuntimeError: c++: not found"
    assert isinstance(decoding._decoder_step(tiny_translator.model), functools.partial)  # the Python step
    assert tiny_translator.translate(["the cat sits on the mat ."], "en", "de")[0].pieces


def test_start_building_tries_once_in_the_background_unless_switched_off(monkeypatch) -> None:
    started = []
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(compiled, "_status", "not built")
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name))
    monkeypatch.setenv(compiled.SWITCH, "0")
    compiled.start_building()
    assert started == [] and compiled.status() == "not built"
    monkeypatch.setenv(compiled.SWITCH, "1")
    compiled.start_building()
    compiled.start_building()  # already building: once
    assert started == ["build-decoder-step"] and compiled.status() == "building"
    monkeypatch.setattr(compiled, "_status", "not built: RuntimeError: c++: not found")
    compiled.start_building()  # a failed build is not tried again
    assert started == ["build-decoder-step"]


def test_a_built_step_is_loaded_from_the_cache_without_building(extension, tmp_path, monkeypatch) -> None:
    from torch.utils import cpp_extension

    shutil.copyfile(compiled._library(), tmp_path / compiled._library().name)  # built by the fixture
    monkeypatch.setattr(compiled, "CACHE", tmp_path)
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: pytest.fail("built again"))
    assert compiled.build()
    assert compiled._extension.decoder_step.__doc__.startswith("decoder_step(")
    kept = compiled._library()
    (tmp_path / "changed.cpp").write_text("// another source")
    monkeypatch.setattr(compiled, "SOURCE", tmp_path / "changed.cpp")
    assert compiled._library() != kept  # a changed source is built anew, not loaded


# Head widths: 16 (the fused attention's vector lanes exactly), 18 (lanes and a remainder), 10 (no full lane group).
@pytest.mark.parametrize(("d_model", "n_heads"), [(32, 2), (36, 2), (40, 4)])
def test_learned_positions_more_layers_and_other_head_widths_give_the_python_numbers_too(d_model: int, n_heads: int, compiled_on) -> None:
    from core.config import ModelConfig
    from core.model import Transformer

    torch.manual_seed(d_model)
    config = ModelConfig(
        vocab_size=96, d_model=d_model, n_heads=n_heads, d_ff=64, n_encoder_layers=1, n_decoder_layers=3, positions="learned"
    )
    model = Transformer(config).eval()
    source = torch.randint(4, 96, (3, 7))
    with torch.inference_mode():
        assert compiled.decoder_step(model, decoding._next_log_probs) is not None  # it applies
    found = beam_search(model, source, beam_size=3, n_best=2, limits=SearchLimits(1.0, 5))
    compiled._extension, kept = None, compiled._extension
    try:
        assert same_results(found, beam_search(model, source, beam_size=3, n_best=2, limits=SearchLimits(1.0, 5)))
    finally:
        compiled._extension = kept


def test_the_cli_builds_it_and_says_how_it_went(extension, tmp_path, monkeypatch, capsys) -> None:
    from torch.utils import cpp_extension

    from core.__main__ import main

    monkeypatch.setattr(compiled, "_extension", None)
    assert main(["compile"]) == 0  # from the disk cache the fixture filled
    assert capsys.readouterr().out.startswith("compiled decoder step: ready (")
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(compiled, "CACHE", tmp_path)

    def no_ninja(*args, **kwargs):
        raise OSError("ninja: not found")

    monkeypatch.setattr(cpp_extension, "load", no_ninja)
    assert main(["compile"]) == 1
    assert capsys.readouterr().err == "compiled decoder step: not built: OSError: ninja: not found\n"


def test_the_candidates_attempt_times_both_choices_on_the_same_searches(tiny_translator, extension, monkeypatch) -> None:
    """bench/decode_attempts.py's compiled_candidates: the Python and the compiled choice each run
    on every batch, and their tokens are compared."""
    from bench import decode_attempts
    from core import fast

    calls = {"python": 0, "compiled": 0}

    def counted(name: str, choose):
        def call(*args):
            calls[name] += 1
            return choose(*args)

        return call

    spy = ModuleType("spy")
    spy.decoder_step, spy.top_candidates = extension.decoder_step, counted("compiled", extension.top_candidates)
    monkeypatch.setattr(compiled, "_extension", spy)
    monkeypatch.setattr(fast, "top_candidates", counted("python", fast.top_candidates))
    source = sources(tiny_translator, LINES)
    found = decode_attempts.compiled_candidates(tiny_translator.model, [source[:2], source[2:]], repeats=2)
    assert found["batches"] == 2 and len(found["batch_speedups"]) == 2 and found["same_tokens_as_before"]
    assert calls["python"] > 0 and calls["compiled"] == calls["python"]  # the same searches, step for step
    assert compiled.top_candidates() is not None  # the compiled choice is back in place


def test_the_fused_attention_attempt_times_both_builds_on_the_same_searches(tiny_translator, extension, monkeypatch) -> None:
    """bench/decode_attempts.py's fused_self_attention: the build from before the fusion and today's
    each run every batch, their tokens are compared, and today's build is back in place after."""
    from bench import decode_attempts

    calls = {"separate": 0, "fused": 0}

    def spy(name: str) -> ModuleType:
        module = ModuleType(name)

        def step(*args):
            calls[name] += 1
            return extension.decoder_step(*args)

        module.decoder_step, module.top_candidates = step, extension.top_candidates
        return module

    today = spy("fused")
    monkeypatch.setattr(compiled, "_extension", today)
    monkeypatch.setattr(decode_attempts, "build_from_revision", lambda revision: spy("separate"))
    source = sources(tiny_translator, LINES)
    found = decode_attempts.fused_self_attention(tiny_translator.model, [source[:2], source[2:]], repeats=2)
    assert found["batches"] == 2 and found["same_tokens_as_before"] and found["before"] == decode_attempts.BEFORE_FUSION
    assert calls["separate"] > 0 and calls["fused"] > 0
    assert compiled._extension is today
