"""Hosted mode (issue 20): each visitor's runs and uploads stay theirs, and the disk never fills.

The rules (core.hosting) are tested in-process first, then through a hosted app with two
gradio_client sessions.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from core import checkpoint
from core.corpus import Corpus
from core.hosting import OWNERS_FILE, VisitorJobs, VisitorRuns, public_message
from core.jobs import Job
from core.limits import Retention, current_limits, current_retention
from tests.helpers import tiny_config

RUN_TIMEOUT_S = 180
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s/'\"`]+/")  # "/something/" starting a word


def _fake_checkpoint(folder: Path, size: int = 0) -> Path:
    folder.mkdir(parents=True)
    for name in checkpoint.REQUIRED_FILES:
        (folder / name).write_text("")
    (folder / checkpoint.WEIGHTS).write_bytes(b"\0" * size)
    return folder


def _wait(job: Job) -> None:
    assert job.wait(RUN_TIMEOUT_S), f"{job.name} still {job.stage} after {RUN_TIMEOUT_S} s"


# --- ownership --------------------------------------------------------------------------------


def test_a_visitor_sees_the_shipped_models_and_their_own_runs_only(tmp_path: Path) -> None:
    folders = [_fake_checkpoint(tmp_path / name) for name in ("shipped", "alice-run", "bob-run")]
    runs = VisitorRuns(tmp_path)
    runs.claim("alice-run", "browser:alice")
    runs.claim("bob-run", "session:bob")
    assert [p.name for p in runs.visible(folders, "browser:alice")] == ["shipped", "alice-run"]
    assert [p.name for p in runs.visible(folders, "session:bob")] == ["shipped", "bob-run"]
    assert [p.name for p in runs.visible(folders, "session:carol")] == ["shipped"]
    assert [p.name for p in runs.visible(folders, None)] == ["shipped", "alice-run", "bob-run"]  # local mode
    assert not runs.may_open("alice-run", "session:bob") and runs.may_open("alice-run", "browser:alice")
    assert runs.may_open("shipped", "session:bob")
    assert "browser:" not in (tmp_path / OWNERS_FILE).read_text()  # the file holds hashes, not the ids


def test_a_damaged_owners_file_hides_every_run_and_removes_none(tmp_path: Path) -> None:
    folders = [_fake_checkpoint(tmp_path / name) for name in ("shipped", "alice-run")]
    (tmp_path / OWNERS_FILE).write_text("{not json")
    runs = VisitorRuns(tmp_path)
    assert runs.visible(folders, "browser:alice") == []
    assert runs.enforce(Retention(max_runs=1)) == [] and all(f.exists() for f in folders)
    with pytest.raises(ValueError, match="damaged"):
        runs.claim("new", "browser:alice")
    assert (tmp_path / OWNERS_FILE).read_text() == "{not json"


# --- retention --------------------------------------------------------------------------------


def test_retention_removes_the_oldest_finished_runs_never_shipped_nor_training(tmp_path: Path) -> None:
    _fake_checkpoint(tmp_path / "shipped")
    runs = VisitorRuns(tmp_path)
    for index, name in enumerate(["training", "old", "newer", "newest"]):
        _fake_checkpoint(tmp_path / name)
        runs.claim(name, "browser:alice", now=1000.0 + index)
    removed = runs.enforce(Retention(max_runs=2), busy={"training"}, now=1010.0)
    assert removed == ["old", "newer"]  # the oldest run is training: it stays, and counts
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["newest", "shipped", "training"]
    assert set(json.loads((tmp_path / OWNERS_FILE).read_text())) == {"training", "newest"}


def test_retention_by_size(tmp_path: Path) -> None:
    runs = VisitorRuns(tmp_path)
    for index, name in enumerate(["a", "b", "c"]):
        _fake_checkpoint(tmp_path / name, size=400_000)
        runs.claim(name, "session:x", now=1000.0 + index)
    assert runs.enforce(Retention(max_runs=10, max_gb=0.001), now=1010.0) == ["a"]  # 1 MB: two of 0.4 MB fit
    assert runs.enforce(Retention(max_runs=10, max_gb=0.0005), busy={"b"}, now=1010.0) == ["c"]  # b is training
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["b"]


def test_retention_by_age(tmp_path: Path) -> None:
    runs = VisitorRuns(tmp_path)
    for name, created in [("ancient", 0.0), ("recent", 9 * 86400.0)]:
        _fake_checkpoint(tmp_path / name)
        runs.claim(name, "session:x", now=created)
    assert runs.enforce(Retention(keep_days=7), now=10 * 86400.0) == ["ancient"]
    assert (tmp_path / "recent").exists()


def test_retention_settings_come_from_the_environment_with_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLYGLOT_MAX_VISITOR_RUNS", "POLYGLOT_MAX_VISITOR_GB", "POLYGLOT_KEEP_DAYS"):
        monkeypatch.delenv(name, raising=False)
    assert current_retention() == Retention() == Retention(max_runs=20, max_gb=2.0, keep_days=7.0)
    monkeypatch.setenv("POLYGLOT_MAX_VISITOR_RUNS", "2")
    monkeypatch.setenv("POLYGLOT_MAX_VISITOR_GB", "0.5")
    monkeypatch.setenv("POLYGLOT_KEEP_DAYS", "1")
    assert current_retention() == Retention(max_runs=2, max_gb=0.5, keep_days=1.0)
    for bad in ("0", "-3", "lots", "nan"):
        monkeypatch.setenv("POLYGLOT_MAX_VISITOR_RUNS", bad)
        assert current_retention().max_runs == 20, bad
    monkeypatch.setenv("POLYGLOT_HOSTED", "1")
    monkeypatch.setenv("POLYGLOT_MAX_VISITOR_RUNS", "2")
    caps = current_limits().describe()
    assert "at most 2 visitor runs and 0.5 GB, each for at most 1 days" in caps and "deleted once read" in caps
    monkeypatch.delenv("POLYGLOT_HOSTED")
    assert "visitor" not in current_limits().describe()


# --- runs in the background (real tiny trainings) ----------------------------------------------


class Visitor:
    """Who `VisitorJobs` thinks is asking; a test switches it."""

    def __init__(self) -> None:
        self.now: str | None = "browser:alice"

    def __call__(self) -> str | None:
        return self.now


def _checkpointed_config(steps: int = 5000):
    config = tiny_config(steps=steps)
    config.train.eval_every = config.train.save_every = 2  # a checkpoint (and resume state) within seconds
    config.train.log_every = 1
    return config


def _until(job: Job, condition, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        assert job.running and time.monotonic() < deadline, f"{job.name}: no {what} ({job.status}, {job.error})"
        time.sleep(0.1)


def test_a_run_cancelled_at_step_0_leaves_nothing(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = VisitorJobs(owner=Visitor())
    job = jobs.start(tiny_config(steps=5000), "quick-cancel", tmp_path, corpus=lambda: builtin_corpus)
    job.cancel()
    _wait(job)
    assert job.status == "cancelled" and job.step == 0
    assert not job.folder.exists()
    assert json.loads((tmp_path / OWNERS_FILE).read_text()) == {}


def test_retention_with_two_runs_keeps_the_training_one(tmp_path: Path, builtin_corpus: Corpus) -> None:
    visitor = Visitor()
    jobs = VisitorJobs(owner=visitor, retention=lambda: Retention(max_runs=2))
    _fake_checkpoint(tmp_path / "shipped")
    finished = []
    for name, who in [("first", "browser:alice"), ("second", "session:bob")]:
        visitor.now = who
        job = jobs.start(tiny_config(steps=4), name, tmp_path, corpus=builtin_corpus)
        _wait(job)
        assert job.status == "done", job.error
        assert checkpoint.is_checkpoint(job.folder)
        assert not (job.folder / checkpoint.TRAINING_STATE).exists()  # a finished hosted run drops its resume state
        assert not (job.folder / checkpoint.LAST_WEIGHTS).exists()
        assert (job.folder / checkpoint.METRICS).exists() and (job.folder / checkpoint.CARD).exists()
        finished.append(job)
    visitor.now = "browser:alice"
    third = jobs.start(_checkpointed_config(), "third", tmp_path, corpus=builtin_corpus)
    try:
        assert not (tmp_path / "first").exists()  # the oldest finished run made room
        assert (tmp_path / "second").exists() and (tmp_path / "shipped").exists()
        _until(third, lambda: any(e["event"] == "checkpoint" for e in third.events), "checkpoint")
        assert third.running and third.folder.exists()
        # Bob, a stranger, does not see Alice's run in progress, cannot cancel it, and is told why he must wait.
        visitor.now = "session:bob"
        assert jobs.current is None and jobs.running is None and jobs.cancel() is None
        with pytest.raises(ValueError, match="another visitor's run is in progress") as refused:
            jobs.start(tiny_config(steps=4), "bob-again", tmp_path, corpus=builtin_corpus)
        assert "third" not in str(refused.value)
        assert third.running
        visitor.now = "browser:alice"
        assert jobs.current is third and jobs.running is third
    finally:
        visitor.now = "browser:alice"
        jobs.cancel()
        _wait(third)
    assert third.status == "cancelled" and checkpoint.is_checkpoint(third.folder)  # cancelled after a checkpoint: kept
    assert not (third.folder / checkpoint.TRAINING_STATE).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["second", "shipped", "third"]


# --- messages ---------------------------------------------------------------------------------


def test_public_messages_name_no_server_path() -> None:
    root = "/srv/space/checkpoints"
    text = (
        f"Cannot read {root}/tiny/config.json line 3; /tmp/gradio/3f2a/talks.en.txt has 2 lines, "
        "'/etc/passwd' unknown; en-de/fr 1/2 http://example.org/x stay"
    )
    public = public_message(text, root)
    assert public == (
        "Cannot read checkpoints/tiny/config.json line 3; talks.en.txt has 2 lines, "
        "'passwd' unknown; en-de/fr 1/2 http://example.org/x stay"
    )
    assert not ABSOLUTE_PATH.search(public)


# --- the demo's state: local mode lists every run -----------------------------------------------


def test_local_mode_lists_every_run_and_hosted_mode_the_visitors_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demo import state

    monkeypatch.setenv("POLYGLOT_CHECKPOINTS", str(tmp_path))
    for name in ("shipped", "alice-run", "bob-run"):
        _fake_checkpoint(tmp_path / name)
    VisitorRuns(tmp_path).claim("alice-run", "browser:alice")
    VisitorRuns(tmp_path).claim("bob-run", "session:bob")
    monkeypatch.delenv("POLYGLOT_HOSTED", raising=False)
    assert state.checkpoint_names() == ["alice-run", "bob-run", "shipped"]
    assert state.resolve_checkpoint("bob-run") == tmp_path / "bob-run"
    monkeypatch.setenv("POLYGLOT_HOSTED", "1")  # no request here: the server itself owns no visitor's run
    assert state.checkpoint_names() == ["shipped"]
    with pytest.raises(ValueError, match="Unknown model 'bob-run'") as refused:
        state.resolve_checkpoint("bob-run")
    with pytest.raises(ValueError, match="No model selected") as empty:
        state.resolve_checkpoint("")
    for message in (str(refused.value), str(empty.value)):
        assert not ABSOLUTE_PATH.search(message), message


# --- a hosted app, two visitors through its HTTP API -------------------------------------------

TRAIN_FORM = ["", False, None, ["en", "de"], "All pairs", "", "tiny", 1, 32, 6, 600, 0.003, 1.0]  # after "source"
SENTENCE = "The dog runs."


@pytest.fixture(scope="module")
def hosted_app(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """app.py with POLYGLOT_HOSTED=1, at most 2 visitor runs, and its own Gradio upload cache."""
    from tests.app_server import copy_checkpoint, launch_app

    folder = tmp_path_factory.mktemp("hosted-checkpoints")
    copy_checkpoint(tiny_checkpoint, folder, "tiny")
    uploads = tmp_path_factory.mktemp("gradio-cache")
    server = launch_app(
        folder,
        tmp_path_factory.mktemp("hosted-log") / "app.log",
        env={"POLYGLOT_HOSTED": "1", "POLYGLOT_MAX_VISITOR_RUNS": "2", "GRADIO_TEMP_DIR": str(uploads)},
    )
    server.uploads = uploads  # type: ignore[attr-defined]
    yield server
    server.stop()


def _training_tsv(folder: Path, corpus: Corpus) -> Path:
    train = corpus.split("train")
    path = folder / "talks.tsv"
    lines = ["en\tde", *(f"{en}\t{de}" for en, de in zip(train["en"][:400], train["de"][:400], strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wait_for_training(client, timeout: float = RUN_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, _progress, _loss, _speed, _bleu, timer, _picker, *_ = client.predict("tiny", api_name="/training_status")
        if not timer["active"] or time.monotonic() > deadline:
            return status
        time.sleep(1)


def _choices(dropdown: dict) -> list[str]:
    return [value for _label, value in dropdown["choices"]]


@pytest.mark.slow
def test_two_visitors_each_see_only_their_own_runs(hosted_app, tmp_path: Path, builtin_corpus: Corpus) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    alice, bob = Client(hosted_app.url, verbose=False), Client(hosted_app.url, verbose=False)
    upload = _training_tsv(tmp_path, builtin_corpus)
    status, _timer = alice.predict(
        "Uploaded files", *TRAIN_FORM[:2], [handle_file(str(upload))], *TRAIN_FORM[3:], "alice-run", api_name="/start_training"
    )
    assert "alice-run" in status
    # Uploads are deleted once read: nothing of talks.tsv is left in Gradio's cache.
    assert not [p for p in hosted_app.uploads.rglob("*") if p.is_file() and p.name == "talks.tsv"]
    assert bob.predict(api_name="/cancel_training") == "No training run is in progress."  # not Bob's to cancel
    status = _wait_for_training(alice)
    assert "**done**" in status, status

    picker, other = alice.predict("tiny", api_name="/refresh_models")
    assert "alice-run" in _choices(picker) and "alice-run" in _choices(other)
    output, *_ = alice.predict("alice-run", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate")
    assert isinstance(output, str)

    picker, other = bob.predict("tiny", api_name="/refresh_models")
    assert "alice-run" not in _choices(picker) + _choices(other) and "tiny" in _choices(picker)
    status = bob.predict("tiny", api_name="/training_status")[0]
    assert "alice-run" not in status
    assert "Unknown model 'alice-run'" in bob.predict("alice-run", api_name="/describe_model")
    attempts = [
        lambda: bob.predict("alice-run", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: bob.predict("alice-run", "(none)", "Built-in test split", [], "en-de", 1, 3, api_name="/evaluate"),
        lambda: bob.predict("tiny", "alice-run", "Built-in test split", [], "en-de", 1, 3, api_name="/evaluate"),
        lambda: bob.predict("alice-run", SENTENCE, "en", "de", 1, api_name="/attention"),
        lambda: bob.predict("tiny", "alice-run", SENTENCE, "en", "de", 1, api_name="/side_by_side"),
    ]
    for attempt in attempts:
        with pytest.raises(AppError, match="Unknown model 'alice-run'"):
            attempt()

    # Bob's own run, cancelled at step 0, leaves nothing behind.
    status, _timer = bob.predict("Built-in corpus", *TRAIN_FORM, "bob-cancelled", api_name="/start_training")
    assert "bob-cancelled" in status
    assert "Cancelling" in bob.predict(api_name="/cancel_training")
    status = _wait_for_training(bob)
    assert "**cancelled** at step 0" in status, status
    assert not (hosted_app.checkpoints / "bob-cancelled").exists()
    assert (hosted_app.checkpoints / "alice-run").exists()
    assert not (hosted_app.checkpoints / "alice-run" / checkpoint.TRAINING_STATE).exists()


@pytest.mark.slow
def test_hostile_calls_get_messages_without_server_paths(hosted_app, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(hosted_app.url, verbose=False)
    lonely = tmp_path / "lonely.en.txt"
    lonely.write_text("one line\n", encoding="utf-8")
    broken = tmp_path / "broken.tsv"
    broken.write_text("en\tde\nonly one column\n", encoding="utf-8")
    calls = [
        lambda: client.predict("", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: client.predict(None, SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: client.predict("../../etc/passwd", SENTENCE, "en", "de", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: client.predict(str(hosted_app.checkpoints / "tiny"), SENTENCE, "en", "xx", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: client.predict("tiny", SENTENCE, "en", "xx", "Greedy", 4, 1.0, 1, api_name="/translate"),
        lambda: client.predict(
            "Uploaded files", *TRAIN_FORM[:2], [handle_file(str(lonely))], *TRAIN_FORM[3:], "hostile-1", api_name="/start_training"
        ),
        lambda: client.predict(
            "Uploaded files", *TRAIN_FORM[:2], [handle_file(str(broken))], *TRAIN_FORM[3:], "hostile-2", api_name="/start_training"
        ),
        lambda: client.predict("tiny", "(none)", "Uploaded files", [handle_file(str(broken))], "en-de", 1, 3, api_name="/evaluate"),
    ]
    messages = []
    for call in calls:
        with pytest.raises(AppError) as refused:
            call()
        messages.append(str(refused.value))
    messages.append(client.predict("", api_name="/describe_model"))
    messages.append(client.predict("/etc/passwd", api_name="/describe_model"))
    for message in messages:
        assert not ABSOLUTE_PATH.search(message), message
        assert str(hosted_app.checkpoints) not in message and str(hosted_app.uploads) not in message, message
    assert any("broken.tsv" in message for message in messages)  # the file the visitor knows, by its own name
    assert not [p for p in hosted_app.uploads.rglob("*") if p.is_file() and p.suffix in (".tsv", ".txt")]
    log = hosted_app.log.read_text(encoding="utf-8", errors="replace")
    assert f"{hosted_app.uploads}" in log and "broken.tsv" in log  # the server log keeps the full paths
