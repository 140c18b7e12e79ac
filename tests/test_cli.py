"""`python -m core` end to end: train → info → translate → evaluate, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import child_env

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=600, env=child_env()
    )


def test_train_translate_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "cli-run"
    trained = cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        "builtin",
        "--languages",
        "en,de",
        "--steps",
        "30",
        "--d-model",
        "64",
        "--d-ff",
        "128",
        "--layers",
        "1",
        "--vocab-size",
        "300",
        "--tokens-per-batch",
        "1500",
        "--eval-every",
        "15",
        "--threads",
        "1",
        "--out",
        str(run),
    )
    assert trained.returncode == 0, trained.stderr
    assert "done at step 30" in trained.stdout
    assert "valid step 30" in trained.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "valid" and "mean_bleu" in r for r in records)

    info = cli("info", "--checkpoint", str(run))
    assert "en-de, de-en" in info.stdout

    lines = "The dog runs.\n\nTwo cats sleep in the garden.\n"
    translated = cli("translate", "--checkpoint", str(run), "--src", "en", "--tgt", "de", "--beam", "2", stdin=lines)
    assert translated.returncode == 0, translated.stderr
    out = translated.stdout.split("\n")
    assert len(out) == 4 and out[1] == "" and out[3] == ""  # exactly one output line per input line
    side_by_side = cli(
        "translate",
        "--checkpoint",
        str(run),
        "--src",
        "en",
        "--tgt",
        "de",
        "--beam",
        "2",
        "--batch-size",
        "1",
        "--workers",
        "2",
        stdin=lines,
    )
    assert side_by_side.returncode == 0 and side_by_side.stdout == translated.stdout, side_by_side.stderr

    report_file = tmp_path / "report.json"
    evaluated = cli(
        "evaluate",
        "--checkpoint",
        str(run),
        "--split",
        "test",
        "--beam",
        "2",
        "--max-sentences",
        "20",
        "--json",
        str(report_file),
        "--card",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "| en-de |" in evaluated.stdout and "BLEU signature: nrefs:1|case:mixed" in evaluated.stdout
    report = json.loads(report_file.read_text())
    assert set(report["scores"]) == {"en-de", "de-en"}
    assert all(0.0 <= score["off_target"] <= 1.0 for score in report["scores"].values())  # measured, not left out
    assert "off-target" in evaluated.stdout
    card = (run / "README.md").read_text()
    assert "## Evaluation on `test` (beam 2)" in card and "[matrix](eval_test_matrix.html)" in card
    assert "plotly" in (run / "eval_test_bleu.html").read_text()

    again = cli("train", "--preset", "tiny", "--out", str(run))
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_clear_errors_instead_of_tracebacks(tmp_path: Path, tiny_checkpoint: Path) -> None:
    missing = cli("translate", "--checkpoint", str(tmp_path / "nothing"), "--src", "en", "--tgt", "de", stdin="hi\n")
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    both = cli("translate", "--checkpoint", str(tmp_path), "--src", "en", "--tgt", "de", "--int8", "--bf16", stdin="hi\n")
    assert both.returncode == 2 and "exclude each other" in both.stderr and "Traceback" not in both.stderr
    no_workers = cli("translate", "--checkpoint", str(tiny_checkpoint), "--src", "en", "--tgt", "de", "--workers", "0", stdin="hi\n")
    assert no_workers.returncode == 2 and "workers must be at least 1" in no_workers.stderr
    bad_data = cli("train", "--data", "nowhere.xyz", "--out", str(tmp_path / "x"))
    assert bad_data.returncode == 2 and "Unknown data source" in bad_data.stderr
    help_text = cli("--help")
    assert all(word in help_text.stdout for word in ("train", "translate", "evaluate", "info", "download"))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    import core
    from core import checkpoint

    run = tmp_path / "stopped"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core",
            "train",
            "--preset",
            "tiny",
            "--languages",
            "en,de",
            "--steps",
            "100000",
            "--d-model",
            "64",
            "--d-ff",
            "128",
            "--layers",
            "1",
            "--vocab-size",
            "300",
            "--eval-every",
            "100000",
            "--threads",
            "1",
            "--out",
            str(run),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    deadline = time.monotonic() + 300
    while not (run / "spm.model").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-4000:]
        time.sleep(0.5)
    time.sleep(3)  # let it take some steps
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "cancelled at step" in stdout
    state = checkpoint.load_training_state(run / checkpoint.TRAINING_STATE)
    assert state["step"] > 0
    assert core.load(run).translate("The dog runs.", "en", "de")[0].text is not None


def test_sigterm_then_resume_from_the_cli_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """`python -m core train` stopped by SIGTERM mid-run, then `--resume`d, ends with exactly the
    weights of the same command run without a stop (dropout on: the random state is restored too)."""
    import signal

    import torch

    from core import checkpoint

    flags = [
        "train",
        "--preset",
        "tiny",
        "--data",
        "builtin",
        "--languages",
        "en,de",
        "--steps",
        "40",
        "--d-model",
        "64",
        "--d-ff",
        "128",
        "--layers",
        "1",
        "--vocab-size",
        "300",
        "--tokens-per-batch",
        "1500",
        "--eval-every",
        "10",
        "--dropout",
        "0.1",
        "--threads",
        "1",
    ]
    command = [sys.executable, "-m", "core", *flags]
    logs = {name: tmp_path / f"{name}.log" for name in ("straight", "stopped")}  # files: a full pipe would block
    with open(logs["straight"], "w") as straight_log, open(logs["stopped"], "w") as stopped_log:
        straight = subprocess.Popen(
            [*command, "--out", str(tmp_path / "straight")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=straight_log, env=child_env()
        )
        stopped = subprocess.Popen(
            [*command, "--out", str(tmp_path / "stopped")], cwd=ROOT, stdout=subprocess.PIPE, stderr=stopped_log, text=True, env=child_env()
        )
    for line in stopped.stdout:  # the first validation is printed at step 10: stop the run then
        if line.startswith("valid step 10"):
            stopped.send_signal(signal.SIGTERM)
            break
    stopped.communicate(timeout=300)
    assert stopped.returncode == 130, logs["stopped"].read_text()[-3000:]
    state = checkpoint.load_training_state(tmp_path / "stopped" / checkpoint.TRAINING_STATE)
    assert 10 <= state["step"] < 40, state["step"]  # stopped in the middle, not at the end
    resumed = cli(*flags, "--out", str(tmp_path / "stopped"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "done at step 40" in resumed.stdout
    assert straight.wait(timeout=300) == 0, logs["straight"].read_text()[-3000:]
    a = checkpoint.load_weights(tmp_path / "straight" / checkpoint.LAST_WEIGHTS)
    b = checkpoint.load_weights(tmp_path / "stopped" / checkpoint.LAST_WEIGHTS)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_run_folder_config_replays_the_run(tiny_checkpoint: Path) -> None:
    from core.config import RunConfig

    replay = RunConfig.load(tiny_checkpoint / "config.json")
    assert replay.model.d_model == 64 and replay.data.languages == ["en", "de", "fr"]


def test_half_checks_translations_then_halves_the_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    import core

    run = tmp_path / "half"
    shutil.copytree(tiny_checkpoint, run)
    before = (run / "model.safetensors").stat().st_size
    refused = cli("half", "--checkpoint", str(run), "--sentences", "5", "--min-identical", "1.01")
    assert refused.returncode == 1 and (run / "model.safetensors").stat().st_size == before
    halved = cli("half", "--checkpoint", str(run), "--sentences", "5", "--min-identical", "0")
    assert halved.returncode == 0 and "identical beam-4 translations" in halved.stdout
    assert (run / "model.safetensors").stat().st_size < 0.6 * before
    core.load(run).translate("The dog runs.", "en", "de")
