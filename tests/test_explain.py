"""Why did the model say that (issue 16): confidence per piece and sentence, completing a given
prefix, the beam search tree, input attribution and word alignments. Each is checked against an
independent computation, so a wrong implementation fails."""

from __future__ import annotations

import json
import math

import pytest
import torch

from core.__main__ import main as cli
from core.confidence import LOW_CONFIDENCE, domain_hint, sentence_confidence
from core.config import ModelConfig
from core.decoding import DEFAULT_LIMITS, BeamTree, beam_search, greedy, sample, score_tokens
from core.model import Transformer
from core.vocab import EOS_ID

SENTENCE = "The dog runs in the garden."


def random_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=50, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_positions=64
    )
    return Transformer(config).eval()


SOURCE = torch.tensor([[5, 6, 7, 8, 9, EOS_ID]])


# --- 1. confidence -------------------------------------------------------------------------------


def trained(translator) -> tuple[Transformer, torch.Tensor]:
    """The tiny trained model (it ends its sentences, so no search is cut at the length limit) and
    the source ids of SENTENCE."""
    ids, _ = translator._encode(SENTENCE, "de")
    return translator.model, torch.tensor([ids])


def limit_of(model: Transformer, source: torch.Tensor) -> int:
    return int(DEFAULT_LIMITS.per_sentence(source, model.config.max_positions)[0])


def searched(pieces: list[float], limit: int) -> float:
    """What a search scores these per-token log-probabilities (</s> last) as: a translation cut at the
    length limit (`limit` pieces) never produced the </s>."""
    return sum(pieces[:-1]) if len(pieces) > limit else sum(pieces)


def test_piece_log_probs_add_up_to_the_searched_log_prob(tiny_translator) -> None:
    model, source = trained(tiny_translator)
    found = [greedy(model, source)[0], *beam_search(model, source, beam_size=4, n_best=3)[0]]
    scored = score_tokens(model, source.expand(len(found), -1), [h.tokens for h in found])
    for hypothesis, pieces in zip(found, scored):
        assert len(pieces) == len(hypothesis.tokens) + 1  # </s> included
        assert searched(pieces, limit_of(model, source)) == pytest.approx(hypothesis.log_prob, abs=1e-4)


def test_translate_with_scores_gives_each_piece_its_probability(tiny_translator) -> None:
    plain = tiny_translator.translate([SENTENCE, "", "A cat."], "en", "de", beam_size=3)
    scored = tiny_translator.translate([SENTENCE, "", "A cat."], "en", "de", beam_size=3, scores=True)
    assert [t.text for t in scored] == [t.text for t in plain]  # scoring never changes the output
    assert plain[0].piece_probs == [] and plain[0].confidence is None
    for t in (scored[0], scored[2]):
        assert len(t.piece_probs) == len(t.pieces) + 1 and all(0 < p <= 1 for p in t.piece_probs)
        limit = limit_of(tiny_translator.model, torch.tensor([tiny_translator._encode(t.source, "de")[0]]))
        log_probs = [math.log(p) for p in t.piece_probs]
        assert searched(log_probs, limit) == pytest.approx(t.log_prob, abs=1e-3)
        assert t.confidence == pytest.approx(math.exp(sum(log_probs) / len(log_probs)), rel=1e-4)


