"""app.py served for real (subprocess, free port) and driven through its HTTP API with gradio_client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from core import ct2
from demo.ui import ENGINES
from tests.app_server import AppServer, copy_checkpoint, launch_app

pytestmark = pytest.mark.slow

SENTENCE = "The dog runs in the park."
DEFAULT_ENGINE = ENGINES[ct2.bulk_engines()[0]][1]  # how the output names the engine an API call gets when it names none
TRAIN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return Client(app_server.url, verbose=False)


def _rows(table: dict) -> list[list]:
    return table["data"]


def _figure(plot: dict) -> dict:
    assert plot["type"] == "plotly"
    return json.loads(plot["plot"])


def test_the_api_names_every_tab(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expected = {
        "/refresh_models",
        "/describe_model",
        "/translate",
        "/translate_to_all",
        "/swap_languages",
        "/sample",
        "/step_by_step",
        "/show_step",
        "/attention",
        "/attention_plots",
        "/evaluate",
        "/start_training",
        "/cancel_training",
        "/training_status",
        "/zero_shot",
        "/start_transfer",
        "/cancel_transfer",
        "/transfer_status",
        "/embedding_space",
        "/embedding_layer",
        "/tokenization",
        "/side_by_side",
    }
    assert expected <= set(endpoints)


def test_model_picker(client: Client) -> None:
    picker, other = client.predict(None, api_name="/refresh_models")
    assert picker["value"] == "tiny" and ["tiny", "tiny"] in picker["choices"]
    assert ["(none)", "(none)"] in other["choices"]
    assert "English, German, French" in client.predict("tiny", api_name="/describe_model")


def test_translate_lines_and_n_best(client: Client) -> None:
    output, table, note = client.predict("tiny", f"{SENTENCE}\nThe cat sleeps.", "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")
    assert len(output.split("\n")) == 2 and [row[0] for row in _rows(table)] == [1, 2]
    assert note.startswith(f"Engine: {DEFAULT_ENGINE} · ")
    on_torch, _, note = client.predict(
        "tiny", f"{SENTENCE}\nThe cat sleeps.", "en", "de", "Greedy", 4, 1.0, 1, "float32", "torch", api_name="/translate"
    )
    assert on_torch == output and note.startswith("Engine: PyTorch · ")
    output, table, _ = client.predict("tiny", SENTENCE, "en", "fr", "Beam search", 4, 1.0, 3, api_name="/translate")
    assert [row[1] for row in _rows(table)] == [1, 2, 3] and _rows(table)[0][2] == output
    everywhere = client.predict("tiny", SENTENCE, "en", "Greedy", 4, 1.0, api_name="/translate_to_all")
    assert [row[0] for row in _rows(everywhere)] == ["German (de)", "French (fr)"]
    quantized, table, _ = client.predict("tiny", SENTENCE, "en", "fr", "Beam search", 3, 1.0, 2, "int8", api_name="/translate")
    assert len(_rows(table)) == 2 and _rows(table)[0][2] == quantized


def test_errors_come_back_as_messages(client: Client) -> None:
    with pytest.raises(AppError, match="two different languages"):
        client.predict("tiny", SENTENCE, "en", "en", "Greedy", 4, 1.0, 1, api_name="/translate")
    with pytest.raises(AppError, match="Unknown model"):
        client.predict("../../etc", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")


def test_generate_sampling_and_steps(client: Client) -> None:
    table = client.predict("tiny", SENTENCE, "en", "de", 3, 1.0, 0, 1.0, 7, api_name="/sample")
    assert len(_rows(table)) == 3 and all(row[2] <= 0 for row in _rows(table))
    slider, chart, description = client.predict("tiny", SENTENCE, "en", "de", 5, "", api_name="/step_by_step")
    assert slider["value"] == 1 and "Step 1/" in description
    assert len(_figure(chart)["data"][0]["x"]) == 5
    chart, description = client.predict(2, api_name="/show_step")  # the steps live in the session's state
    assert "Step 2/" in description


def test_attention_and_replotting_from_state(client: Client) -> None:
    translation, layer, head, cross, grid, encoder, decoder, attribution, links = client.predict(
        "tiny", SENTENCE, "en", "de", 1, api_name="/attention"
    )
    assert "Input attribution" in _figure(attribution)["layout"]["title"]["text"]
    assert translation.startswith("**Translation:**")
    assert layer["choices"] == [["layer 1", 1]] and head["value"] == "mean"
    assert "Cross-attention" in _figure(cross)["layout"]["title"]["text"]
    cross, grid, encoder, decoder = client.predict(1, "0", api_name="/attention_plots")
    assert "head 0" in _figure(cross)["layout"]["title"]["text"]
    assert len(_figure(grid)["data"]) == 4


def test_evaluate_builtin_test_split(client: Client) -> None:
    summary, bleu, chrf, matrix, second = client.predict(
        "tiny", "(none)", "Built-in test split", [], "en-de,de-fr", 1, 3, api_name="/evaluate"
    )
    assert "BLEU signature: `nrefs:1" in summary and "de-fr (zero-shot)" not in summary
    assert f"Engine: {DEFAULT_ENGINE}" in summary
    assert _figure(bleu)["data"][0]["x"] == ["en-de", "de-fr"]
    assert _figure(matrix)["data"][0]["type"] == "heatmap"


def test_inside_zero_shot(client: Client) -> None:
    summary, matrix, bars = client.predict("tiny", "Built-in test split", [], 1, 3, api_name="/zero_shot")
    assert "| en-de | supervised |" in summary and "none is zero-shot" in summary
    assert f"Engine: {DEFAULT_ENGINE}" in summary
    on_torch, *_ = client.predict("tiny", "Built-in test split", [], 1, 3, "torch", api_name="/zero_shot")
    assert on_torch == summary.replace(DEFAULT_ENGINE, "PyTorch")  # greedy: the same scores on either engine
    assert _figure(matrix)["data"][0]["type"] == "heatmap"
    assert [trace["name"] for trace in _figure(bars)["data"]] == ["direct"]


def test_inside_embedding_space(client: Client) -> None:
    scatter, chart, table, layer = client.predict("tiny", "Built-in test split", [], 10, 1, False, api_name="/embedding_space")
    assert [trace["name"] for trace in _figure(scatter)["data"]] == ["same sentence", "en", "de", "fr"]
    assert table["headers"][:2] == ["layer", "mean"] and [row[0] for row in _rows(table)] == [0, 1]
    assert _figure(chart)["data"][0]["name"] == "mean" and layer["maximum"] == 1
    scatter = client.predict("tiny", "Built-in test split", [], 10, 0, True, api_name="/embedding_layer")
    assert "embeddings" in _figure(scatter)["layout"]["title"]["text"]


def test_inside_tokenization(client: Client) -> None:
    pieces, stats, bars, matrix = client.predict("tiny", "Built-in test split", [], 1, api_name="/tokenization")
    assert [row[0] for row in _rows(pieces)] == ["English (en)", "German (de)", "French (fr)"]
    assert all(row[3] >= 1 for row in _rows(pieces)) and len(_rows(stats)) == 3
    assert _figure(bars)["data"][0]["x"] == ["en", "de", "fr"]
    assert _figure(matrix)["data"][0]["type"] == "heatmap"


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "multi30k-4lang"


@pytest.fixture(scope="module")
def second_model(app_server: AppServer) -> str:
    """A model that really differs from the tiny one: a copy of the shipped model, named to sort
    after "tiny" (the picker's default). The app re-reads its folder on each call."""
    copy_checkpoint(SHIPPED, app_server.checkpoints, "zz-shipped-b")
    return "zz-shipped-b"


def _array(data):
    """A plotly array from JSON: a plain list, or plotly's typed binary form {dtype, bdata, shape}."""
    import base64

    import numpy as np

    if not isinstance(data, dict):
        return np.asarray(data, dtype=float)
    values = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).astype(float)
    return values.reshape([int(n) for n in str(data.get("shape", len(values))).split(",")])


