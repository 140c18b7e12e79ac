"""The model card (`README.md` of a run folder), rebuilt from what the folder holds:
config.json, metrics.jsonl and any `eval_<split>.json` written by `python -m core evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

from core import checkpoint, plots
from core.corpus import PROJECT_ROOT
from core.evaluate import EvalReport
from core.events import Event
from core.languages import language_name, split_direction

DATA_NOTES = {
    "multi30k": (
        "Multi30K (task 1, raw image captions, https://github.com/multi30k/dataset), derived from Flickr30K: "
        "29,000 training, 1,014 validation and 1,000 test (`test_2016_flickr`) sentences, N-way parallel. "
        "**Terms: non-commercial research and educational use only.** Please cite: "
        "Elliott et al. 2016, *Multi30K: Multilingual English-German Image Descriptions* (en, de); "
        "Elliott et al. 2017, *Findings of the Second Shared Task on Multimodal Machine Translation and "
        "Multilingual Image Description* (fr); Barrault et al. 2018, *Findings of the Third Shared Task on "
        "Multimodal Machine Translation* (cs)."
    ),
    "builtin": "Polyglot Lab's built-in generated corpus (`core/builtin_corpus.py`), written for this project.",
}


def render_card(folder: Path) -> str:
    config = json.loads((folder / checkpoint.CONFIG).read_text(encoding="utf-8"))
    run, model, training = config["run"], config["run"]["model"], config.get("training", {})
    languages = ", ".join(f"{language_name(code)} ({code})" for code in config["languages"])
    lines = [
        f"# {folder.name}",
        "",
        "A multilingual encoder-decoder Transformer trained with Polyglot Lab (`core`). One model, one shared "
        "SentencePiece vocabulary; the target language is chosen by a tag `<2xx>` at the start of the source.",
        "",
        "## Data",
        DATA_NOTES.get(config.get("corpus", ""), f"User data: `{run['data']['source']}`."),
        f"Sentences per split: {config.get('corpus_sizes', {})}.",
        "",
        f"- Languages: {languages}",
        f"- Directions ({len(config['directions'])}): {', '.join(config['directions'])}",
        "",
        "## Model",
        f"- Preset `{run.get('preset')}`: {model['n_encoder_layers']}+{model['n_decoder_layers']} layers, "
        f"d_model {model['d_model']}, {model['n_heads']} heads, FFN {model['d_ff']}, "
        f"{model['positions']} positions, pre-LN, tied embeddings",
        f"- Vocabulary: {model['vocab_size']} pieces ({run['data']['tokenizer_type']})",
        f"- Parameters: {config.get('parameters', 0):,}",
        "",
        "## Training",
        *_started_from(config.get("started_from")),
        f"- Status: {training.get('status', 'in progress')}, {training.get('steps', 0)} steps, "
        f"{training.get('train_seconds', 0) / 60:.1f} minutes of training",
        f"- Hardware: {training.get('hardware', 'not recorded')}",
        f"- Best mean validation BLEU (greedy, capped sample): {_fmt(training.get('best_mean_valid_bleu'))}",
        f"- Reproduce (same data, same seed): `python -m core train --config {_shown(folder)}/config.json --out NEW_FOLDER`",
    ]
    starts = [r for r in checkpoint.read_metrics(folder) if r.get("event") == Event.START]
    if len(starts) > 1:
        lines.append(
            f"- Trained in {len(starts)} sittings: stopped and resumed exactly at steps {', '.join(str(r['step']) for r in starts[1:])}"
        )
    lines += _progress_table(checkpoint.read_metrics(folder))
    for report_file in sorted(folder.glob("eval_*.json")):
        report = json.loads(report_file.read_text(encoding="utf-8"))
        lines += [
            "",
            f"## Evaluation on `{report['split']}` (beam {report['beam_size']})",
            "",
            "| direction | BLEU | chrF | sentences |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, score in report["scores"].items():
            mark = " (zero-shot)" if score.get("zero_shot") else ""
            lines.append(f"| {name}{mark} | {score['bleu']:.1f} | {score['chrf']:.1f} | {score['sentences']} |")
        lines += ["", f"BLEU signature: `{report['bleu_signature']}`  ", f"chrF signature: `{report['chrf_signature']}`"]
        figures = [f"[{kind}]({report_file.stem}_{kind}.html)" for kind in FIGURES if (folder / f"{report_file.stem}_{kind}.html").exists()]
        if figures:
            lines += ["", "Figures (interactive plotly): " + ", ".join(figures)]
    return "\n".join(lines) + "\n"


def _started_from(record: dict | None) -> list[str]:
    """The card's line for a fine-tuned model: where it started, and what was added."""
    if not record:
        return []
    added = record.get("added_languages") or []
    grown = f"; added {', '.join(language_name(code) for code in added)} with {record['added_pieces']} new pieces" if added else ""
    return [f"- Fine-tuned from `{record['path']}` (weights SHA-256 `{record['weights_sha256'][:16]}…`){grown}"]


def _shown(folder: Path) -> str:
    """The folder as a user would type it: relative to the project when inside it."""
    try:
        return str(folder.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(folder)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _progress_table(records: list[dict]) -> list[str]:
    valid = [r for r in records if r.get("event") == Event.VALID]
    if not valid:
        return []
    lines = ["", "### Validation during training", "", "| step | minutes | valid loss | mean BLEU |", "| ---: | ---: | ---: | ---: |"]
    for r in valid:
        label = f"{r['step']} (avg of {r['averaged']})" if r.get("averaged") else str(r["step"])
        lines.append(f"| {label} | {r.get('elapsed_s', 0) / 60:.1f} | {r['valid_loss']:.3f} | {r['mean_bleu']:.1f} |")
    return lines


FIGURES = ("bleu", "matrix")


def write_eval_figures(folder: Path, report: EvalReport) -> None:
    """BLEU bars and the source × target matrix of an evaluation, as standalone HTML next to the card."""
    stem = f"eval_{report.split}"
    languages = list(dict.fromkeys(lang for d in report.scores for lang in split_direction(d)))
    figures = {
        "bleu": plots.bleu_bars({report.model: report.metric("bleu")}),
        "matrix": plots.direction_matrix(
            report.metric("bleu"), languages, zero_shot=report.zero_shot, title=f"BLEU on {report.split}, beam {report.beam_size}"
        ),
    }
    for kind, figure in figures.items():
        checkpoint.write_text(folder / f"{stem}_{kind}.html", figure.to_html(include_plotlyjs="cdn"))


def write_card(folder: Path) -> None:
    checkpoint.write_text(folder / checkpoint.CARD, render_card(folder))
