"""core.jobs: training runs in a background thread, one at a time, cancellable."""

from __future__ import annotations

from pathlib import Path

import pytest

import core
from core import checkpoint
from core.corpus import Corpus
from core.jobs import Job, JobError, TaskJob, TrainingJob, TrainingJobs, list_checkpoints
from core.train import train
from tests.helpers import tiny_config

RUN_TIMEOUT_S = 120


def _wait(job: Job) -> None:
    assert job.wait(RUN_TIMEOUT_S), f"{job.name} still {job.stage} after {RUN_TIMEOUT_S} s"


def _fake_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in checkpoint.REQUIRED_FILES:
        (folder / name).write_text("")
    return folder


def test_a_tiny_run_finishes_in_the_background(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    job = jobs.start(tiny_config(steps=10), "first", tmp_path, corpus=builtin_corpus)
    assert job.folder == tmp_path / "first" and isinstance(job, TrainingJob) and job.kind == "training"
    assert jobs.current is job
    _wait(job)
    assert job.status == "done", job.error
    assert job.progress == 1.0 and job.eta_seconds is None and job.error is None
    kinds = [event["event"] for event in job.events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert "step" in kinds and "valid" in kinds
    assert jobs.running is None
    assert list_checkpoints(tmp_path) == [job.folder]
    assert core.load(job.folder).translate("The dog runs.", "en", "de")[0].text is not None


def test_a_second_start_is_refused_while_one_runs(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    job = jobs.start(tiny_config(steps=5000), "long", tmp_path, corpus=builtin_corpus)
    try:
        with pytest.raises(JobError, match="already in progress"):
            jobs.start(tiny_config(steps=10), "second", tmp_path, corpus=builtin_corpus)
        assert not (tmp_path / "second").exists()
        assert jobs.running is job and job.status == "running"
    finally:
        jobs.cancel()
        _wait(job)


def test_cancel_stops_the_run_and_leaves_a_loadable_checkpoint(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    config = tiny_config(steps=5000)
    config.train.log_every = 1
    job = jobs.start(config, "cancelled-run", tmp_path, corpus=builtin_corpus)
    for _ in range(RUN_TIMEOUT_S * 10):
        if job.step > 0 or not job.running:
            break
        job.wait(0.1)
    assert job.step > 0, job.error
    assert job.eta_seconds is not None and 0 < job.progress < 1
    job.cancel()
    _wait(job)
    assert job.status == "cancelled"
    assert checkpoint.is_checkpoint(job.folder)
    translator = core.load(job.folder)
    assert translator.languages == ["en", "de", "fr"]
    # Once it has ended the next run may start.
    next_job = jobs.start(tiny_config(steps=4), "after", tmp_path, corpus=builtin_corpus)
    _wait(next_job)
    assert next_job.status == "done"


def test_cancel_during_data_loading_still_leaves_a_checkpoint(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    job = jobs.start(tiny_config(steps=5000), "early", tmp_path, corpus=lambda: builtin_corpus)
    job.cancel()
    _wait(job)
    assert job.status == "cancelled"
    assert checkpoint.is_checkpoint(job.folder)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "con", "x" * 65])
def test_invalid_run_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(JobError, match="Invalid run name"):
        TrainingJobs().start(tiny_config(), name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(JobError, match="already exists"):
        TrainingJobs().start(tiny_config(), "taken", tmp_path)


def test_a_failing_run_reports_its_error(tmp_path: Path) -> None:
    def broken() -> Corpus:
        raise ValueError("no such corpus")

    job = TrainingJobs().start(tiny_config(), "broken", tmp_path, corpus=broken)
    _wait(job)
    assert job.status == "failed"
    assert "no such corpus" in job.error
    assert job.events[-1]["event"] == "failed"


def _two_runs(folder: Path, corpus: Corpus, steps: int):
    """A task like transfer_experiment: two training runs one after the other, then a result."""

    def task(listeners: list) -> dict:
        config = tiny_config(steps=steps)
        config.train.log_every = 1
        first = train(config, folder / "a", corpus=corpus, listeners=listeners)
        second = train(tiny_config(steps=steps), folder / "b", corpus=corpus, listeners=listeners)
        return {"steps": [first.step, second.step]}

    return task


def test_a_task_runs_in_the_background_and_counts_the_steps_of_all_its_runs(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    job = jobs.start_task("two-runs", tmp_path, _two_runs(tmp_path / "two-runs", builtin_corpus, 6), total_steps=12, kind="experiment")
    assert isinstance(job, TaskJob) and job.kind == "experiment"
    with pytest.raises(JobError, match="A experiment is already in progress"):
        jobs.start(tiny_config(steps=4), "meanwhile", tmp_path, corpus=builtin_corpus)
    _wait(job)
    assert job.status == "done", job.error
    assert job.result == {"steps": [6, 6]}
    assert job.step == 12 and job.progress == 1.0 and job.total_steps == 12
    kinds = [event["event"] for event in job.events]
    assert kinds.count("start") == 2 and kinds[-1] == "done"
    assert job.summary()["kind"] == "experiment" and jobs.running is None
    assert checkpoint.is_checkpoint(tmp_path / "two-runs" / "b")
    with pytest.raises(JobError, match="already exists"):  # the folder is the task's
        jobs.start_task("two-runs", tmp_path, lambda listeners: None, total_steps=1)


def test_cancelling_a_task_stops_its_training(tmp_path: Path, builtin_corpus: Corpus) -> None:
    jobs = TrainingJobs()
    job = jobs.start_task("long-task", tmp_path, _two_runs(tmp_path / "long-task", builtin_corpus, 5000), total_steps=10000)
    for _ in range(RUN_TIMEOUT_S * 10):
        if job.step > 0 or not job.running:
            break
        job.wait(0.1)
    assert job.step > 0 and job.status == "running", job.error
    jobs.cancel()
    _wait(job)
    assert job.status == "cancelled" and job.result is None and job.error is None
    assert not (tmp_path / "long-task" / "b").exists()  # the second run never started


def test_a_failing_task_reports_its_error(tmp_path: Path) -> None:
    def broken(listeners: list) -> None:
        raise ValueError("no helper languages")

    job = TrainingJobs().start_task("broken-task", tmp_path, broken, total_steps=10)
    _wait(job)
    assert job.status == "failed" and "no helper languages" in job.error
    assert job.events[-1]["event"] == "failed" and job.progress == 0.0


def test_list_checkpoints_shipped_first_then_by_name(tmp_path: Path) -> None:
    for name in ("zeta", "alpha", "multi30k-4lang"):
        _fake_checkpoint(tmp_path / name)
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / checkpoint.CONFIG).write_text("{}")
    (tmp_path / "notes.txt").write_text("not a folder")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["multi30k-4lang", "alpha", "zeta"]
    assert list_checkpoints(tmp_path / "missing") == []
