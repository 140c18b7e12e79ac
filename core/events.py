"""What a training run reports, and why it stops: one name for each, used by every reader and writer.

A run reports its progress as records, plain dicts whose "event" key is an `Event`. The trainer
writes them, `metrics.jsonl` stores them, the CLI prints them, the jobs and the UI watch them,
and the plots draw them. `Event` is a `StrEnum`, so a record's kind is still the plain string
("step", "valid", …) in `metrics.jsonl` and in old run folders, and compares equal to it.

`Stop` says why the training loop ends before its last step. Its values are ordered so that when
the ranks of a distributed run disagree, the largest (the most final reason) wins.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Event(StrEnum):
    """The kind of a training record (the value of its "event" key)."""

    START = "start"  # training begins or resumes: total_steps, parameters, directions, ranks
    STEP = "step"  # every `log_every` steps: loss, lr, tokens_per_s, elapsed_s
    VALID = "valid"  # a validation: valid_loss, BLEU and chrF per direction and their means
    CHECKPOINT = "checkpoint"  # the best (or averaged) weights were saved
    # How a run ends: exactly one of these is the last record of a run.
    DONE = "done"  # reached its last step
    EARLY_STOP = "early_stop"  # validation stopped improving (`patience`)
    TIME_LIMIT = "time_limit"  # ran out of `max_minutes`
    CANCELLED = "cancelled"  # asked to stop; still leaves a loadable model
    FAILED = "failed"  # raised an error


ENDINGS = frozenset({Event.DONE, Event.EARLY_STOP, Event.TIME_LIMIT, Event.CANCELLED, Event.FAILED})
FINISHED = frozenset({Event.DONE, Event.EARLY_STOP, Event.TIME_LIMIT})  # ended normally, with a model as planned

# How each status of a run reads to a person (the UI's status lines and progress bars).
STATUS_WORDS = {
    "running": "running",
    Event.DONE: "done",
    Event.EARLY_STOP: "stopped early: validation stopped improving",
    Event.TIME_LIMIT: "stopped at its time limit",
    Event.CANCELLED: "cancelled",
    Event.FAILED: "failed",
}


def status_words(status: str) -> str:
    """A run's status (an ending `Event`, or "running") in words: "stopped at its time limit", not
    `time_limit`. An unknown status is shown with its underscores as spaces."""
    return STATUS_WORDS.get(status, str(status).replace("_", " "))


class Stop(IntEnum):
    """Why the loop stops early; the ranks of a distributed run agree on the largest value."""

    NO = 0  # keep training
    TIME_LIMIT = 1
    EARLY_STOP = 2
    CANCELLED = 3

    @property
    def event(self) -> Event:
        """The record kind that ends a run stopped for this reason."""
        if self is Stop.NO:
            raise ValueError("Stop.NO ends nothing")
        return Event(self.name.lower())
