"""Wall time of the Evaluate tab's work on the shipped model (issue #19): every direction of
en/de/fr/cs on Multi30K test_2016_flickr, 200 sentences each, beam 4, per decoding engine.

    python bench/evaluate_tab.py                               # label "after", every engine installed here
    python bench/evaluate_tab.py --quick --json /tmp/smoke.json    # 2 directions × 20 sentences, 1 repeat
    # "before": the same script on an older checkout (it imports `core` from PYTHONPATH when given)
    git worktree add /tmp/wt-before 207499f && cd /tmp/wt-before && \
        PYTHONPATH=/tmp/wt-before python /work/main/bench/evaluate_tab.py --engines torch --label before

What is timed is exactly the tab's call, `core.evaluate.evaluate(translator, test_lines, directions,
beam_size=4, max_sentences=200, progress=..., engine=...)`, with the tab's defaults otherwise (workers:
one per torch thread; the PyTorch engine's compiled decoder step, `core.compiled`, built or loaded
from its disk cache before timing, where the checkout has one). The model is loaded with `core.load`
from a temporary copy of the checkpoint folder, so each CTranslate2 engine really exports its model on
its first call (`first_call_s`: the export, loading it, and the first full evaluation) and the shipped
folder is never written to. Then `--repeats` timed runs per engine, engines alternating (ABAB...), with median, min and max.

The JSON (default bench/results/evaluate_tab.json) holds one entry per `--label`; an existing file's
other labels are kept, so "before" and "after" end in one file, with speed-ups between them.
Only APIs that exist at 207499f as well as now are used (`core.ct2.available` is guarded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

SCRIPT_ROOT = Path(__file__).resolve().parent.parent
try:  # `core` from PYTHONPATH first (an older checkout measured with this script), else this repository's
    import core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SCRIPT_ROOT))
    import core  # noqa: F401

CODE_ROOT = Path(core.__file__).resolve().parent.parent  # the checkout whose code is measured
if str(CODE_ROOT) not in sys.path:
    sys.path.insert(0, str(CODE_ROOT))

from bench import common  # noqa: E402
from core.analysis import shared_languages  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.languages import parse_directions  # noqa: E402

ENGINES = ("torch", "ctranslate2", "ctranslate2-int8")
TEST_STEM = "test_2016_flickr"
CHECKPOINT = Path("checkpoints") / "multi30k-4lang"
DEFAULT_JSON = SCRIPT_ROOT / "bench" / "results" / "evaluate_tab.json"
QUICK = {"directions": 2, "sentences": 20, "repeats": 1}


def ct2_installed() -> bool:
    from core import ct2

    available = getattr(ct2, "available", None)  # not at 207499f
    if available is not None:
        return bool(available())
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def find_test_folder(given: Path | None) -> Path:
    """The Multi30K folder: --data, $POLYGLOT_MULTI30K, where core looks, the shared/ folder beside
    this script's repository (an older checkout in /tmp has no shared/ beside it)."""
    from core.corpus import multi30k_candidates

    candidates = [given] if given else []
    candidates += multi30k_candidates() + [SCRIPT_ROOT.parent / "shared" / "data" / "multi30k"]
    for folder in candidates:
        if (Path(folder) / f"{TEST_STEM}.en.gz").is_file():
            return Path(folder)
    raise SystemExit(f"Multi30K {TEST_STEM} not found (looked in {', '.join(map(str, candidates))}): give --data or POLYGLOT_MULTI30K")


def find_checkpoint(given: Path | None) -> Path:
    """--checkpoint, else checkpoints/multi30k-4lang of the measured checkout, of the working directory, of this script's."""
    candidates = [given] if given else [CODE_ROOT / CHECKPOINT, Path.cwd() / CHECKPOINT, SCRIPT_ROOT / CHECKPOINT]
    for folder in candidates:
        if (Path(folder) / "model.safetensors").is_file():
            return Path(folder).resolve()
    raise SystemExit(f"No checkpoint found (looked in {', '.join(map(str, candidates))}): give --checkpoint")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, CTranslate2's included
    return usage.ru_utime + usage.ru_stime


def run_once(translator, lines: dict, directions: list[str], engine: str, beam: int, sentences: int) -> dict:
    """One press of the tab's Evaluate button: the timed call, its per-direction times (from the
    progress callback, which evaluate calls before each direction and at the end), and the CPU time
    other processes took meanwhile."""
    marks: list[tuple[float, str]] = []

    def progress(fraction: float, message: str) -> None:
        marks.append((time.perf_counter(), message))

    busy, own = common.cpu_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    report = evaluate(translator, lines, directions, beam_size=beam, max_sentences=sentences, progress=progress, engine=engine)
    seconds = time.perf_counter() - start
    run = {"wall_s": seconds, "report": report}
    if len(marks) == len(directions) + 1:
        run["direction_s"] = {d: marks[i + 1][0] - marks[i][0] for i, d in enumerate(directions)}
    if busy is not None:
        foreign = max(0.0, common.cpu_busy_seconds() - busy - (own_cpu_seconds() - own))
        run["other_processes_cpu_s"] = round(foreign, 2)
        run["other_processes_share"] = round(foreign / (seconds * (os.cpu_count() or 1)), 3)
    return run


