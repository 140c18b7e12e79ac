"""Background training jobs: run a `Trainer` in a thread and watch its events from elsewhere.

The web UI (and anything else that must stay responsive while a model trains) starts a run with
`TrainingJobs.start(...)`, which returns at once; the run's events pile up in a thread-safe list
that any thread can read through `Job.events`, `Job.progress` and `Job.eta_seconds`.

One `TrainingJobs` holds at most one running job: training takes every CPU core, so a second
run on the same machine would only make both slow. `start` refuses while a run is in progress.

`TrainingJobs.start` makes a `TrainingJob` (one `Trainer`). `TrainingJobs.start_task(...)` makes a
`TaskJob`, which runs any other long job under the same rule: a function that takes a list of
event listeners and trains one or more models with them (e.g. `core.analysis.transfer_experiment`).
Both are watched the same way (`Job` holds what they share), a task's return value is
`Job.result`, and cancelling it stops the training at its next event.

A hosted app has visitors who are strangers to each other: `core.hosting.VisitorJobs` extends
`TrainingJobs` with an owner per job (`Job.owner`) and tidies a job's folder when it ends
(`Job.on_end`, called in the job's thread once its status is final).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import checkpoint
from core.config import RunConfig
from core.corpus import Corpus
from core.events import ENDINGS, FINISHED, Event
from core.train import Listener, Record, Trainer

SHIPPED_CHECKPOINTS: tuple[str, ...] = ("multi30k-4lang",)  # listed first, in this order

CorpusSource = Corpus | Callable[[], Corpus] | None
Task = Callable[[list[Listener]], Any]  # trains with the listeners it is given; returns the job's result
TRAINING = "training"
log = logging.getLogger(__name__)


class JobError(ValueError):
    """A training run that cannot be started, with a message meant for the user."""


class JobCancelled(Exception):
    """Raised by a task's listener at the first event after `cancel()`: it unwinds the task."""


