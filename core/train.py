"""Training: one `RunConfig` in, one run folder out.

The loop is the textbook one — batch, forward, label-smoothed loss, backward, clip, AdamW step —
plus what a real run needs: warm-up and decay of the learning rate, periodic validation with
BLEU per direction, best/last checkpoints, early stopping, cancellation, and exact resume.

Progress is reported as records (plain dicts) to listeners: the CLI prints them, the metrics file
stores them, the UI plots them. Their kinds (`Event`) and the reasons to stop early (`Stop`) are
named in `core.events`.

The trainer never changes the config it is given: it works on its own copy, completes it (the
vocabulary size comes from the tokenizer) and returns it as `TrainResult.config`, the config
that was used, which is also the one written to the run folder's config.json.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import checkpoint, distributed, finetune
from core.batching import BatchStream, collate, make_example, pack
from core.card import write_card
from core.config import RunConfig, TrainConfig
from core.corpus import Corpus, load_corpus
from core.device import pick_device
from core.evaluate import evaluate
from core.events import Event, Stop
from core.languages import parse_directions, split_direction
from core.model import Transformer
from core.tokenizer import Tokenizer
from core.translator import Translator

Record = dict[str, Any]  # one training record: {"event": Event, "step": int, ...}
Listener = Callable[[Record], None]


@dataclass
class TrainResult:
    folder: Path
    status: Event  # DONE, EARLY_STOP, TIME_LIMIT or CANCELLED
    step: int
    best_bleu: float | None
    config: RunConfig  # the config that was used: the one given, with the tokenizer's vocabulary size


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then inverse square root (Vaswani et al.) or cosine decay."""
    step = max(step, 1)
    if step < config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.schedule == "cosine":
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
        floor = config.min_lr_ratio
        return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    if config.schedule == "inverse_sqrt":
        return config.lr * math.sqrt(max(1, config.warmup_steps) / step)
    raise ValueError(f"Unknown schedule {config.schedule!r}: use 'inverse_sqrt' or 'cosine'")


