"""Translation quality per direction with sacreBLEU (BLEU and chrF) and their signatures.

Scores are computed on detokenized output against one reference with sacreBLEU's defaults
(cased, 13a tokenization), so they can be compared with published numbers; the signature
printed next to each score says exactly how it was computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from core.checkpoint import write_json
from core.corpus import non_empty_pairs
from core.language_id import off_target_rate
from core.languages import split_direction
from core.translator import Translator

Progress = Callable[[float, str], None]


@dataclass
class DirectionScore:
    direction: str
    bleu: float
    chrf: float
    sentences: int
    zero_shot: bool = False  # the model never saw this direction in training
    off_target: float | None = None  # share of outputs in another of the model's languages (core.language_id)
    hypotheses: list[str] = field(default_factory=list, repr=False)


DIRECTION_FIELDS = ("direction", "bleu", "chrf", "sentences", "zero_shot", "off_target")  # what a saved report keeps


@dataclass
class EvalReport:
    model: str
    split: str
    beam_size: int
    scores: dict[str, DirectionScore]
    bleu_signature: str
    chrf_signature: str
    engine: str = "torch"  # what translated: "torch", "ctranslate2[-int8]" (core.ct2), or "transformers" (core.hf)

    def metric(self, name: str = "bleu") -> dict[str, float]:
        return {d: getattr(s, name) for d, s in self.scores.items()}

    def mean(self, name: str = "bleu") -> float:
        values = list(self.metric(name).values())
        return sum(values) / len(values) if values else 0.0

    @property
    def zero_shot(self) -> set[str]:
        return {d for d, s in self.scores.items() if s.zero_shot}

    def to_dict(self) -> dict:
        """The report as JSON data, without the hypotheses."""
        data = asdict(self)
        for score in data["scores"].values():
            score.pop("hypotheses")
        data["mean_bleu"], data["mean_chrf"] = self.mean("bleu"), self.mean("chrf")
        return data

    def save(self, path: str | Path) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> EvalReport:
        """A report saved by `save` (e.g. a run folder's eval_test.json from `python -m core evaluate --card`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            scores = {d: DirectionScore(**{k: v for k, v in s.items() if k in DIRECTION_FIELDS}) for d, s in data["scores"].items()}
            return cls(
                data["model"],
                data["split"],
                int(data["beam_size"]),
                scores,
                data["bleu_signature"],
                data["chrf_signature"],
                data.get("engine", "torch"),  # reports written before the engine was recorded came from torch
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a readable evaluation report ({error})") from error

    def table(self) -> str:
        """A Markdown table, used by the CLI and the model card."""
        lines = ["| direction | BLEU | chrF | off-target | sentences |", "| --- | ---: | ---: | ---: | ---: |"]
        for d, s in self.scores.items():
            mark = " (zero-shot)" if s.zero_shot else ""
            wrong = "—" if s.off_target is None else f"{100 * s.off_target:.1f}%"
            lines.append(f"| {d}{mark} | {s.bleu:.1f} | {s.chrf:.1f} | {wrong} | {s.sentences} |")
        lines.append(f"| **mean** | **{self.mean('bleu'):.1f}** | **{self.mean('chrf'):.1f}** | | |")
        return "\n".join(lines)


def corpus_scores(hypotheses: list[str], references: list[str]) -> tuple[float, float, str, str]:
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references]).score
    chrf_score = chrf.corpus_score(hypotheses, [references]).score
    return bleu_score, chrf_score, str(bleu.get_signature()), str(chrf.get_signature())


def evaluate(
    translator: Translator,
    split_lines: dict[str, list[str]],
    directions: list[str],
    split: str = "test",
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_sentences: int | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    off_target: bool = False,
    engine: str = "torch",
) -> EvalReport:
    """Translate `split_lines[src]` into every target of `directions` and score against `split_lines[tgt]`
    (`workers`: batches decoded at once, see `Translator.translate`; `off_target`: also measure how
    often the output is in the wrong language; `engine`: "torch" or "ctranslate2[-int8]", `core.ct2`)."""
    if not directions:
        raise ValueError("No directions to evaluate")
    scores: dict[str, DirectionScore] = {}
    bleu_signature = chrf_signature = ""
    for index, name in enumerate(directions):
        src, tgt = split_direction(name)
        if src not in split_lines or tgt not in split_lines:
            raise ValueError(f"The test data has no {src if src not in split_lines else tgt!r} side for {name}")
        if progress:
            progress(index / len(directions), f"Translating {name}")
        sources, references = non_empty_pairs(split_lines[src], split_lines[tgt])
        sources, references = sources[:max_sentences], references[:max_sentences]
        translations = translator.translate(
            sources, src, tgt, beam_size=beam_size, length_penalty=length_penalty, workers=workers, engine=engine
        )
        hypotheses = [t.text for t in translations]
        bleu, chrf, bleu_signature, chrf_signature = corpus_scores(hypotheses, references)
        zero_shot = bool(translator.directions) and name not in translator.directions
        wrong_language = off_target_rate(hypotheses, tgt, translator.languages) if off_target else None
        scores[name] = DirectionScore(name, bleu, chrf, len(sources), zero_shot, wrong_language, hypotheses)
    if progress:
        progress(1.0, "Done")
    ran = translator.config.get("engine", engine)  # a Hugging Face model (core.hf) names its own
    return EvalReport(translator.name, split, beam_size, scores, bleu_signature, chrf_signature, ran)


def paired_bootstrap(systems: dict[str, list[str]], references: list[str], samples: int) -> dict[str, dict[str, Any]]:
    """Every system's BLEU and chrF, with sacreBLEU's paired bootstrap: the bootstrap mean, the
    95% interval and the p-value against the first system."""
    names = list(systems)
    metrics = {"bleu": BLEU(), "chrf": CHRF()}
    test = PairedTest([(name, systems[name]) for name in names], metrics, [references], test_type="bs", n_samples=samples)
    _, results = test()
    columns = dict(zip(metrics, (key for key in results if key != "System"), strict=True))  # "bleu" → "BLEU"
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        bleu, chrf, *_ = corpus_scores(systems[name], references)
        out[name] = {
            metric: {
                "score": score,
                **{
                    key: _number(getattr(results[columns[metric]][i], field))
                    for key, field in (("mean", "mean"), ("ci95", "ci"), ("p_value", "p_value"))
                },
            }
            for metric, score in (("bleu", bleu), ("chrf", chrf))
        }
    return out


def _number(value: Any) -> float | None:
    return None if value is None else float(value)  # sacreBLEU gives numpy floats: JSON wants Python's