class Job:
    """What every background job shares: a thread, a cancel flag, and the events it has seen so far.

    Every property is safe to read from any thread. The two kinds are `TrainingJob` (one
    `Trainer`) and `TaskJob` (a function that may train several models); each says how it runs,
    what its last step is and how it ended.
    """

    def __init__(self, name: str, folder: Path, config: RunConfig | None, total_steps: int, kind: str) -> None:
        self.name = name
        self.folder = folder
        self.config = config
        self.kind = kind
        self.total_steps = total_steps
        self._lock = threading.Lock()
        self._events: list[Record] = []
        self._cancel_requested = False
        self._error: str | None = None
        self._started_at = time.monotonic()
        self._training_since: tuple[float, int] | None = None  # (time, step) of the first "start" event
        self.owner: str | None = None  # who started it, on a server with visitors (core.hosting); None: anyone
        self.on_end: Callable[[Job], None] | None = None  # called in the job's thread once it has ended
        self._thread = threading.Thread(target=self._main, name=f"{kind}-{name}", daemon=True)

    # --- what each kind defines (called with the lock held, except _run) -----------------------

    def _run(self) -> None:
        raise NotImplementedError

    def _final_status(self) -> str | None:
        """How the job ended, or None while it has not."""
        raise NotImplementedError

    def _last_step(self) -> int:
        raise NotImplementedError

    def _error_message(self) -> str | None:
        return self._error

    # --- running ---------------------------------------------------------------------------

    def _main(self) -> None:
        self._run()
        if self.on_end is not None:
            try:
                self.on_end(self)
            except Exception:  # tidying up must never turn a finished run into a crash
                log.exception("Tidying up after %s failed", self.name)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Stop at the next step."""
        with self._lock:
            self._cancel_requested = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or `timeout` seconds pass); True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- watching --------------------------------------------------------------------------

    @property
    def events(self) -> list[Record]:
        """A snapshot of every event so far (start, step, valid, checkpoint, and the final one)."""
        with self._lock:
            return list(self._events)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.status == "running"

    @property
    def result(self) -> Any:
        """What the job returned (None for a training run, and until a task is done)."""
        return None

    @property
    def status(self) -> str:
        """ "running", or how the job ended: done, cancelled, early_stop, time_limit or failed."""
        with self._lock:
            final = self._final_status()
        if final is not None:
            return final
        return "running" if self._thread.is_alive() or not self._thread.ident else Event.FAILED

    @property
    def stage(self) -> str:
        """What the job is doing now, in words."""
        if self.status != "running":
            return self.status
        with self._lock:
            started = self._training_since is not None
            cancelling = self._cancel_requested
        if cancelling:
            return "stopping after the current step"
        return "training" if started else "preparing data and tokenizer"

    @property
    def error(self) -> str | None:
        with self._lock:
            return self._error_message()

    @property
    def step(self) -> int:
        with self._lock:
            return self._last_step()

    @property
    def progress(self) -> float:
        """Fraction of the planned steps done, 0…1 (1 once the job has ended normally)."""
        if self.status in FINISHED:
            return 1.0
        return min(1.0, self.step / max(1, self.total_steps))

    @property
    def elapsed_seconds(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def eta_seconds(self) -> float | None:
        """Wall-clock seconds left at the pace so far (validation included); None until known."""
        with self._lock:
            since = self._training_since
            step = self._last_step()
        if since is None or self.status != "running":
            return None
        started_at, first_step = since
        done = step - first_step
        if done <= 0:
            return None
        seconds_per_step = (time.monotonic() - started_at) / done
        return max(0.0, (self.total_steps - step) * seconds_per_step)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "folder": str(self.folder),
            "status": self.status,
            "step": self.step,
            "total_steps": self.total_steps,
            "progress": self.progress,
            "eta_seconds": self.eta_seconds,
            "error": self.error,
        }


class TrainingJob(Job):
    """One `Trainer` run; its status is the run's final event. Cancelling saves a loadable checkpoint."""

    def __init__(self, name: str, folder: Path, config: RunConfig, corpus: CorpusSource = None) -> None:
        super().__init__(name, folder, config, config.train.steps, TRAINING)
        self._corpus = corpus
        self._trainer: Trainer | None = None

    def _run(self) -> None:
        try:
            corpus = self._corpus() if callable(self._corpus) else self._corpus
            with self._lock:
                self._trainer = Trainer(self.config, self.folder, corpus=corpus, listeners=[self._record])
                if self._cancel_requested:
                    self._trainer.cancel()  # cancelled while the data was loading: stop at step 0
            self._trainer.run()
        except Exception as error:  # the run is over either way; keep the reason for the UI
            with self._lock:
                self._error = f"{type(error).__name__}: {error}"
                if not self._events or self._events[-1]["event"] != Event.FAILED:
                    self._events.append({"event": Event.FAILED, "step": self._last_step(), "error": self._error})

    def _record(self, event: Record) -> None:
        with self._lock:
            self._events.append(dict(event))
            if event["event"] == Event.START:
                self._training_since = (time.monotonic(), int(event.get("step", 0)))
                self.total_steps = int(event.get("total_steps", self.total_steps))

    def cancel(self) -> None:
        """Stop after the current step; the run saves a loadable checkpoint before it ends."""
        with self._lock:
            self._cancel_requested = True
            if self._trainer is not None:
                self._trainer.cancel()

    def _final_status(self) -> str | None:
        return next((e["event"] for e in reversed(self._events) if e["event"] in ENDINGS), None)

    def _last_step(self) -> int:
        return max((int(e.get("step", 0)) for e in self._events), default=0)

    def _error_message(self) -> str | None:
        return self._error or next((e.get("error") for e in self._events if e["event"] == Event.FAILED), None)


class TaskJob(Job):
    """`task(listeners)` in the background: it may train several models one after the other, so its
    `step` adds up the steps of all of them (out of `total_steps`, given when it starts), and its
    status is how the task ended, not how its last training run did. Cancelling raises
    `JobCancelled` from the listeners at the task's next training event.
    """

    def __init__(self, name: str, folder: Path, task: Task, total_steps: int, kind: str = "task", config: RunConfig | None = None) -> None:
        super().__init__(name, folder, config, total_steps, kind)
        self._task = task
        self._outcome: str | None = None  # how the task ended
        self._result: Any = None
        self._task_steps = 0  # steps so far, over all the task's training runs
        self._phase_offset = 0  # steps of the task's earlier training runs

    def _run(self) -> None:
        result, error = None, None
        try:
            result = self._task([self._record])
            outcome = Event.DONE
        except JobCancelled:
            outcome = Event.CANCELLED
        except Exception as exception:  # the task is over either way; keep the reason for the UI
            outcome, error = Event.FAILED, f"{type(exception).__name__}: {exception}"
        with self._lock:
            self._result, self._error, self._outcome = result, error, outcome
            final: Record = {"event": outcome, "step": self._last_step()}
            self._events.append({**final, "error": error} if error else final)

    def _record(self, event: Record) -> None:
        with self._lock:
            self._events.append(dict(event))
            if event["event"] == Event.START:  # the next training run: its steps come after the last one's
                self._phase_offset = self._task_steps
                if self._training_since is None:
                    self._training_since = (time.monotonic(), self._task_steps)
            self._task_steps = max(self._task_steps, self._phase_offset + int(event.get("step", 0)))
            stop = self._cancel_requested and event["event"] not in ENDINGS
        if stop:
            raise JobCancelled(f"{self.name} was cancelled")

    @property
    def result(self) -> Any:
        """What the task returned (None until it is done)."""
        with self._lock:
            return self._result

    def _final_status(self) -> str | None:
        return self._outcome

    def _last_step(self) -> int:
        return self._task_steps