def summarise(engine: str, first: dict, timed: list[dict], torch_hypotheses: dict | None) -> dict:
    report = timed[-1]["report"] if timed else first["report"]
    walls = [r["wall_s"] for r in timed]
    sentences = sum(s.sentences for s in report.scores.values())
    out = {
        "first_call_s": round(first["wall_s"], 3),
        "wall_s": [round(w, 3) for w in walls],
        "wall_s_median": round(common.median(walls), 3) if walls else None,
        "wall_s_min": round(min(walls), 3) if walls else None,
        "wall_s_max": round(max(walls), 3) if walls else None,
        "sentences": sentences,
        "sentences_per_s": round(sentences / common.median(walls), 2) if walls else None,
        "mean_bleu": round(report.mean("bleu"), 2),
        "mean_chrf": round(report.mean("chrf"), 2),
        "bleu": {d: round(s.bleu, 2) for d, s in report.scores.items()},
        "chrf": {d: round(s.chrf, 2) for d, s in report.scores.items()},
        "bleu_signature": report.bleu_signature,
        "hypotheses_sha256": {d: digest(s.hypotheses) for d, s in report.scores.items()},
        # every run gave the same translations as the first (a warm cache or a race would show here)
        "repeatable": all(
            digest(r["report"].scores[d].hypotheses) == digest(first["report"].scores[d].hypotheses) for r in timed for d in report.scores
        ),
        "first_call_direction_s": {d: round(s, 3) for d, s in first.get("direction_s", {}).items()},
        "direction_s_last_run": {d: round(s, 3) for d, s in (timed[-1] if timed else first).get("direction_s", {}).items()},
        "other_processes_share": [r.get("other_processes_share") for r in [first, *timed]],
    }
    if torch_hypotheses is not None:
        same = total = 0
        for d, s in report.scores.items():
            reference = torch_hypotheses.get(d, [])
            same += sum(a == b for a, b in zip(s.hypotheses, reference))
            total += len(s.hypotheses)
        out["identical_to_torch"] = round(same / total, 4) if total else None
    return out


def compare(labels: dict) -> dict:
    """Speed-ups between labels: before's torch median over each engine's median after (the tab
    before and after, whichever engine it then uses), and engine by engine; translations identical or not."""
    before, after = labels.get("before"), labels.get("after")
    if not before or not after:
        return {}
    out = {}
    base = before["engines"].get("torch", {}).get("wall_s_median")
    for engine, result in after["engines"].items():
        entry = {}
        if base and result.get("wall_s_median"):
            entry["before_torch_over_after"] = round(base / result["wall_s_median"], 3)
        old = before["engines"].get(engine)
        if old and old.get("wall_s_median") and result.get("wall_s_median"):
            entry["same_engine_before_over_after"] = round(old["wall_s_median"] / result["wall_s_median"], 3)
            entry["mean_bleu_before_after"] = [old["mean_bleu"], result["mean_bleu"]]
            same = sum(old["hypotheses_sha256"].get(d) == h for d, h in result["hypotheses_sha256"].items())
            entry["directions_with_identical_translations"] = f"{same}/{len(result['hypotheses_sha256'])}"
        out[engine] = entry
    keys = {**before["setup"], **after["setup"]}.keys() - {"checkpoint"}
    differ = sorted(k for k in keys if before["setup"].get(k) != after["setup"].get(k))
    return {"setup_differs_in": differ, "engines": out}


def table(labels: dict) -> str:
    rows = []
    for label, entry in labels.items():
        for engine, r in entry["engines"].items():
            spread = f"{r['wall_s_median']:.1f} [{r['wall_s_min']:.1f}–{r['wall_s_max']:.1f}]" if r.get("wall_s_median") else "—"
            same = "" if r.get("identical_to_torch") is None else f"{100 * r['identical_to_torch']:.1f}%"
            rows.append([label, engine, spread, r["first_call_s"], r["sentences_per_s"], r["mean_bleu"], same])
    headers = ["label", "engine", "wall s (median [min–max])", "first call s", "sentences/s", "mean BLEU", "identical to torch"]
    return common.markdown_table(headers, rows)