def test_sentence_confidence_is_the_geometric_mean_and_the_hint_says_what_the_model_knows() -> None:
    assert sentence_confidence([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
    assert domain_hint(LOW_CONFIDENCE + 0.01, "multi30k") is None
    hint = domain_hint(0.2, "multi30k")
    assert "image descriptions" in hint and "20%" in hint
    assert "built-in corpus" in domain_hint(0.2, "builtin")


def test_cli_scores_writes_one_json_object_per_line(tiny_checkpoint, tmp_path) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{SENTENCE}\n\nA cat.\n", encoding="utf-8")
    assert (
        cli(
            [
                "translate",
                "--checkpoint",
                str(tiny_checkpoint),
                "--src",
                "en",
                "--tgt",
                "de",
                "--beam",
                "2",
                "--scores",
                "--input",
                str(source),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 and records[1] == {"translation": "", "confidence": None, "pieces": []}
    assert records[0]["pieces"][-1][0] == "</s>" and 0 < records[0]["confidence"] <= 1


# --- 4. prefix-constrained decoding ---------------------------------------------------------------


def test_a_prefix_is_kept_and_scored_with_the_models_own_probability(tiny_translator) -> None:
    model, source = trained(tiny_translator)
    prefix = tiny_translator.tokenizer.encode("Zwei Katzen")
    for hypothesis in [
        greedy(model, source, prefix=prefix)[0],
        beam_search(model, source, 3, prefix=prefix)[0][0],
        *sample(model, source, n=3, seed=1, prefix=prefix)[0],
    ]:
        assert hypothesis.tokens[: len(prefix)] == prefix
        (pieces,) = score_tokens(model, source, [hypothesis.tokens])
        assert searched(pieces, limit_of(model, source)) == pytest.approx(hypothesis.log_prob, abs=1e-4)


def test_translations_start_with_the_prefix(tiny_translator) -> None:
    for beam in (1, 3):
        for t in tiny_translator.translate([SENTENCE, "Two cats sleep."], "en", "de", beam_size=beam, prefix="Ein Hund"):
            assert t.text.startswith("Ein Hund"), t.text
    assert all(c.text.startswith("Ein Hund") for c in tiny_translator.sample(SENTENCE, "en", "de", n=3, prefix="Ein Hund"))


def test_an_empty_prefix_is_ordinary_decoding(tiny_translator) -> None:
    lines = [SENTENCE, "Two cats sleep.", "The woman reads a book."]
    model, decode = tiny_translator.model, tiny_translator.tokenizer.decode
    for beam in (1, 3):
        # The reference: the searches called directly, without any prefix argument.
        plain = []
        for line in lines:
            source = torch.tensor([tiny_translator._encode(line, "de")[0]])
            best = greedy(model, source)[0] if beam == 1 else beam_search(model, source, beam)[0][0]
            plain.append((decode(best.tokens), pytest.approx(best.log_prob, abs=1e-5)))
        for empty in ("", "  ", None):
            with_empty = tiny_translator.translate(lines, "en", "de", beam_size=beam, prefix=empty)
            assert [(t.text, t.log_prob) for t in with_empty] == plain


def test_the_greedy_continuation_of_a_prefix_takes_the_top_next_piece(tiny_translator) -> None:
    full = tiny_translator.translate(SENTENCE, "en", "de")[0]
    prefix = tiny_translator.tokenizer.decode(tiny_translator.tokenizer.processor.encode(full.text)[:1])
    top_piece = tiny_translator.next_pieces(SENTENCE, "en", "de", prefix=prefix, top_k=3)[0][0]
    continued = tiny_translator.translate(SENTENCE, "en", "de", prefix=prefix)[0]
    assert continued.pieces[len(tiny_translator.tokenizer.encode(prefix))] == top_piece


def test_cli_prefix(tiny_checkpoint, tmp_path) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(f"{SENTENCE}\nTwo cats sleep.\n", encoding="utf-8")
    assert (
        cli(
            [
                "translate",
                "--checkpoint",
                str(tiny_checkpoint),
                "--src",
                "en",
                "--tgt",
                "de",
                "--beam",
                "2",
                "--prefix",
                "Ein Hund",
                "--input",
                str(source),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert all(line.startswith("Ein Hund") for line in out.read_text(encoding="utf-8").splitlines())


# --- 3. the beam search tree ------------------------------------------------------------------------


def test_the_beam_tree_ends_in_the_n_best(tiny_translator) -> None:
    for beam in (2, 4):
        view = tiny_translator.beam_tree(SENTENCE, "en", "de", beam_size=beam, n_best=beam)
        (expected,) = tiny_translator.translate(SENTENCE, "en", "de", beam_size=beam, n_best=beam)
        ranked = sorted((n for n in view.nodes if n["rank"] is not None), key=lambda n: n["rank"])
        assert [n["rank"] for n in ranked] == list(range(len(expected.n_best)))
        assert [n["log_prob"] for n in ranked] == pytest.approx(
            [s * (n["step"] if view.beam_size > 1 else 1) for n, (_, s) in zip(ranked, expected.n_best)], abs=1e-4
        )
        assert [path_text(tiny_translator, view.nodes, n) for n in ranked] == [text for text, _ in expected.n_best]
        assert view.translation.text == expected.text


def path_text(translator, nodes: list[dict], node: dict) -> str:
    pieces = []
    while node["parent"] is not None:
        pieces.append(node["piece"])
        node = nodes[node["parent"]]
    return translator.tokenizer.decode([translator.tokenizer.processor.piece_to_id(p) for p in pieces[::-1] if p != "</s>"])


def test_scores_along_a_path_add_up() -> None:
    model = random_model(3)
    tree = BeamTree()
    beam_search(model, SOURCE, beam_size=3, n_best=3, tree=tree)
    nodes = tree.nodes
    assert sum(n.status == "dropped" for n in nodes) > 0 and sum(n.rank is not None for n in nodes) == 3
    paths = [tree.path(i) for i in range(1, len(nodes))]
    # Each node's log-probability is its parent's plus the model's log-probability of its token.
    targets = [p[:-1] if p[-1] == EOS_ID else p for p in paths]
    scored = score_tokens(model, SOURCE.expand(len(paths), -1), targets)
    for index, (path, pieces) in enumerate(zip(paths, scored), start=1):
        node, parent = nodes[index], nodes[nodes[index].parent]
        assert node.log_prob == pytest.approx(parent.log_prob + pieces[len(path) - 1], abs=1e-4)
        assert node.step == parent.step + 1 == len(path)


def test_greedy_is_the_one_branch_tree(tiny_translator) -> None:
    view = tiny_translator.beam_tree(SENTENCE, "en", "de", beam_size=1)
    greedy_translation = tiny_translator.translate(SENTENCE, "en", "de")[0]
    kept = [n for n in view.nodes if n["status"] in ("start", "kept")]
    assert [n["step"] for n in kept] == list(range(len(kept)))  # one live node per step: a single branch
    assert view.translation.text == greedy_translation.text
    (end,) = [n for n in view.nodes if n["rank"] == 0]  # </s>, or the last piece where the limit cut it
    assert [n["piece"] for n in [*kept[1:], end] if n["piece"] != "</s>"] == greedy_translation.pieces


# --- the app: every view is one core call plus formatting ------------------------------------------


@pytest.fixture()
def app_models(app_checkpoints, monkeypatch: pytest.MonkeyPatch):
    from demo import state

    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(app_checkpoints))
    return "tiny"


def test_translate_tab_colours_pieces_and_hints_when_unsure(app_models) -> None:
    from demo import translate_tab

    shown = translate_tab.confidence(app_models, f"{SENTENCE}\n\nTwo cats sleep.", "en", "de", translate_tab.BEAM, 2)
    (result,) = state_translator(app_models).translate([SENTENCE], "en", "de", beam_size=2, scores=True)
    assert shown.count("class='confidence-line'") == 2  # the empty line gets none
    first_line = shown.split("<b>1.</b>")[1].split("<b>3.</b>")[0]  # line 2 is empty: no confidence line
    assert first_line.count("class='piece'") == len(result.pieces) + 1  # every piece and </s>, each with its number
    assert all(f"{p:.1%}" in first_line for p in result.piece_probs)
    assert f"confidence <b>{result.confidence:.0%}</b>" in shown
    assert ("looks unlike" in shown) == (result.confidence < LOW_CONFIDENCE)  # the tiny model is unsure: hinted
    assert "geometric mean" in shown


def state_translator(name: str):
    from demo import state

    return state.get_translator(name)


def test_translate_tab_draws_the_search_tree(app_models) -> None:
    from demo import translate_tab

    figure, note = translate_tab.search_tree(app_models, SENTENCE, "en", "de", translate_tab.BEAM, 3, 1.0, 2)
    (best,) = state_translator(app_models).translate(SENTENCE, "en", "de", beam_size=3)
    assert best.text in note
    assert sum(trace.name == "the translation" for trace in figure.data) == 1
    greedy_figure, _ = translate_tab.search_tree(app_models, SENTENCE, "en", "de", translate_tab.GREEDY)
    assert "one branch" in greedy_figure.layout.title.text


def test_generate_tab_completes_a_started_translation_piece_by_piece(app_models) -> None:
    from demo import generate_tab

    for search in (generate_tab.GREEDY, generate_tab.BEAM, generate_tab.SAMPLING):
        assert generate_tab.complete(app_models, SENTENCE, "en", "de", "Ein Hund", search).startswith("Ein Hund")
    figure, choice = generate_tab.next_pieces(app_models, SENTENCE, "en", "de", "Ein Hund", 4)
    assert len(choice["choices"]) == 4 and choice["value"] == choice["choices"][0]
    assert generate_tab.add_piece("Ein Hund", "▁läuft") == "Ein Hund läuft"
    assert generate_tab.add_piece("Ein Hu", "nd") == "Ein Hund"
    assert generate_tab.add_piece("", "▁Ein") == "Ein"
    assert generate_tab.add_piece("Ein Hund", "</s>") == "Ein Hund"


def test_every_tab_opens_on_something_drawn(app_models) -> None:
    """No empty screen on first visit: the views the tabs are built with are filled."""
    from core.evaluate import EvalReport
    from demo import attention_tab, evaluate_tab, generate_tab, ui

    example, shown = attention_tab._opening(app_models, "en", "de")
    assert example and shown is not None and shown[4].data  # the cross-attention heatmap is drawn
    table = ui.first_view(generate_tab.sample, app_models, example, "en", "de")
    assert len(table) == 5
    assert ui.first_view(lambda: 1 / 0) is None  # a failing example never stops the app from starting

    # Evaluate: the stored report of the model, when its folder has one.
    summary, *_ = evaluate_tab.stored_results(app_models)
    assert summary == evaluate_tab.NO_STORED
    folder = state_folder(app_models)
    report = EvalReport("tiny", "test", 2, {}, "bleu-sig", "chrf-sig")
    from core.evaluate import DirectionScore

    report.scores["en-de"] = DirectionScore("en-de", 12.5, 40.0, 10)
    report.save(folder / evaluate_tab.STORED_REPORT)
    try:
        summary, bleu, chrf, matrix, _ = evaluate_tab.stored_results(app_models)
        assert "| en-de | 12.5 | 40.0 |" in summary and bleu.data and matrix.data
    finally:
        (folder / evaluate_tab.STORED_REPORT).unlink()
    assert ui.default_test_set(app_models) == "Built-in test split"


def state_folder(name: str):
    from demo import state

    return state.resolve_checkpoint(name)


def test_beam_tree_figure_marks_the_n_best_and_refuses_bad_parents() -> None:
    from core import plots

    nodes = [
        {"parent": None, "piece": "<s>", "step": 0, "log_prob": 0.0, "status": "start", "rank": None},
        {"parent": 0, "piece": "▁A", "step": 1, "log_prob": -0.1, "status": "kept", "rank": None},
        {"parent": 0, "piece": "▁B", "step": 1, "log_prob": -2.0, "status": "dropped", "rank": None},
        {"parent": 1, "piece": "</s>", "step": 2, "log_prob": -0.3, "status": "finished", "rank": 0},
    ]
    figure = plots.beam_tree(nodes)
    best = next(t for t in figure.data if t.name == "the translation")
    assert list(best.x) == [2, 1, 0]  # the path from the end back to the start
    assert plots.beam_tree(nodes[:1]).layout.annotations  # nothing to draw: the "no data" note
    with pytest.raises(ValueError, match="parent"):
        plots.beam_tree([nodes[0], {**nodes[1], "parent": 1}])


def test_attribution_heatmap_scales_each_row_by_its_largest_share() -> None:
    import numpy as np

    from core import plots

    figure = plots.attribution_heatmap(np.array([[2.0, -1.0], [0.0, 0.0]]), ["▁a", "</s>"], ["▁b", "</s>"])
    assert figure.data[0].z.tolist() == [[1.0, -0.5], [0.0, 0.0]]  # a row of zeros stays zero, not NaN
    with pytest.raises(ValueError, match="expected"):
        plots.attribution_heatmap(np.zeros((3, 2)), ["▁a", "</s>"], ["▁b", "</s>"])


# --- 5. word alignments ----------------------------------------------------------------------------


def test_pieces_merge_into_words_and_specials_belong_to_none() -> None:
    from core import alignment

    pieces = ["<2de>", "▁Ein", "▁blau", "en", "▁Hund", ".", "</s>"]
    assert alignment.word_index(pieces) == [None, 0, 1, 1, 2, 2, None]
    assert alignment.words(pieces) == ["Ein", "blauen", "Hund."]
    assert alignment.words([">>de<<", "▁Hallo", "__en__", "Welt"]) == ["Hallo", "Welt"]


def test_a_diagonal_attention_aligns_word_i_to_word_i() -> None:
    """Toy attention: target piece k looks at source piece k + 1 (after the tag); two-piece words merge."""
    import numpy as np

    from core import alignment

    source = ["<2de>", "▁a", "▁blu", "e", "▁dog", "</s>"]
    target = ["▁ein", "▁blau", "er", "▁Hund", "</s>"]
    weights = np.full((5, 6), 0.01)
    for k in range(4):
        weights[k, k + 1] = 1.0
    weights[4, 5] = 1.0
    assert alignment.align(weights, source, target) == [(0, 0), (1, 1), (2, 2)]
    assert alignment.pharaoh(alignment.align(weights, source, target)) == "0-0 1-1 2-2"
    assert alignment.pharaoh([(0, 1), (2, 0)]) == "0-1 2-0"  # source word first, then target word
    crossed = weights[:, [0, 4, 2, 3, 1, 5]]  # swap the first and last source words
    assert alignment.align(crossed, source, target) == [(0, 2), (1, 1), (2, 0)]
    matrix = alignment.word_matrix(weights, source, target)
    assert matrix.shape == (3, 3) and np.allclose(matrix.sum(1), 1.0)
    assert np.allclose(matrix[1], np.array([0.01, 1.01, 0.01]) / 1.03)  # a word's pieces: columns summed, rows averaged
    assert alignment.align(weights, source, target, threshold=0.0) == [(i, j) for i in range(3) for j in range(3)]
    assert alignment.diagonal(3, 3) == [(0, 0), (1, 1), (2, 2)] and alignment.diagonal(2, 3) == [(0, 0), (0, 1), (1, 2)]
    assert alignment.agreement([(0, 0), (1, 1)], [(0, 0), (1, 2)]) == 0.5
    with pytest.raises(ValueError, match="do not match"):
        alignment.word_matrix(weights[:, :3], source, target)


def test_pharaoh_format_of_a_translation(tiny_translator) -> None:
    import re

    from core import alignment

    found = tiny_translator.alignments(SENTENCE, "en", "de", forced="Der Hund läuft im Garten.")
    assert re.fullmatch(r"(\d+-\d+)( \d+-\d+)*", found.pharaoh)
    assert found.target_words == ["Der", "Hund", "läuft", "im", "Garten."]  # words are the output's words
    assert found.source_words == SENTENCE.split()
    assert sorted(j for _, j in found.pairs) == list(range(5))  # argmax: one pair per target word
    assert all(i < len(found.source_words) for i, _ in found.pairs)
    assert found.layer == alignment.layer_index(tiny_translator.model.config.n_decoder_layers, alignment.DEFAULT_LAYER) + 1
    searched = tiny_translator.alignments(SENTENCE, "en", "de", beam_size=2)  # the tiny model's own translation
    assert searched.translation.text == tiny_translator.translate(SENTENCE, "en", "de", beam_size=2)[0].text
    assert len(searched.target_words) == len(searched.translation.text.split())
    replayed = tiny_translator.alignments(SENTENCE, "en", "de", forced=searched.translation.text)
    assert replayed.pairs == searched.pairs


def test_cli_alignments(tiny_checkpoint, tmp_path, tiny_translator) -> None:
    source = tmp_path / "in.txt"
    source.write_text(f"{SENTENCE}\n\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert (
        cli(
            [
                "translate",
                "--checkpoint",
                str(tiny_checkpoint),
                "--src",
                "en",
                "--tgt",
                "de",
                "--beam",
                "2",
                "--alignments",
                "--input",
                str(source),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    first, empty = out.read_text(encoding="utf-8").splitlines()
    text, pairs = first.split("\t")
    assert text == tiny_translator.translate(SENTENCE, "en", "de", beam_size=2)[0].text  # translation unchanged
    assert pairs == tiny_translator.alignments(SENTENCE, "en", "de", forced=text).pharaoh and pairs
    assert empty == "\t"
    assert (
        cli(
            [
                "translate",
                "--checkpoint",
                str(tiny_checkpoint),
                "--src",
                "en",
                "--tgt",
                "de",
                "--scores",
                "--alignments",
                "--input",
                str(source),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["alignments"]


def test_alignment_links_draw_a_line_per_pair() -> None:
    import numpy as np

    from core import plots

    figure = plots.alignment_links(["a", "dog"], ["ein", "Hund"], [(0, 0), (1, 1)], np.eye(2))
    lines = [t for t in figure.data if t.mode == "lines"]
    assert [(list(t.x), list(t.y)) for t in lines] == [([0.0, 0.0], [1, 0]), ([1.0, 1.0], [1, 0])]
    assert plots.alignment_links([], [], []).layout.annotations  # nothing to draw: the "no data" note
    with pytest.raises(ValueError, match="outside"):
        plots.alignment_links(["a"], ["b"], [(1, 0)])


# --- 6. status words for people ----------------------------------------------------------------------


def test_every_ending_reads_as_words_in_each_status_line() -> None:
    from types import SimpleNamespace

    from core.events import ENDINGS, Event, status_words
    from demo import inside_tab, ui

    assert all("_" not in status_words(ending) for ending in ENDINGS)
    assert status_words(Event.TIME_LIMIT) == "stopped at its time limit"
    assert status_words(Event.EARLY_STOP) == "stopped early: validation stopped improving"
    assert status_words("some_new_state") == "some new state"
    job = SimpleNamespace(
        name="run",
        status=Event.TIME_LIMIT,
        stage="training",
        step=3,
        total_steps=10,
        error=None,
        progress=1.0,
        elapsed_seconds=75.0,
        eta_seconds=None,
        kind="transfer",
        events=[],
    )
    for shown in (ui.status_line(job, ""), ui.progress_html(job), inside_tab._transfer_status_text(job)):
        assert "stopped at its time limit" in shown and "time_limit" not in shown
    job.status = Event.EARLY_STOP
    assert ui.status_line(job, "", lambda j: " at step 3") == "**run** · **stopped early: validation stopped improving** at step 3"