class TrainingJobs:
    """Starts training runs in the background, at most one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Job | None = None

    @property
    def current(self) -> Job | None:
        """The running job, or else the last one started (None before the first)."""
        return self._current

    @property
    def running(self) -> Job | None:
        return self._busy()

    def _busy(self) -> Job | None:
        """The running job, whoever started it (subclasses may show `running` to fewer callers)."""
        job = self._current
        return job if job is not None and job.running else None

    def _busy_message(self, busy: Job) -> str:
        what = "A training run" if busy.kind == TRAINING else f"A {busy.kind}"
        return (
            f"{what} is already in progress ({busy.name}, step {busy.step}/{busy.total_steps}). Wait for it to finish or cancel it first."
        )

    def start(self, config: RunConfig, run_name: str, checkpoints_dir: str | Path, corpus: CorpusSource = None) -> Job:
        """Start training `config` into `checkpoints_dir/run_name` and return at once.

        `corpus` is a loaded Corpus, a function returning one (called in the background thread,
        so a slow download does not block the caller), or None to load `config.data.source`.
        Raises JobError when a run is in progress or the name is invalid or already taken.
        """
        return self._launch(run_name, checkpoints_dir, lambda name, folder: TrainingJob(name, folder, config, corpus))

    def start_task(
        self, run_name: str, checkpoints_dir: str | Path, task: Task, total_steps: int, kind: str = "task", config: RunConfig | None = None
    ) -> Job:
        """Run `task(listeners)` in the background under the same rules as `start` (one job at a
        time, a fresh `checkpoints_dir/run_name` that the task may write to) and return at once.

        The task trains with the listeners it is given (e.g. `transfer_experiment(..., listeners=listeners)`);
        `total_steps` is the sum of the steps of its training runs, for the progress bar. Its return
        value becomes `Job.result`. Cancelling raises `JobCancelled` from the listeners at the next
        training event, which ends the task with status "cancelled".
        """
        return self._launch(run_name, checkpoints_dir, lambda name, folder: TaskJob(name, folder, task, total_steps, kind, config))

    def _launch(self, run_name: str, checkpoints_dir: str | Path, make: Callable[[str, Path], Job]) -> Job:
        try:
            name = checkpoint.check_run_name(run_name)
        except ValueError as error:
            raise JobError(str(error)) from None
        folder = Path(checkpoints_dir) / name
        with self._lock:
            busy = self._busy()
            if busy is not None:
                raise JobError(self._busy_message(busy))
            if folder.exists():  # the message names no server folder: visitors of a hosted app read it
                raise JobError(f"A run named {name!r} already exists in checkpoints/; choose another name")
            job = make(name, folder)
            job.start()
            self._current = job
        return job

    def cancel(self) -> Job | None:
        """Cancel the running job, if any; returns it."""
        job = self.running
        if job is not None:
            job.cancel()
        return job


def list_checkpoints(checkpoints_dir: str | Path) -> list[Path]:
    """Every complete checkpoint folder directly under `checkpoints_dir`: shipped ones first,
    then the others by name. A missing folder gives an empty list."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and checkpoint.is_checkpoint(p)]

    def order(path: Path) -> tuple[int, str]:
        shipped = SHIPPED_CHECKPOINTS.index(path.name) if path.name in SHIPPED_CHECKPOINTS else len(SHIPPED_CHECKPOINTS)
        return shipped, path.name.lower()

    return sorted(found, key=order)
