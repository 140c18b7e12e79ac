"""Cross-lingual transfer, measured: does a direction with little data gain from other languages?

English→X gets N training pairs (X plays a low-resource language; Multi30K's Czech by default),
while the helper languages keep all their data. Three ways to build an English→X model, at each N:

  (a) bilingual:  from scratch, on the N English–X pairs only;
  (b) joint:      from scratch, on the N pairs plus every pair of English↔helpers (Johnson et al. 2017);
  (c) finetuned:  a model pretrained on English↔helpers only, which has never seen X (no tag, no
                  pieces), fine-tuned on the N pairs; its vocabulary grows for X (Zoph et al. 2016;
                  Neubig & Hu 2018; see `core.finetune`).

Fairness. All runs have the same model shape, batch size and learning-rate schedule, and each
keeps the checkpoint with the best validation BLEU (greedy, on its own directions). Every run
trains until validation stops improving (`patience` validations without a gain), within a cap
of steps: `scratch_steps` for (a) and (b), `finetune_steps` for (c)'s fine-tuning. (c) also
stands on `pretrain_steps` of pretraining, done once for every N: that is the point of a
pretrained model, and the result states both budgets.

Scores. BLEU and chrF of English→X on the test split with sacreBLEU (beam search), 95%
confidence intervals and p-values from sacreBLEU's paired bootstrap resampling (Koehn 2004):
(b) and (c) against (a), and (c) against (b).

The experiment is a folder of runs. A finished run is kept, a stopped one resumes and translations
already made are reused, so the command can be stopped and started again; a folder made with other
settings is refused rather than mixed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import checkpoint
from core.config import ModelConfig, RunConfig, TrainConfig
from core.corpus import Corpus, CorpusError
from core.evaluate import corpus_scores, paired_bootstrap
from core.events import FINISHED
from core.languages import direction
from core.train import Listener, hardware_description, train
from core.translator import Translator

METHODS = ("bilingual", "joint", "finetuned")
LABELS = {
    "bilingual": "(a) bilingual, from scratch",
    "joint": "(b) joint multilingual, from scratch",
    "finetuned": "(c) pretrained without it, fine-tuned",
}
PRETRAIN = "pretrain"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STORED = PROJECT_ROOT / "bench" / "results" / "transfer_multi30k.json"
PARENT = "checkpoints/transfer-parent-en-de-fr"  # the stored experiment's pretrained model, shipped
Progress = Callable[[float, str], None]


@dataclass
class TransferSetup:
    """Everything that decides the experiment's numbers; stored in its folder and in the result."""

    source: str = "en"
    low_resource: str = "cs"
    helpers: tuple[str, ...] = ("de", "fr")
    sizes: tuple[int, ...] = (1000, 4000)  # training pairs of source↔low_resource
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            d_model=128, n_heads=4, d_ff=512, n_encoder_layers=3, n_decoder_layers=3, dropout=0.1, max_positions=128
        )
    )
    vocab_size: int = 4000  # asked of each from-scratch tokenizer
    new_language_pieces: int = 2000  # the vocabulary learned for X when (c) meets it
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            tokens_per_batch=4096,
            lr=3e-3,
            warmup_steps=200,
            schedule="cosine",
            label_smoothing=0.1,
            direction_temperature=5.0,
            eval_every=150,
            eval_sentences=100,
            save_every=150,
            patience=5,
            seed=1,
            threads=1,
        )
    )  # one thread: immune to other work on the machine, and the same for every run
    pretrain_steps: int = 1200
    # A run folder to fine-tune in (c) instead of pretraining one: a model trained on the source and
    # helper languages only, e.g. the stored experiment's own (`PARENT`). Relative to the project.
    pretrained: str = ""
    scratch_steps: int = 1500  # the cap of (a) and (b)
    finetune_steps: int = 1500  # the cap of (c)'s fine-tuning
    finetune_lr: float = 1e-3
    finetune_warmup_steps: int = 50
    helper_sentences: int | None = None  # cap on the helpers' training pairs (the small in-app version)
    beam_size: int = 4
    test_sentences: int | None = None  # None: the whole test split
    bootstrap_samples: int = 1000

    def __post_init__(self) -> None:
        languages = [self.source, self.low_resource, *self.helpers]
        if len(set(languages)) != len(languages) or not self.helpers:
            raise ValueError(
                f"source {self.source!r}, low-resource {self.low_resource!r} and helpers "
                f"{list(self.helpers)} must be different languages, with at least one helper"
            )
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive numbers of pairs, not {list(self.sizes)}")
        self.sizes, self.helpers = tuple(sorted(set(self.sizes))), tuple(self.helpers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def low_direction(self) -> str:
        return direction(self.source, self.low_resource)

    @property
    def helper_directions(self) -> list[str]:
        return [d for h in self.helpers for d in (direction(self.source, h), direction(h, self.source))]

    def budget(self) -> dict[str, str]:
        start = f"the pretrained `{self.pretrained}`" if self.pretrained else f"{self.pretrain_steps} pretraining steps (once for every N)"
        return {
            "bilingual": f"at most {self.scratch_steps} steps",
            "joint": f"at most {self.scratch_steps} steps",
            "finetuned": f"{start} + at most {self.finetune_steps} fine-tuning steps",
            "tokens_per_batch": str(self.train.tokens_per_batch),
        }


# Two setups the project ships: the stored Multi30K result, and a version small enough to run in the app.
MULTI30K = TransferSetup()
SMALL = TransferSetup(
    sizes=(500, 2000),
    helper_sentences=8000,
    pretrained=PARENT,
    test_sentences=200,
    bootstrap_samples=300,
    train=dataclasses.replace(MULTI30K.train, tokens_per_batch=2000, eval_every=100, eval_sentences=30, save_every=100, patience=3),
    scratch_steps=400,
    finetune_steps=400,
    finetune_warmup_steps=20,
)


# --- the runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str  # its folder inside the experiment's, e.g. "n1000/joint"
    config: RunConfig
    corpus: Corpus


def low_resource_corpus(corpus: Corpus, languages: list[str], low_resource: str, low_size: int) -> Corpus:
    """`corpus` restricted to `languages`, where only the first `low_size` training lines of
    `low_resource` are kept. The others become "" rather than being removed: the corpus stays
    N-way aligned, and training skips every pair with an empty side, so exactly `low_size` pairs
    of each direction into or out of `low_resource` are trained on. Valid and test stay whole."""
    restricted = corpus.restrict(languages)
    train_lines = dict(restricted.split("train"))
    if not 1 <= low_size <= len(train_lines[low_resource]):
        raise CorpusError(
            f"low_size must be between 1 and {len(train_lines[low_resource])} (the training lines of {corpus.name!r}), got {low_size}"
        )
    kept = train_lines[low_resource][:low_size]
    train_lines[low_resource] = kept + [""] * (len(train_lines[low_resource]) - low_size)
    return Corpus(f"{corpus.name}-{low_resource}{low_size}", {**restricted.splits, "train": train_lines})


def plan(setup: TransferSetup, corpus: Corpus) -> list[Run]:
    """Every training run of the experiment, in the order they are trained."""
    if setup.helper_sentences:
        lines = corpus.split("train")
        corpus = Corpus(corpus.name, {**corpus.splits, "train": {lang: lines[lang][: setup.helper_sentences] for lang in corpus.languages}})
    helpers = [setup.source, *setup.helpers]
    everyone = [setup.source, setup.low_resource, *setup.helpers]
    total = setup.scratch_steps

    def config(steps: int, languages: list[str], directions: list[str], **extra: Any) -> RunConfig:
        return RunConfig(
            preset="transfer", model=dataclasses.replace(setup.model), train=dataclasses.replace(setup.train, steps=steps)
        ).with_overrides(
            source=corpus.name,
            languages=languages,
            directions=",".join(directions),
            vocab_size=setup.vocab_size,
            new_language_pieces=setup.new_language_pieces,
            **extra,
        )

    runs = (
        []
        if setup.pretrained
        else [Run(PRETRAIN, config(setup.pretrain_steps, helpers, setup.helper_directions), corpus.restrict(helpers))]
    )
    for n in setup.sizes:
        joint = low_resource_corpus(corpus, everyone, setup.low_resource, n)
        pairs = {lang: joint.split("train")[lang][:n] for lang in (setup.source, setup.low_resource)}
        bilingual = Corpus(joint.name, {**joint.restrict([setup.source, setup.low_resource]).splits, "train": pairs})
        runs += [
            Run(f"n{n}/joint", config(total, everyone, [setup.low_direction, *setup.helper_directions]), joint),
            Run(f"n{n}/bilingual", config(total, [setup.source, setup.low_resource], [setup.low_direction]), bilingual),
        ]
    for n in setup.sizes:  # after the from-scratch runs: they need nothing but data
        bilingual = next(r.corpus for r in runs if r.name == f"n{n}/bilingual")
        runs.append(
            Run(
                f"n{n}/finetuned",
                config(
                    setup.finetune_steps,
                    [setup.source, setup.low_resource],
                    [setup.low_direction],
                    init_from=str(PROJECT_ROOT / setup.pretrained) if setup.pretrained else PRETRAIN,
                    lr=setup.finetune_lr,
                    warmup_steps=setup.finetune_warmup_steps,
                ),
                bilingual,
            )
        )
    return runs


def _finished(folder: Path) -> bool:
    config = folder / checkpoint.CONFIG
    if not config.exists():
        return False
    return checkpoint.read_config(folder).get("training", {}).get("status") in FINISHED


def _train(run: Run, out: Path, listeners: list[Listener]) -> None:
    """Train `run` in `out`/`run.name`, resuming it if it stopped; a finished run is left alone."""
    folder = out / run.name
    if _finished(folder):
        return
    resume = (folder / checkpoint.TRAINING_STATE).exists()
    if folder.exists() and not resume:
        shutil.rmtree(folder)  # stopped before its first save: nothing in it to keep
    config = run.config
    if config.train.init_from == PRETRAIN:  # plan() names the experiment's own run; here it becomes a folder
        config = config.with_overrides(init_from=str(out / PRETRAIN))
    tagged = [lambda event, listener=listener: listener({**event, "run": run.name}) for listener in listeners]
    train(config, folder, corpus=run.corpus, listeners=tagged, resume=resume)


# --- scoring -------------------------------------------------------------------------------------


def _hypotheses(folder: Path, sources: list[str], setup: TransferSetup) -> list[str]:
    """The model's test translations, cached next to it (keyed by beam and sentences)."""
    cache = folder / f"test-{setup.low_direction}-beam{setup.beam_size}-{len(sources)}.txt"
    if cache.exists():
        return cache.read_text(encoding="utf-8").split("\n")
    translator = Translator.load(folder)
    lines = [t.text for t in translator.translate(sources, setup.source, setup.low_resource, beam_size=setup.beam_size)]
    checkpoint.write_text(cache, "\n".join(lines))
    return lines


def validation_curve(folder: Path, name: str) -> list[dict[str, float]]:
    """A run's validations of direction `name`: step, greedy BLEU and the loss over all its directions."""
    return [
        {"step": r["step"], "bleu": r["bleu"][name], "valid_loss": r["valid_loss"]}
        for r in checkpoint.read_metrics(folder)
        if r["event"] == "valid" and not r.get("averaged")
    ]


def score(out: Path, setup: TransferSetup, test: dict[str, list[str]], progress: Progress | None = None) -> dict[str, Any]:
    sources = test[setup.source][: setup.test_sentences]
    references = test[setup.low_resource][: setup.test_sentences]
    by_size: dict[str, Any] = {}
    signatures: tuple[str, str] = ("", "")
    for index, n in enumerate(setup.sizes):
        if progress:
            progress(index / len(setup.sizes), f"Translating the test set with the three N={n} models")
        systems = {m: _hypotheses(out / f"n{n}" / m, sources, setup) for m in METHODS}
        against_bilingual = paired_bootstrap(systems, references, setup.bootstrap_samples)
        pair = {m: systems[m] for m in ("joint", "finetuned")}
        finetuned_vs_joint = paired_bootstrap(pair, references, setup.bootstrap_samples)["finetuned"]
        by_size[str(n)] = {
            method: {
                **against_bilingual[method],
                "training": checkpoint.read_config(out / f"n{n}" / method)["training"],
                "curve": validation_curve(out / f"n{n}" / method, setup.low_direction),
            }
            for method in METHODS
        }
        by_size[str(n)]["p_finetuned_vs_joint"] = {m: finetuned_vs_joint[m]["p_value"] for m in ("bleu", "chrf")}
        *_, bleu_signature, chrf_signature = corpus_scores(systems["bilingual"], references)
        signatures = (bleu_signature, chrf_signature)
    return {"sizes": by_size, "bleu_signature": signatures[0], "chrf_signature": signatures[1], "test_sentences": len(sources)}


# --- the whole experiment ------------------------------------------------------------------------


def run_experiment(
    corpus: Corpus, setup: TransferSetup, out: str | Path, listeners: Iterable[Listener] = (), progress: Progress | None = None
) -> dict[str, Any]:
    """Train every run of `plan` in `out` (resuming), score them, and return the result, which is
    also written to `out`/transfer.json."""
    started = time.perf_counter()
    out = Path(out)
    stored = out / "setup.json"
    settings = {"corpus": corpus.name, **setup.to_dict()}
    if stored.exists() and json.loads(stored.read_text(encoding="utf-8")) != json.loads(json.dumps(settings)):
        raise ValueError(
            f"{out} holds a transfer experiment with other settings ({stored}); give another --out, or delete that folder to start over"
        )
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(stored, settings)
    runs = plan(setup, corpus)
    for index, run in enumerate(runs):
        if progress:
            progress(index / (len(runs) + 1), f"Training {run.name} ({index + 1} of {len(runs)})")
        _train(run, out, list(listeners))
    result = {
        "corpus": corpus.name,
        "setup": setup.to_dict(),
        "budget": setup.budget(),
        "split": "test",
        "direction": setup.low_direction,
        "methods": LABELS,
        "hardware": _hardware(setup),
        "pretrain": checkpoint.read_config(PROJECT_ROOT / setup.pretrained if setup.pretrained else out / PRETRAIN)["training"],
        "folder": str(out),
        **score(out, setup, corpus.split("test"), progress),
    }
    result["wall_seconds"] = round(time.perf_counter() - started)  # this call's: a resumed experiment counts its last part only
    checkpoint.write_json(out / "transfer.json", result)
    if progress:
        progress(1.0, "Done")
    return result


def _hardware(setup: TransferSetup) -> str:
    """The machine, with the threads each run trained on (not the count while scoring, now)."""
    threads = setup.train.threads or "all"
    return f"{hardware_description()} while scoring; each run trained on {threads} torch thread(s)"


def total_steps(setup: TransferSetup) -> int:
    """The training steps of the whole experiment at most (runs may stop early), for a progress bar."""
    pretraining = 0 if setup.pretrained else setup.pretrain_steps
    return pretraining + len(setup.sizes) * (2 * setup.scratch_steps + setup.finetune_steps)


def stored_result(path: str | Path = STORED) -> dict[str, Any] | None:
    """The stored Multi30K result (`bench/results/transfer_multi30k.json`), or None if there is none."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def findings(result: dict[str, Any]) -> str:
    """What the numbers say, in sentences: each method against training on the pairs alone."""
    lines = []
    for n, row in result["sizes"].items():
        alone = row["bilingual"]["bleu"]["score"]
        parts = []
        for method in ("joint", "finetuned"):
            bleu = row[method]["bleu"]
            gain = bleu["score"] - alone
            verdict = "significant" if bleu["p_value"] is not None and bleu["p_value"] < 0.05 and gain else "not significant"
            parts.append(f"{result['methods'][method]} {bleu['score']:.1f} ({gain:+.1f}, {verdict}, p={bleu['p_value']:.3f})")
        lines.append(f"- **N = {int(n):,}:** alone {alone:.1f} BLEU; " + "; ".join(parts) + ".")
    return "\n".join(lines)


def transfer_table(result: dict[str, Any]) -> str:
    """The result as a Markdown table: one row per N, each method's BLEU ± 95% interval and chrF."""
    header = "| pairs of " + result["direction"] + " | " + " | ".join(result["methods"][m] for m in METHODS) + " |"
    lines = [header, "| ---: | " + " | ".join("---:" for _ in METHODS) + " |"]
    for n, row in result["sizes"].items():
        cells = []
        for method in METHODS:
            bleu, chrf = row[method]["bleu"], row[method]["chrf"]
            differs = bleu["score"] != row["bilingual"]["bleu"]["score"]
            mark = "*" if method != "bilingual" and differs and bleu["p_value"] < 0.05 else ""
            cells.append(f"{bleu['score']:.1f} ± {bleu['ci95']:.1f}{mark} (chrF {chrf['score']:.1f})")
        lines.append(f"| {int(n):,} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "BLEU ± 95% interval (paired bootstrap); * p < 0.05 against (a). "
        f"Test: {result['test_sentences']} sentences, beam {result['setup']['beam_size']}; "
        f"`{result['bleu_signature']}`."
    )
    return "\n".join(lines)
