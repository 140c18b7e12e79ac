"""Hosted mode (POLYGLOT_HOSTED=1): a public app shared by strangers, running for weeks.

Three rules, each enforced here so the UI only asks:

- **Ownership.** A run a visitor starts belongs to them (`owner`: an opaque id the UI derives from
  the browser session). `VisitorRuns` records it in `checkpoints/.visitor-runs.json`, as a SHA-256
  of the id, so the file holds no secret. A visitor sees the runs nobody owns (the shipped models,
  anything the app's owner put in the folder) and their own; a stranger's run is refused as if it
  did not exist, so a folder name is never a key. Without hosted mode there is no owner and every
  run is everyone's, as before.
- **Retention.** `VisitorRuns.enforce` keeps at most `Retention.max_runs` visitor runs and
  `Retention.max_gb` of them, each for at most `Retention.keep_days`: the oldest finished runs go
  first. Runs nobody owns and the run in progress are never removed. A visitor's finished run keeps
  its weights, metrics and card, not its resume state; one cancelled (or failed) before its first
  checkpoint leaves no folder at all (`finish_visitor_run`).
- **Messages.** `public_message` rewrites absolute server paths in what a visitor reads (the
  checkpoints folder becomes `checkpoints/`, any other path its file name); the server log keeps
  the full text.

`VisitorJobs` is `core.jobs.TrainingJobs` with these rules: it records the owner when a job starts,
shows a job only to its owner, and tidies its folder when it ends.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from core import checkpoint
from core.events import Event
from core.jobs import Job, TrainingJobs
from core.limits import Retention, current_retention

log = logging.getLogger(__name__)

OWNERS_FILE = ".visitor-runs.json"  # a dot-name: never listed as a checkpoint
DAMAGED = "*"  # the entry `VisitorRuns.entries` gives for an unreadable file: it matches every run, and no owner
RESUME_FILES = (checkpoint.LAST_WEIGHTS, checkpoint.TRAINING_STATE)  # what a finished visitor run drops
_LOCK = threading.RLock()  # one writer of the owners file at a time, in this process
_ORDER = itertools.count()  # breaks ties between runs started within the clock's resolution


def owner_key(owner: str) -> str:
    """What the owners file stores of an owner id: a hash, so reading the file reveals no id."""
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:32]


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder` (0 when it is missing)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


class VisitorRuns:
    """Who owns which run under `root` (a checkpoints folder), kept in `root/.visitor-runs.json`.

    Each entry is {"owner": owner_key, "created": unix time, "order": tie-breaker}. A folder without
    an entry is nobody's: shown to everyone and never removed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.file = self.root / OWNERS_FILE

    # --- the file --------------------------------------------------------------------------

    def entries(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            data = error
        if not isinstance(data, dict):  # damaged: fail closed (every run is a stranger's) and never overwrite it
            log.error("Cannot read %s (%s): every run is hidden and none is removed until it is fixed", self.file, data)
            return {DAMAGED: {"owner": "", "created": 0.0, "order": 0}}
        return data

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json(self.file, entries)

    # --- ownership -------------------------------------------------------------------------

    def claim(self, name: str, owner: str, now: float | None = None) -> None:
        """Record that `owner` started the run `name`."""
        with _LOCK:
            entries = self.entries()
            if DAMAGED in entries:
                raise ValueError(
                    "This app's list of visitor runs is damaged, so no run can start; its owner will find the reason in the server log."
                )
            entries[name] = {"owner": owner_key(owner), "created": time.time() if now is None else now, "order": next(_ORDER)}
            self._write(entries)

    def forget(self, name: str) -> None:
        with _LOCK:
            entries = self.entries()
            if DAMAGED not in entries and entries.pop(name, None) is not None:
                self._write(entries)

    def may_open(self, name: str, owner: str | None) -> bool:
        """True when `owner` may see the run `name`: nobody's runs are everyone's; an owned run is
        its owner's alone. `owner` None means no visitors (local mode): everything is open."""
        if owner is None:
            return True
        entries = self.entries()
        entry = entries.get(name) or entries.get(DAMAGED)
        return entry is None or entry.get("owner") == owner_key(owner)

    def visible(self, folders: Iterable[Path], owner: str | None) -> list[Path]:
        """The folders (directly under root) that `owner` may see, in the order given."""
        if owner is None:
            return list(folders)
        entries = self.entries()
        key = owner_key(owner)

        def allowed(folder: Path) -> bool:
            entry = entries.get(folder.name) or entries.get(DAMAGED)
            return entry is None or entry.get("owner") == key

        return [folder for folder in folders if allowed(folder)]

    # --- retention -------------------------------------------------------------------------

    def enforce(self, retention: Retention, busy: Collection[str] = (), now: float | None = None) -> list[str]:
        """Remove the oldest finished visitor runs until at most `retention.max_runs` are left, they
        take at most `retention.max_gb`, and none is older than `retention.keep_days`. Runs in `busy`
        (in progress) are counted but never removed, nor are folders nobody owns. Returns the names removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        with _LOCK:
            entries = self.entries()
            if DAMAGED in entries:
                return []
            for name in [n for n in entries if n not in busy and not (self.root / n).exists()]:
                del entries[name]  # its folder is gone (removed by hand, or a run that left nothing)
            sizes = {name: folder_bytes(self.root / name) for name in entries}
            oldest_first = sorted(entries, key=lambda n: (entries[n].get("created", 0.0), entries[n].get("order", 0)))
            for name in oldest_first:
                if name in busy:
                    continue
                too_many = len(entries) > retention.max_runs
                too_big = sum(sizes.values()) > retention.max_gb * 1e9
                too_old = now - entries[name].get("created", 0.0) > retention.keep_days * 86400
                if not (too_many or too_big or too_old):
                    continue
                shutil.rmtree(self.root / name, ignore_errors=True)
                del entries[name], sizes[name]
                removed.append(name)
            self._write(entries)
        if removed:
            log.info("Retention (%s): removed %s from %s", retention, ", ".join(removed), self.root)
        return removed


def ended_before_first_checkpoint(job: Job) -> bool:
    """A job that was cancelled or failed before it saved a checkpoint: it has nothing worth keeping."""
    events = job.events
    return job.status in (Event.CANCELLED, Event.FAILED) and not any(e["event"] == Event.CHECKPOINT for e in events)


def finish_visitor_run(job: Job) -> None:
    """Tidy a visitor's run that has ended: no folder when it ended before its first checkpoint,
    else no resume state (a finished hosted run is used, never resumed)."""
    folder = job.folder
    if ended_before_first_checkpoint(job):
        shutil.rmtree(folder, ignore_errors=True)
        VisitorRuns(folder.parent).forget(job.name)
        log.info("%s ended (%s) before its first checkpoint: removed %s", job.name, job.status, folder)
        return
    for name in RESUME_FILES:
        for path in folder.rglob(name) if folder.is_dir() else ():
            path.unlink(missing_ok=True)


class VisitorJobs(TrainingJobs):
    """`TrainingJobs` for an app with visitors. `owner()` names who is asking (None: no visitors,
    everything is everyone's, as in `TrainingJobs`); `retention()` is read when runs start and end.

    One job runs at a time for the whole app, but a visitor sees (`current`, `running`) and cancels
    only their own; a stranger's run in progress is mentioned without its name.
    """

    def __init__(self, owner: Callable[[], str | None], retention: Callable[[], Retention] = current_retention) -> None:
        super().__init__()
        self._owner = owner
        self._retention = retention

    def _mine(self, job: Job | None) -> Job | None:
        if job is None:
            return None
        owner = self._owner()
        return job if owner is None or job.owner == owner else None

    @property
    def current(self) -> Job | None:
        """The caller's running job, or else the last one they started (of all jobs, the last one kept)."""
        return self._mine(self._current)

    @property
    def running(self) -> Job | None:
        return self._mine(self._busy())

    def _busy_message(self, busy: Job) -> str:
        if self._mine(busy) is not None:
            return super()._busy_message(busy)
        return (
            f"This app trains one model at a time, and another visitor's run is in progress (step {busy.step}/"
            f"{busy.total_steps}). Try again when it has finished."
        )

    def _launch(self, run_name: str, checkpoints_dir: str | Path, make: Callable[[str, Path], Job]) -> Job:
        owner = self._owner()
        if owner is None:
            return super()._launch(run_name, checkpoints_dir, make)

        def make_owned(name: str, folder: Path) -> Job:  # called with the lock held, once the name is free
            job = make(name, folder)
            job.owner, job.on_end = owner, self._ended
            runs = VisitorRuns(folder.parent)
            runs.claim(name, owner)
            runs.enforce(self._retention(), busy={name})  # make room before the new run writes
            return job

        return super()._launch(run_name, checkpoints_dir, make_owned)

    def _ended(self, job: Job) -> None:
        finish_visitor_run(job)
        with self._lock:  # no run starts while retention looks at the folder
            busy = self._busy()
            VisitorRuns(job.folder.parent).enforce(self._retention(), busy={busy.name} if busy else set())


# --- what visitors read ---------------------------------------------------------------------------

# An absolute POSIX path: a "/" that starts a word (not inside a/b, a URL, or a number like 1/2),
# then one or more segments; it is replaced by its last segment, e.g. the name of an uploaded file.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`,;()<>\[\]]+/)*([^\s/'\"`,;()<>\[\]]+)/?")


def public_message(text: str, checkpoints_dir: str | Path | None = None) -> str:
    """`text` without absolute server paths: the checkpoints folder reads `checkpoints/`, any other
    path only its last part (an upload's original name, a file of a run)."""
    if checkpoints_dir is not None:
        root = str(Path(checkpoints_dir)).rstrip("/")
        text = re.sub(re.escape(root) + r"(?=/|\b|$)/?", "checkpoints/", text)
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), text)
