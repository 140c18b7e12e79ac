"""Command line: python -m core train | translate | evaluate | transfer | info | download."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from core import checkpoint
from core.checkpoint import CheckpointError
from core.config import PRESETS, RunConfig, preset
from core.corpus import CorpusError, download_multi30k, load_corpus
from core.events import ENDINGS, Event
from core.finetune import starting_config

if TYPE_CHECKING:
    from core.translator import Translator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="Polyglot Lab: multilingual NMT.")
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands.add_parser("train", help="train a model; writes a run folder"))
    _translate_parser(commands.add_parser("translate", help="translate lines from stdin or a file"))
    _evaluate_parser(commands.add_parser("evaluate", help="BLEU and chrF per direction"))
    _transfer_parser(commands.add_parser("transfer", help="cross-lingual transfer: bilingual, joint, or pretrained then fine-tuned"))
    info = commands.add_parser("info", help="describe a checkpoint")
    info.add_argument("--checkpoint", required=True)
    half = commands.add_parser("half", help="store a checkpoint's weights as float16 after checking translations agree")
    half.add_argument("--checkpoint", required=True)
    half.add_argument("--sentences", type=int, default=100, help="validation sentences per direction to compare")
    half.add_argument("--min-identical", type=float, default=0.98, help="share of identical translations required")
    export = commands.add_parser("export", help="write a Transformers (M2M100) or CTranslate2 model with the same outputs")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--format", choices=["hf", "ctranslate2"], required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--quantization", default=None, help="CTranslate2 weight type, e.g. int8")
    commands.add_parser("compile", help="build the compiled decoder step now (translating builds it in the background otherwise)")
    download = commands.add_parser("download", help="download Multi30K (en, de, fr, cs)")
    download.add_argument("--dir", default=None, help="target folder (default: data/multi30k)")
    download.add_argument("--url", default=None, help="mirror base URL")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for the artifacts that record it
    handlers = {
        "train": run_train,
        "translate": run_translate,
        "evaluate": run_evaluate,
        "transfer": run_transfer,
        "info": run_info,
        "half": run_half,
        "export": run_export,
        "download": run_download,
        "compile": run_compile,
    }
    try:
        return handlers[args.command](args)
    except (CorpusError, CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# --- train ---------------------------------------------------------------------------------


def _train_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=list(PRESETS))
    p.add_argument("--config", help="a config.json (overrides --preset); other flags override it")
    p.add_argument("--out", help="run folder (default: checkpoints/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    for flags, kind, key, help_text in TRAIN_FLAGS:
        p.add_argument(*flags, type=kind, dest=OVERRIDE + key, default=None, help=help_text or f"sets {key}")


OVERRIDE = "override:"  # the dest of a flag that overrides a config setting: "override:steps"
# (flags, type, RunConfig.with_overrides key, help); the config's own checks refuse bad values.
TRAIN_FLAGS: list[tuple[tuple[str, ...], type, str, str | None]] = [
    (("--data",), str, "source", "builtin (default), multi30k, multi30k:DIR, FILE.tsv or A.en.txt,B.de.txt"),
    (("--languages",), str, "languages", "comma-separated subset, e.g. en,de,fr"),
    (("--directions",), str, "directions", "all, en-centric, or en-de,de-en,..."),
    (("--steps",), int, "steps", "training steps (the warm-up shrinks to a fifth of them unless --warmup-steps is given)"),
    (("--tokens-per-batch",), int, "tokens_per_batch", None),
    (("--lr",), float, "lr", None),
    (("--warmup-steps",), int, "warmup_steps", None),
    (("--schedule",), str, "schedule", "inverse_sqrt or cosine"),
    (
        ("--direction-temperature", "--temperature"),
        float,
        "direction_temperature",
        "how evenly directions are sampled: 1 in proportion to their data, higher more even (--temperature: old name)",
    ),
    (("--seed",), int, "seed", None),
    (("--eval-every",), int, "eval_every", None),
    (("--max-minutes",), float, "max_minutes", None),
    (("--threads",), int, "threads", None),
    (("--accumulation",), int, "accumulation", None),
    (("--device",), str, "device", None),
    (("--vocab-size",), int, "vocab_size", "pieces asked of the tokenizer (the model gets what it gives)"),
    (("--d-model",), int, "d_model", "model width (d_ff follows, 4x, unless --d-ff is given)"),
    (("--layers",), int, "layers", "encoder and decoder layers"),
    (("--heads",), int, "n_heads", None),
    (("--d-ff",), int, "d_ff", None),
    (("--dropout",), float, "dropout", None),
    (("--init-from",), str, "init_from", "fine-tune: start from this run folder's weights and tokenizer (its config is the default base)"),
    (("--freeze",), str, "freeze", "fine-tuning: keep these at the starting weights: embeddings, encoder"),
    (("--replay",), float, "replay", "fine-tuning: share of batches from the starting model's own directions"),
]


def build_config(args: argparse.Namespace) -> RunConfig:
    """The --config file or --preset, with the flags given applied (`RunConfig.with_overrides`)."""
    overrides = {
        dest.removeprefix(OVERRIDE): value for dest, value in vars(args).items() if dest.startswith(OVERRIDE) and value is not None
    }
    if args.config:
        return RunConfig.load(args.config).with_overrides(**overrides)
    if "init_from" in overrides:  # a fine-tuning run keeps its starting model's shape and settings
        return starting_config(overrides.pop("init_from"), **overrides)
    return preset(args.preset).with_overrides(**overrides)


class ProgressPrinter:
    """Listener: a tqdm bar over steps, and one line per validation."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == Event.START:
            self.bar = tqdm(total=event["total_steps"], initial=event["step"], unit="step", dynamic_ncols=True)
        elif kind == Event.STEP and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}", lr=f"{event['lr']:.2e}", tok_s=f"{event['tokens_per_s']:.0f}")
        elif kind == Event.VALID:
            scores = " ".join(f"{d} {b:.1f}" for d, b in event["bleu"].items())
            label = f"averaged {event['averaged']}" if event.get("averaged") else f"step {event['step']}"
            tqdm.write(f"valid {label}: loss {event['valid_loss']:.3f}  mean BLEU {event['mean_bleu']:.1f}  [{scores}]")
        elif kind in ENDINGS:
            if self.bar is not None:
                self.bar.close()
            tqdm.write(f"{kind}: {event}")