def test_api_callers_pick_any_language_of_the_model_they_name(client: Client, second_model: str) -> None:
    """The language pickers hold the first model's languages (the tiny one has no Czech); an API call
    that names another model may ask for that model's languages, and an unknown one gets a message."""
    output, _, _ = client.predict(second_model, SENTENCE, "en", "cs", "Greedy", 4, 1.0, 1, api_name="/translate")
    assert output.strip()
    with pytest.raises(AppError, match="xx"):
        client.predict("tiny", SENTENCE, "en", "xx", "Greedy", 4, 1.0, 1, api_name="/translate")


def test_inside_side_by_side(client: Client, second_model: str, tiny_translator) -> None:
    import numpy as np

    import core

    table, first, second = client.predict("tiny", second_model, SENTENCE, "en", "de", 1, api_name="/side_by_side")
    assert [row[0] for row in _rows(table)] == ["tiny", second_model]
    # Each side shows its own model's translation and attention (computed here, in-process).
    views = [model.attention(SENTENCE, "en", "de", beam_size=1) for model in (tiny_translator, core.load(SHIPPED))]
    assert [row[1] for row in _rows(table)] == [view.translation.text for view in views]
    assert _rows(table)[0][1] != _rows(table)[1][1] and "Hund" in _rows(table)[1][1]
    for plot, name, view in zip((first, second), ("tiny", second_model), views, strict=True):
        figure = _figure(plot)
        assert figure["data"][0]["type"] == "heatmap" and figure["layout"]["title"]["text"].startswith(name)
        assert np.allclose(_array(figure["data"][0]["z"]), view.cross[-1].mean(axis=0), atol=1e-5)
    with pytest.raises(AppError, match="Pick a second model"):
        client.predict("tiny", "(none)", SENTENCE, "en", "de", 1, api_name="/side_by_side")