def ready_compiled_step() -> str | None:
    """Have the PyTorch engine's compiled decoder step ready before timing, as in an app that has
    translated before on this machine (`core.compiled`, built once per machine; None in a checkout
    older than it). Its status, for the JSON."""
    try:
        from core import compiled
    except ImportError:
        return None
    compiled.build()
    return compiled.status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="", help="comma-separated, of torch,ctranslate2,ctranslate2-int8 (default: all installed)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per engine after the first call (default 2)")
    parser.add_argument("--label", default="after", help="before or after: the JSON keeps one entry per label")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--checkpoint", type=Path, default=None, help=f"default: {CHECKPOINT} of the checkout whose core is imported")
    parser.add_argument("--data", type=Path, default=None, help="Multi30K folder (default: $POLYGLOT_MULTI30K or where core looks)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=200, help="sentences per direction (the tab's max_sentences)")
    parser.add_argument("--directions", default="all", help="the tab's directions spec (default all)")
    parser.add_argument("--device", default="auto", help="core.load's device (default auto, as the tab)")
    parser.add_argument("--quick", action="store_true", help="smoke version: 2 directions × 20 sentences, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.repeats = QUICK["sentences"], QUICK["repeats"]

    installed = ct2_installed()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] or [e for e in ENGINES if e == "torch" or installed]
    for engine in engines:
        if engine not in ENGINES:
            raise SystemExit(f"Unknown engine {engine!r}: pick among {', '.join(ENGINES)}")
        if engine != "torch" and not installed:
            raise SystemExit(f"{engine} needs ctranslate2, which is not installed here")

    n_threads = common.threads(args.threads)
    machine = common.machine_info(n_threads)
    shipped = find_checkpoint(args.checkpoint)
    data_folder = find_test_folder(args.data)
    common.log(f"code from {CODE_ROOT}, checkpoint {shipped}, data {data_folder}, {n_threads} threads, engines {engines}")

    with tempfile.TemporaryDirectory(prefix="evaluate-tab-") as scratch:
        # a copy without any CTranslate2 export, so each CT2 engine exports on its first call here
        folder = Path(scratch) / shipped.name
        shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("ct2-*", ".ct2-*"))
        start = time.perf_counter()
        translator = core.load(folder, args.device)  # the tab's first press loads the model too (demo.state)
        load_s = time.perf_counter() - start
        compiled_step = ready_compiled_step()
        lines = {
            lang: common.read_lines(data_folder / f"{TEST_STEM}.{lang}.gz")
            for lang in translator.languages
            if (data_folder / f"{TEST_STEM}.{lang}.gz").is_file()
        }
        languages = shared_languages(translator.languages, lines)  # as the tab does
        directions = parse_directions(args.directions or "all", languages)
        if args.quick:
            directions = directions[: QUICK["directions"]]
        common.log(f"{len(directions)} directions × {args.sentences} sentences, beam {args.beam}: {', '.join(directions)}")

        firsts: dict[str, dict] = {}
        for engine in engines:
            firsts[engine] = run_once(translator, lines, directions, engine, args.beam, args.sentences)
            common.log(f"{engine}: first call {firsts[engine]['wall_s']:.2f} s")
        timed: dict[str, list[dict]] = {e: [] for e in engines}
        for repeat in range(args.repeats):  # engines alternate: A B C A B C ...
            for engine in engines:
                timed[engine].append(run_once(translator, lines, directions, engine, args.beam, args.sentences))
                common.log(f"{engine}: run {repeat + 1}/{args.repeats} {timed[engine][-1]['wall_s']:.2f} s")
        exports = sorted(p.name for p in folder.iterdir() if p.name.startswith("ct2-"))

    torch_hypotheses = None
    if "torch" in engines:
        report = firsts["torch"]["report"]
        torch_hypotheses = {d: s.hypotheses for d, s in report.scores.items()}
    results = {e: summarise(e, firsts[e], timed[e], torch_hypotheses if e != "torch" else None) for e in engines}

    setup = {
        "test_set": f"Multi30K {TEST_STEM}",
        "directions": directions,
        "max_sentences": args.sentences,
        "beam_size": args.beam,
        "workers": "default (evaluate's, as the tab)",
        "threads": n_threads,
        "device": args.device,
        "checkpoint": str(shipped),
        "weights_sha256": sha256(shipped / "model.safetensors"),
        "quick": args.quick,
        "compiled_decoder_step": compiled_step,
    }
    entry = {
        "setup": setup,
        "repeats": args.repeats,
        "load_s": round(load_s, 3),
        "engines": results,
        "ct2_exports_made": exports,
        "code_root": str(CODE_ROOT),
        "script_sha256": sha256(Path(__file__)),
        "provenance": common.provenance(),
        "machine": machine,
    }

    labels: dict = {}
    if args.json.exists():
        try:
            labels = json.loads(args.json.read_text(encoding="utf-8")).get("labels", {})
        except (OSError, ValueError) as error:
            common.log(f"{args.json}: not readable ({error}); writing it anew")
    labels[args.label] = entry
    labels = {k: labels[k] for k in sorted(labels, key=lambda k: (k != "before", k != "after", k))}
    data = {
        "benchmark": "evaluate_tab",
        "description": "Wall time of the Evaluate tab's evaluate() call on the shipped model, per engine and label (before/after)",
        "labels": labels,
        "comparison": compare(labels),
        "machine": machine,
    }
    common.write_json(args.json, data)  # atomic (at 207499f, a plain write)
    print(table(labels))
    if data["comparison"]:
        print(json.dumps(data["comparison"], indent=1))
    common.log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