def run_train(args: argparse.Namespace) -> int:
    from core.train import Trainer

    config = build_config(args)
    out = Path(args.out) if args.out else PROJECT_ROOT / "checkpoints" / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    checkpoint.check_run_folder(out, args.resume)
    corpus = load_corpus(config.data.source)
    trainer = Trainer(config, out, corpus=corpus, listeners=[ProgressPrinter()], resume=args.resume)
    # Ctrl-C or SIGTERM: finish the current step, save a usable checkpoint, exit cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: trainer.cancel())
    result = trainer.run()
    print(
        f"{result.status} at step {result.step}; best mean valid BLEU "
        f"{'—' if result.best_bleu is None else f'{result.best_bleu:.1f}'}; model in {result.folder}"
    )
    return 0 if result.status != Event.CANCELLED else 130


# --- translate -----------------------------------------------------------------------------


def _translate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--beam", type=int, default=4, help="beam size (1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--n-best", type=int, default=1, help="print n hypotheses per line, tab-separated with scores")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--prefix", default="", help="start every translation with these words; the model completes it")
    p.add_argument(
        "--scores", action="store_true", help="one JSON object per line: translation, sentence confidence, each piece's probability"
    )
    p.add_argument(
        "--alignments",
        action="store_true",
        help="word alignments from cross-attention after a tab, Pharaoh format: source-target word "
        'indices from 0 (with --scores, an "alignments" key)',
    )
    _decoding_flags(p)
    p.add_argument("--input", help="file to translate (default: stdin)")
    p.add_argument("--output", help="file to write (default: stdout)")


def _decoding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="batches decoded at once, one per core (default: one per CPU thread torch uses; 1 on a GPU)",
    )
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantization of the linear layers (CPU)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast where the CPU or GPU has bf16 matmuls)")
    p.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "ctranslate2"],
        help="ctranslate2: decode with CTranslate2 (pip install ctranslate2==4.8.5); with --int8, its own int8",
    )


def load_translator(args: argparse.Namespace) -> Translator:
    """The checkpoint as a Translator, int8-quantized (CPU) or under bf16 autocast if asked."""
    import core

    if args.int8 and args.bf16:
        raise ValueError("--int8 and --bf16 exclude each other: pick one")
    if getattr(args, "engine", "torch") != "torch":  # the engine applies --int8 itself (`engine_name`)
        return core.load(args.checkpoint, device="auto")
    precision = "int8" if args.int8 else "bfloat16" if args.bf16 else "float32"
    return core.load(args.checkpoint, device="cpu" if args.int8 else "auto").at_precision(precision)


def engine_name(args: argparse.Namespace) -> str:
    """`--engine ctranslate2 --int8` is CTranslate2's own int8 ("ctranslate2-int8")."""
    return args.engine + ("-int8" if args.engine != "torch" and args.int8 else "")