def test_a_short_training_run_ends_up_in_the_picker(client: Client) -> None:
    form = ["Built-in corpus", "", False, None, ["en", "de"], "All pairs", "", "tiny", 1, 32, 20, 600, 0.003, 1.0]
    status, timer = client.predict(*form, "http-run", api_name="/start_training")
    assert "http-run" in status and timer["active"] is True
    with pytest.raises(AppError, match="already in progress"):
        client.predict(*form, "http-second", api_name="/start_training")
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while True:
        status, progress, loss, speed, bleu, timer, picker = client.predict("tiny", api_name="/training_status")
        if not timer["active"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "**done**" in status, status
    assert "value='1.000'" in progress
    assert ["http-run", "http-run"] in picker["choices"] and picker["value"] == "tiny"
    picker, _ = client.predict("tiny", api_name="/refresh_models")
    assert ["http-run", "http-run"] in picker["choices"]
    output, *_ = client.predict("http-run", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")
    assert isinstance(output, str)


def test_fine_tuning_a_named_model_over_the_api(client: Client) -> None:
    form = ["Built-in corpus", "", False, None, ["en", "es"], "Custom", "en-es", "tiny", 1, 32, 3, 600, 0.003, 1.0]
    status, _ = client.predict(*form, "http-finetuned", "a trained model", "tiny", ["encoder"], 0.0, api_name="/start_training")
    assert "http-finetuned" in status
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while True:
        status, *_, timer, picker = client.predict("tiny", api_name="/training_status")
        if not timer["active"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "**done**" in status, status
    picker, _ = client.predict("tiny", api_name="/refresh_models")
    assert ["http-finetuned", "http-finetuned"] in picker["choices"]
    output, *_ = client.predict("http-finetuned", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")
    assert isinstance(output, str)


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """A second app, launched with POLYGLOT_HOSTED=1 (the caps of a public Space)."""
    folder = tmp_path_factory.mktemp("hosted-checkpoints")
    copy_checkpoint(tiny_checkpoint, folder, "tiny")
    server = launch_app(folder, tmp_path_factory.mktemp("hosted-log") / "app.log", env={"POLYGLOT_HOSTED": "1"})
    yield server
    server.stop()


def test_hosted_app_refuses_an_oversize_beam(hosted_server: AppServer) -> None:
    client = Client(hosted_server.url, verbose=False)
    with pytest.raises(AppError, match="Too large for this hosted app: a beam of at most 6 please"):
        client.predict("tiny", SENTENCE, "en", "de", "Beam search", 8, 1.0, 1, api_name="/translate")
    output, table, _ = client.predict("tiny", SENTENCE, "en", "de", "Beam search", 6, 1.0, 1, api_name="/translate")
    assert _rows(table)[0][2] == output
