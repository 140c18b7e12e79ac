"""bench/decode_speed.py: one length rule for every engine, and targets judged like for like."""

from __future__ import annotations

import threading

import pytest
import torch

from bench import decode_speed
from core.decoding import SearchLimits
from core.vocab import PAD_ID


def test_batch_limits_give_every_sentence_the_largest_limit_of_its_batch() -> None:
    source = torch.tensor([[5] * 10, [5] * 4 + [PAD_ID] * 6, [5] * 2 + [PAD_ID] * 8])
    own = SearchLimits().per_sentence(source, 256)
    assert own.tolist() == [25, 16, 13]  # core's own rule: 1.5·source + 10
    assert decode_speed.LIMITS.per_sentence(source, 256).tolist() == [25, 25, 25]
    assert decode_speed.sentence_limits(source.tolist(), 256) == [25, 25, 25]


def _system(rate: float, bleu: float = 35.0) -> dict:
    return {"sentences_per_s": rate, "bleu": bleu, "bleu_minus_core": bleu - 35.0}


def test_ratios_and_targets_are_like_for_like() -> None:
    block = {
        "core": _system(120),
        "core_one_stream": _system(90),
        "hf": _system(60),
        "hf_streams": _system(80),
        "ct2_float32": _system(110),
        "ct2_float32_streams": _system(170),
        "ct2_int8": _system(300, 34.8),
    }
    r = decode_speed.ratios(block)
    assert r["best_layout"]["core_over_hf"] == 120 / 80
    assert r["one_batch_per_core"]["core_over_hf"] == 120 / 80
    assert r["one_batch_at_a_time"]["core_over_hf"] == 90 / 60
    assert r["one_batch_per_core"]["systems"]["ct2_float32"] == "ct2_float32_streams"
    assert r["best_layout"]["core_over_ct2_float32"] == 120 / 170
    beam = {**block, "ratios": r}
    greedy = {**block, "ct2_int8": _system(400, 34.6), "ratios": r}
    targets = decode_speed.targets(greedy, beam)
    hf = targets["beam4_core_over_hf"]
    assert hf["measured"] == min(120 / 80, 90 / 60) and hf["met"] is False  # 1.5× < 2×
    ct2 = targets["beam4_core_over_ct2_float32"]
    assert ct2["measured"] == min(120 / 170, 90 / 110) and ct2["met"] is False  # 0.71× < 0.9×
    fastest = targets["fastest_path_bleu_loss"]
    assert fastest["measured"] == pytest.approx(0.4) and fastest["met"] is False  # greedy lost 0.4 > 0.3


def test_each_compared_pair_runs_side_by_side_and_is_also_compared_round_by_round() -> None:
    order = decode_speed.RUN_ORDER
    assert sorted(order) == sorted(decode_speed.SYSTEMS)  # every system runs, once per round
    for layout in decode_speed.LAYOUTS:
        core = order.index(decode_speed.CORE[layout])
        assert {order[core - 1], order[core + 1]} == {decode_speed.HF[layout], decode_speed.CT2_FLOAT32[layout]}
    # Round 2 was slow for everyone; round by round, core is 0.9× CTranslate2 every time.
    block = {
        "core": {**_system(90), "seconds_each": [10.0, 20.0, 10.0]},
        "ct2_float32_streams": {**_system(100), "seconds_each": [9.0, 18.0, 9.0]},
    }
    paired = decode_speed.ratios(block)["one_batch_per_core"]["core_over_ct2_float32_paired"]
    assert paired == {"median": pytest.approx(0.9), "min": pytest.approx(0.9), "max": pytest.approx(0.9), "rounds": 3}
    block["core"]["seconds_each"] = [10.0, 10.0, 12.0]
    paired = decode_speed.ratios(block)["one_batch_per_core"]["core_over_ct2_float32_paired"]
    assert (paired["median"], paired["min"]) == (pytest.approx(0.9), pytest.approx(0.75))


def test_the_summary_keeps_how_decode_speed_judged_its_targets() -> None:
    """bench/run.py gathers the targets; a BLEU-loss target is met when the loss is at most the limit."""
    from bench import run

    block = {"core": {"sentences_per_s": 100.0, "bleu": 35.0}, "float32_bleu_within_0.1": True, "bleu_signature": "s"}
    loss = {"target": 0.3, "measured": -0.06, "met": True}  # int8 gained 0.06 BLEU
    decode = {"decode_greedy": block, "decode_beam4": block, "setup": {}, "targets": {"fastest_path_bleu_loss": loss}}
    assert run.summarise({"decode_speed": decode})["targets"]["fastest_path_bleu_loss"]["met"] is True


def test_each_decode_attempt_finds_the_tokens_of_the_code_as_it_is() -> None:
    """bench/decode_attempts.py switches core's speed paths off one by one: every variant must
    search the same tokens, and the last one must be the code as it is."""
    from bench import decode_attempts
    from core import fast
    from core.config import ModelConfig
    from core.decoding import beam_search, greedy
    from core.model import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=640, d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=2)).eval()
    source = torch.randint(4, 640, (6, 9))
    kept = {name: getattr(fast, name) for name in ("_joined", "contiguous", "dense", "argmax", "top_candidates", "append")}
    found = {}
    try:
        for variant in decode_attempts.VARIANTS:
            decode_attempts.use(model, variant)
            found[variant] = ([h.tokens for h in greedy(model, source)], [h[0].tokens for h in beam_search(model, source, 3)])
        decode_attempts.use(model, decode_attempts.BEST)
        assert {name: getattr(fast, name) for name in kept} == kept
    finally:
        for name, function in kept.items():
            setattr(fast, name, function)
    assert all(tokens == found[decode_attempts.BEST] for tokens in found.values())
    assert any(len(t) > 1 for t in found[decode_attempts.BEST][1])  # real searches, not empty ones


@pytest.mark.parametrize("systems", ["ct2_float32,ct2_float32_streams", "core,nope"])
def test_a_subset_of_systems_must_hold_core_and_known_names(systems: str, capsys) -> None:
    with pytest.raises(SystemExit):
        decode_speed.main(["--systems", systems])
    assert "--systems: core and any of core, core_python" in capsys.readouterr().err


def test_thread_scaling_runs_the_work_twice_at_once_on_one_torch_thread_each() -> None:
    from bench import thread_scaling

    seen: list[tuple[int, int]] = []
    both_started = threading.Barrier(2, timeout=10)  # passes only if the two copies run at the same time

    def work() -> None:
        both_started.wait()
        seen.append((threading.get_ident(), torch.get_num_threads()))

    kept = torch.get_num_threads()
    torch.set_num_threads(2)  # what new threads would start with
    try:
        thread_scaling.side_by_side(work)
    finally:
        torch.set_num_threads(kept)
    assert len({ident for ident, _ in seen}) == 2 and threading.get_ident() not in {ident for ident, _ in seen}
    assert [threads for _, threads in seen] == [1, 1]
    assert thread_scaling.scaling(one_thread_s=3.0, two_threads_s=3.0) == 2.0  # twice the work in the same time