def run_translate(args: argparse.Namespace) -> int:
    translator = load_translator(args)
    if args.alignments and args.n_best > 1:
        raise ValueError("--alignments aligns one translation per line: leave out --n-best")
    if args.input:
        lines = Path(args.input).read_text(encoding="utf-8").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    translations = translator.translate(
        lines,
        args.src,
        args.tgt,
        beam_size=args.beam,
        length_penalty=args.length_penalty,
        n_best=args.n_best,
        batch_size=args.batch_size,
        workers=args.workers,
        scores=args.scores,
        prefix=args.prefix,
        engine=engine_name(args),
    )
    aligned = [aligned_words(translator, t, args) for t in translations] if args.alignments else None
    if args.scores:
        records = [scored_record(t) for t in translations]
        for record, pairs in zip(records, aligned or []):
            record["alignments"] = pairs
        rows = [json.dumps(record, ensure_ascii=False) for record in records]
    elif aligned is not None:
        rows = [f"{t.text}\t{pairs}" for t, pairs in zip(translations, aligned)]
    elif args.n_best > 1:
        rows = ["\t".join(f"{text}\t{score:.4f}" for text, score in t.n_best) for t in translations]
    else:
        rows = [t.text for t in translations]
    text = "".join(row + "\n" for row in rows)
    if args.output:
        checkpoint.write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def aligned_words(translator: Translator, translation, args: argparse.Namespace) -> str:
    """`translate --alignments`: "0-0 1-2 …" for a translation, from the cross-attention of the
    layer `core.alignment` chose, replaying the translation found (empty for an empty line)."""
    if not translation.text:
        return ""
    return translator.alignments(translation.source, args.src, args.tgt, forced=translation.text).pharaoh


def scored_record(translation) -> dict:
    """`translate --scores`: the translation, its confidence and each piece with its probability
    (the last piece is </s>); the n-best list too when there is one."""
    pieces = [*translation.pieces, "</s>"] if translation.piece_probs else []
    record = {
        "translation": translation.text,
        "confidence": None if translation.confidence is None else round(translation.confidence, 4),
        "pieces": [[piece, round(p, 4)] for piece, p in zip(pieces, translation.piece_probs)],
    }
    if len(translation.n_best) > 1:
        record["n_best"] = [[text, round(score, 4)] for text, score in translation.n_best]
    return record


# --- evaluate ------------------------------------------------------------------------------


def _evaluate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="corpus (default: the one the model was trained on)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--directions", default=None, help="default: every direction among the model's languages")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--max-sentences", type=int, default=None)
    _decoding_flags(p)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--card", action="store_true", help="store the report in the checkpoint and refresh its model card")


def run_evaluate(args: argparse.Namespace) -> int:
    from core.card import write_card, write_eval_figures
    from core.evaluate import evaluate
    from core.languages import parse_directions

    translator = load_translator(args)
    source = args.data or translator.config["run"]["data"]["source"]
    corpus = load_corpus(source)
    languages = [lang for lang in translator.languages if lang in corpus.languages]
    directions = parse_directions(args.directions or "all", languages)
    if not args.directions and translator.config.get("engine"):  # a pretrained model (core.hf): only its pairs
        directions = [d for d in directions if d in translator.directions]
    with tqdm(total=len(directions), unit="direction") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.set_description(message)
            bar.update(round(fraction * len(directions)) - bar.n)

        report = evaluate(
            translator,
            corpus.split(args.split),
            directions,
            split=args.split,
            beam_size=args.beam,
            length_penalty=args.length_penalty,
            max_sentences=args.max_sentences,
            progress=progress,
            workers=args.workers,
            off_target=True,
            engine=engine_name(args),
        )
    print(report.table())
    print(f"BLEU signature: {report.bleu_signature}\nchrF signature: {report.chrf_signature}")
    if args.json:
        report.save(args.json)
    if args.card:
        report.save(Path(args.checkpoint) / f"eval_{args.split}.json")
        write_eval_figures(Path(args.checkpoint), report)
        write_card(Path(args.checkpoint))
    return 0


# --- transfer ------------------------------------------------------------------------------


def _transfer_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="multi30k", help="multi30k (default), multi30k:DIR, builtin, or your files")
    p.add_argument(
        "--setup",
        default="multi30k",
        choices=["multi30k", "small"],
        help="multi30k: the stored experiment (hours on 2 CPU cores); small: the app's 5-10 minute version",
    )
    p.add_argument("--low", default=None, help="the low-resource language (default cs)")
    p.add_argument("--helpers", default=None, help="comma-separated helper languages (default de,fr)")
    p.add_argument("--sizes", default=None, help="comma-separated training pairs of en→LOW, e.g. 1000,4000")
    p.add_argument("--pretrain-steps", type=int, default=None)
    p.add_argument("--scratch-steps", type=int, default=None, help="the step cap of (a) and (b), from scratch")
    p.add_argument("--finetune-steps", type=int, default=None, help="the step cap of (c)'s fine-tuning")
    p.add_argument("--test-sentences", type=int, default=None, help="default: the whole test split")
    p.add_argument(
        "--out", help="the experiment's folder of runs (default: runs/transfer-<data>-<setup>); run the same command again to resume"
    )
    p.add_argument(
        "--json", help="also write the result here (e.g. bench/results/transfer_multi30k.json), with the plot next to it as .html"
    )