class LossOf(nn.Module):
    """The training loss as a module's forward, the shape DistributedDataParallel wraps."""

    def __init__(self, model: Transformer, label_smoothing: float) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, source: torch.Tensor, target_in: torch.Tensor, target_out: torch.Tensor) -> torch.Tensor:
        return self.model.loss(source, target_in, target_out, self.label_smoothing)[0]


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        out: str | Path,
        corpus: Corpus | None = None,
        listeners: Iterable[Listener] = (),
        resume: bool = False,
    ) -> None:
        self.config = config.copy()  # the caller's config stays as it was; see TrainResult.config
        self.out = Path(out)
        self.corpus = corpus
        self.listeners = list(listeners)
        self.resume = resume
        self.cancel_requested = threading.Event()
        self.records: list[Record] = []
        self.group = distributed.Group()  # joined in _prepare when launched by torchrun

    def cancel(self) -> None:
        """Ask the run to stop after the current step; it saves a usable checkpoint first."""
        self.cancel_requested.set()

    def emit(self, event: Record) -> None:
        if not self.group.is_main:
            return
        self.records.append(event)
        for listener in self.listeners:
            listener(event)

    # --- set-up ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        cfg = self.config
        torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
        self.device = pick_device(cfg.train.device)
        self.group = distributed.start(self.device)
        torch.manual_seed(cfg.train.seed + self.group.rank)  # each rank its own dropout masks
        corpus = self.corpus or load_corpus(cfg.data.source)
        self.languages = cfg.data.languages or corpus.languages
        corpus = corpus.restrict(self.languages)
        self.directions = parse_directions(cfg.data.directions, self.languages)
        state_file = self.out / checkpoint.TRAINING_STATE
        resuming = self.resume and state_file.exists()
        if resuming:
            self.started_from = checkpoint.read_config(self.out).get("started_from")
            self.tokenizer = Tokenizer.load(self.out / checkpoint.TOKENIZER, self._known_languages())
            weights = None
        elif cfg.train.init_from:
            self.tokenizer, weights = self._start_from(cfg.train.init_from, corpus)
        else:
            self.started_from = None
            train = corpus.split("train")
            self.tokenizer = Tokenizer.train(
                {lang: train[lang] for lang in self.languages},
                cfg.data.vocab_size,
                cfg.data.tokenizer_type,
                cfg.data.tokenizer_sentences_per_language,
                cfg.train.seed,
            )
            weights = None
        self.replayed: list[str] = []
        if self.started_from and cfg.train.replay:
            corpus = finetune.replay_corpus(self.started_from, corpus)
            self.replayed = [d for d in self.started_from["directions"] if d not in self.directions]
        self.corpus = corpus
        self.directions = [*self.directions, *self.replayed]
        # SentencePiece may give fewer pieces than asked on a small corpus: the model follows it.
        cfg.model.vocab_size = len(self.tokenizer)  # on the trainer's own copy of the config
        self.model = Transformer(cfg.model)
        if weights is not None:
            self.model.load_state_dict(weights)
        self.model.to(self.device)
        first_new_id = self.started_from["first_new_id"] if self.started_from else 0
        finetune.freeze(self.model, cfg.train.freeze, first_new_id)
        self.train_module = distributed.wrap(LossOf(self.model, cfg.train.label_smoothing), self.group)
        self.optimizer = torch.optim.AdamW(
            finetune.parameter_groups(self.model, cfg.train.weight_decay, cfg.train.freeze), lr=cfg.train.lr, betas=cfg.train.betas
        )
        encoded = {lang: self.tokenizer.encode_batch(lines) for lang, lines in corpus.split("train").items()}
        self.stream = BatchStream(
            encoded,
            self.directions,
            self.tokenizer.tag_ids,
            cfg.train.tokens_per_batch,
            cfg.train.direction_temperature,
            cfg.train.seed,
            cfg.data.max_tokens_per_sentence,
            frozenset(self.replayed),
            cfg.train.replay,
        )
        self.step = 0
        self.elapsed = 0.0
        self.best_bleu: float | None = None
        self.bad_validations = 0
        self.snapshots: list[dict[str, torch.Tensor]] = []
        if resuming:
            self._restore(state_file)
        elif self.group.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(self.out / checkpoint.TOKENIZER, self.tokenizer.model_proto)
            self._write_config()
        self._valid_batches = self._validation_batches()

    def _start_from(self, folder: str, corpus: Corpus) -> tuple[Tokenizer, dict[str, torch.Tensor]]:
        """The tokenizer and weights of a fine-tuning run: the starting model's, grown for new languages."""
        start = finetune.open_start(folder)
        finetune.check_shape(start, self.config.model)
        train = corpus.split("train")
        tokenizer, weights = finetune.grow(
            start, {lang: train[lang] for lang in self.languages}, self.config.data.new_language_pieces, self.config.train.seed
        )
        self.started_from = {
            "path": str(start.folder),
            "weights_sha256": start.weights_sha256,
            "languages": start.languages,
            "directions": start.directions,
            "source": start.config["run"]["data"]["source"],
            "added_languages": [lang for lang in tokenizer.languages if lang not in start.languages],
            "first_new_id": len(start.tokenizer),
            "added_pieces": len(tokenizer) - len(start.tokenizer),
        }
        return tokenizer, weights

    def _known_languages(self) -> list[str]:
        """Every language the tokenizer has a tag for: the starting model's, then the run's own."""
        before = self.started_from["languages"] if self.started_from else []
        return list(dict.fromkeys([*before, *self.languages]))

    def _known_directions(self) -> list[str]:
        before = self.started_from["directions"] if self.started_from else []
        return list(dict.fromkeys([*self.directions, *before]))

    def _write_config(self, summary: dict[str, Any] | None = None) -> None:
        checkpoint.write_json(
            self.out / checkpoint.CONFIG,
            {
                "format_version": checkpoint.FORMAT_VERSION,
                "run": self.config.to_dict(),
                "languages": self._known_languages(),
                "directions": self._known_directions(),
                "started_from": self.started_from,
                "corpus": self.corpus.name,
                "corpus_sizes": self.corpus.sizes(),
                "parameters": self.model.num_parameters(),
                "training": summary or {},
            },
        )

    def _restore(self, state_file: Path) -> None:
        state = checkpoint.load_training_state(state_file)
        self.model.load_state_dict(checkpoint.load_weights(self.out / checkpoint.LAST_WEIGHTS))
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state(state["stream"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":  # dropout on a GPU draws from its own generator
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if self.group.rank:  # only rank 0's generator is saved: the others restart their own
            torch.manual_seed(self.config.train.seed + self.group.rank + 1_000_003 * int(state["step"]))
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.best_bleu = state["best_bleu"]
        self.bad_validations = int(state["bad_validations"])
        self.records = [
            r
            for r in checkpoint.read_metrics(self.out)
            if r.get("step", 0) <= self.step and r["event"] in (Event.STEP, Event.VALID, Event.START)
        ]

    def _validation_batches(self) -> list:
        n = self.config.train.eval_sentences
        examples = []
        for name in self.directions:
            src, tgt = split_direction(name)
            sources, targets = self.corpus.pairs("valid", src, tgt)
            for s, t in zip(self.tokenizer.encode_batch(sources[:n]), self.tokenizer.encode_batch(targets[:n])):
                examples.append(make_example(s, t, self.tokenizer.tag_ids[tgt]))
        return [collate(batch) for batch in pack(examples, self.config.train.tokens_per_batch)]

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        try:
            self._prepare()
            return self._loop()
        except Exception as error:
            self.emit({"event": Event.FAILED, "step": getattr(self, "step", 0), "error": f"{type(error).__name__}: {error}"})
            self._flush_metrics()
            raise

    def _loop(self) -> TrainResult:
        cfg = self.config.train
        self.emit(
            {
                "event": Event.START,
                "step": self.step,
                "total_steps": cfg.steps,
                "parameters": self.model.num_parameters(),
                "directions": self.directions,
                "resumed": self.step > 0,
                "ranks": self.group.world,
            }
        )
        batches = iter(self.stream)
        interval_loss, interval_tokens, interval_steps, interval_start = 0.0, 0, 0, time.perf_counter()
        status = Event.DONE
        while self.step < cfg.steps:
            # All ranks stop together: whichever rank was asked to stop (or ran out of time) decides.
            time_up = self.group.is_main and bool(cfg.max_minutes) and self.elapsed >= cfg.max_minutes * 60
            wish = Stop.CANCELLED if self.cancel_requested.is_set() else Stop.TIME_LIMIT if time_up else Stop.NO
            stop = Stop(distributed.agree(wish, self.group))
            if stop:
                status = stop.event
                if stop == Stop.TIME_LIMIT and self.records[-1]["event"] not in (Event.CHECKPOINT, Event.VALID):
                    self._validate_and_keep_best()
                break
            loss, tokens = self._train_step(batches)
            self.step += 1
            interval_loss += loss
            interval_tokens += tokens
            interval_steps += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                self.elapsed += now - interval_start
                loss_sum, tokens_sum = distributed.total([interval_loss, interval_tokens], self.group)
                self.emit(
                    {
                        "event": Event.STEP,
                        "step": self.step,
                        "loss": loss_sum / self.group.world / interval_steps,
                        "lr": learning_rate(self.step, cfg),
                        "tokens_per_s": tokens_sum / max(now - interval_start, 1e-9),
                        "elapsed_s": self.elapsed,
                        "total_steps": cfg.steps,
                    }
                )
                interval_loss, interval_tokens, interval_steps, interval_start = 0.0, 0, 0, now
            pause_start = time.perf_counter()
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                early = self.group.is_main and self._validate_and_keep_best()
                if distributed.agree(Stop.EARLY_STOP if early else Stop.NO, self.group):
                    status = Event.EARLY_STOP
                    break
            if self.step % cfg.save_every == 0:
                self._save_last()
            interval_start += time.perf_counter() - pause_start  # validating and saving is not training time
        return self._finish(status)

    def _train_step(self, batches) -> tuple[float, int]:
        """One optimizer step over `accumulation` batches per rank; returns this rank's mean loss and tokens."""
        cfg = self.config.train
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step + 1, cfg)
        total_loss, total_tokens = 0.0, 0
        for _ in range(cfg.accumulation):
            batch = [next(batches) for _ in range(self.group.world)][self.group.rank].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = self.train_module(batch.source, batch.target_in, batch.target_out)
            (loss / cfg.accumulation).backward()  # DDP averages the gradients of all ranks here
            total_loss += loss.item() / cfg.accumulation
            total_tokens += batch.tokens
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, total_tokens

    # --- validation and checkpoints --------------------------------------------------------

    @torch.inference_mode()
    def validation_loss(self) -> float:
        self.model.eval()
        total, tokens = 0.0, 0
        for batch in self._valid_batches:
            batch = batch.to(self.device)
            loss, n = self.model.loss(batch.source, batch.target_in, batch.target_out, label_smoothing=0.0)
            total += float(loss) * n
            tokens += n
        return total / max(tokens, 1)

    def validate(self) -> Record:
        valid_loss = self.validation_loss()
        translator = Translator(self.model, self.tokenizer, {"languages": self._known_languages(), "directions": self.directions})
        report = evaluate(
            translator,
            self.corpus.split("valid"),
            self.directions,
            split="valid",
            beam_size=1,
            max_sentences=self.config.train.eval_sentences,
        )
        self.model.train()
        return {
            "event": Event.VALID,
            "step": self.step,
            "valid_loss": valid_loss,
            "bleu": report.metric("bleu"),
            "chrf": report.metric("chrf"),
            "mean_bleu": report.mean("bleu"),
            "mean_chrf": report.mean("chrf"),
            "bleu_signature": report.bleu_signature,
            "elapsed_s": self.elapsed,
        }

    def _validate_and_keep_best(self) -> bool:
        """Validate, save the model if it is the best so far; True when early stopping triggers."""
        cfg = self.config.train
        event = self.validate()
        self.emit(event)
        if cfg.average_last:
            self.snapshots = [*self.snapshots, {k: v.clone() for k, v in self.model.state_dict().items()}][-cfg.average_last :]
        if self.best_bleu is None or event["mean_bleu"] > self.best_bleu:
            self.best_bleu, self.bad_validations = event["mean_bleu"], 0
            checkpoint.save_weights(self.model.state_dict(), self.out / checkpoint.WEIGHTS)
            self.emit({"event": Event.CHECKPOINT, "step": self.step, "kind": "best", "mean_bleu": self.best_bleu})
        else:
            self.bad_validations += 1
        self._flush_metrics()
        return bool(cfg.patience) and self.bad_validations >= cfg.patience

    def _save_last(self) -> None:
        if not self.group.is_main:
            return
        checkpoint.save_weights(self.model.state_dict(), self.out / checkpoint.LAST_WEIGHTS)
        checkpoint.save_training_state(
            {
                "optimizer": self.optimizer.state_dict(),
                "stream": self.stream.state(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "step": self.step,
                "elapsed": self.elapsed,
                "best_bleu": self.best_bleu,
                "bad_validations": self.bad_validations,
            },
            self.out / checkpoint.TRAINING_STATE,
        )
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        if self.group.is_main and self.out.exists():
            checkpoint.append_metrics(self.out, self.records)

    def _average_snapshots(self) -> None:
        """Average the weights of the last validations (a cheap ensemble, Vaswani et al. 2017)
        and keep the average if it validates better than the best single checkpoint."""
        if len(self.snapshots) < 2:
            return
        best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        average = {k: torch.stack([s[k].float() for s in self.snapshots]).mean(0).to(v.dtype) for k, v in best_state.items()}
        self.model.load_state_dict(average)
        event = self.validate()
        event["averaged"] = len(self.snapshots)
        self.emit(event)
        if self.best_bleu is None or event["mean_bleu"] > self.best_bleu:
            self.best_bleu = event["mean_bleu"]
            checkpoint.save_weights(average, self.out / checkpoint.WEIGHTS)
            self.emit({"event": Event.CHECKPOINT, "step": self.step, "kind": "average", "mean_bleu": self.best_bleu})
        self.model.load_state_dict(best_state)

    def _finish(self, status: Event) -> TrainResult:
        replicas = distributed.checksums(list(self.model.parameters()), self.group)
        distributed.stop(self.group)
        if not self.group.is_main:
            return TrainResult(self.out, status, self.step, self.best_bleu, self.config)
        # The run may stop before its first validation (a quick cancel): it still leaves a
        # loadable model, so a cancelled run is never wasted.
        if not (self.out / checkpoint.WEIGHTS).exists():
            checkpoint.save_weights(self.model.state_dict(), self.out / checkpoint.WEIGHTS)
        self._save_last()
        if status != Event.CANCELLED:
            self._average_snapshots()
        summary = {
            "status": status,
            "steps": self.step,
            "train_seconds": round(self.elapsed, 1),
            "best_mean_valid_bleu": self.best_bleu,
            "hardware": hardware_description(),
            "ranks": self.group.world,
        }
        self._write_config(summary)
        self.emit({"event": status, **summary, "step": self.step, "replica_checksums": replicas})
        self._flush_metrics()
        write_card(self.out)
        return TrainResult(self.out, status, self.step, self.best_bleu, self.config)


def hardware_description() -> str:
    """CPU model and the number of threads torch used, for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {device}"


def train(
    config: RunConfig, out: str | Path, listeners: Iterable[Listener] = (), resume: bool = False, corpus: Corpus | None = None
) -> TrainResult:
    return Trainer(config, out, corpus=corpus, listeners=listeners, resume=resume).run()