def run_transfer(args: argparse.Namespace) -> int:
    import dataclasses

    from core import plots
    from core.transfer import MULTI30K, SMALL, run_experiment, transfer_table

    changes = {
        "low_resource": args.low,
        "pretrain_steps": args.pretrain_steps,
        "scratch_steps": args.scratch_steps,
        "finetune_steps": args.finetune_steps,
        "test_sentences": args.test_sentences,
        "helpers": args.helpers and tuple(code.strip() for code in args.helpers.split(",") if code.strip()),
        "sizes": args.sizes and tuple(int(n) for n in args.sizes.split(",")),
    }
    setup = dataclasses.replace(
        {"multi30k": MULTI30K, "small": SMALL}[args.setup], **{key: value for key, value in changes.items() if value is not None}
    )
    corpus = load_corpus(args.data)
    out = Path(args.out) if args.out else PROJECT_ROOT / "runs" / f"transfer-{corpus.name}-{args.setup}"
    result = run_experiment(corpus, setup, out, listeners=[ProgressPrinter()])
    result["command"] = "python -m core " + " ".join(args.argv)
    result["commit"] = git_commit()
    reports = [out / "transfer.json", *([Path(args.json)] if args.json else [])]
    for report in reports:
        checkpoint.write_json(report, result)
        checkpoint.write_text(report.with_suffix(".html"), plots.transfer_curve(result).to_html(include_plotlyjs="cdn", full_html=True))
    print(transfer_table(result))
    print(f"chrF signature: {result['chrf_signature']}\nwrote {', '.join(str(r) for r in reports)}")
    return 0


def git_commit() -> str | None:
    """The commit of the code that runs ("+dirty" with uncommitted changes), or None outside a git checkout."""
    import subprocess

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


# --- info, download ------------------------------------------------------------------------


def run_compile(args: argparse.Namespace) -> int:
    """Build core's compiled decoder step (`core.compiled`) once for this machine, e.g. in an image."""
    from core import compiled

    ready = compiled.build()
    print(f"compiled decoder step: {compiled.status()}", file=sys.stdout if ready else sys.stderr)
    return 0 if ready else 1


def run_info(args: argparse.Namespace) -> int:
    config = checkpoint.read_config(Path(args.checkpoint))
    model = config["run"]["model"]
    print(f"checkpoint: {args.checkpoint}")
    print(f"languages:  {', '.join(config['languages'])}")
    print(f"directions: {', '.join(config['directions'])}")
    print(
        f"model:      {model['n_encoder_layers']}+{model['n_decoder_layers']} layers, d_model {model['d_model']}, "
        f"{model['n_heads']} heads, vocab {model['vocab_size']}, {config.get('parameters', 0):,} parameters"
    )
    print(f"training:   {config.get('training') or 'in progress'}")
    return 0


def run_half(args: argparse.Namespace) -> int:
    """Halve the weights file; keep it only if beam-4 translations of validation sentences agree."""
    import torch

    import core
    from core.languages import split_direction

    folder = Path(args.checkpoint)
    full = core.load(folder)
    half = core.load(folder)
    half.model.load_state_dict({k: v.half().float() for k, v in full.model.state_dict().items()})
    valid = load_corpus(full.config["run"]["data"]["source"]).split("valid")
    same = total = 0
    for name in full.directions:
        src, tgt = split_direction(name)
        lines = valid[src][: args.sentences]
        a = [t.text for t in full.translate(lines, src, tgt, beam_size=4)]
        b = [t.text for t in half.translate(lines, src, tgt, beam_size=4)]
        same += sum(x == y for x, y in zip(a, b))
        total += len(lines)
    share = same / max(total, 1)
    print(f"float16 vs float32: {same}/{total} identical beam-4 translations ({100 * share:.1f}%)")
    if share < args.min_identical:
        print(f"error: below --min-identical {args.min_identical}; weights left in float32", file=sys.stderr)
        return 1
    checkpoint.save_weights(full.model.state_dict(), folder / checkpoint.WEIGHTS, torch.float16)
    print(f"{folder / checkpoint.WEIGHTS}: {(folder / checkpoint.WEIGHTS).stat().st_size / 1e6:.1f} MB (float16)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from core.export import export_checkpoint

    try:
        folder = export_checkpoint(args.checkpoint, args.format, args.out, args.quantization)
    except ImportError as error:
        print(f"error: {error.name} is needed for this export: pip install -r requirements-bench.txt", file=sys.stderr)
        return 2
    print(f"{args.format} model in {folder}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    folder = download_multi30k(args.dir, **({"base_url": args.url} if args.url else {}))
    print(f"Multi30K is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
