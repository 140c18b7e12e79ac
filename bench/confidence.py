"""Does the sentence confidence know when the model is lost? Measured on the shipped model.

    python bench/confidence.py [--quick] [--sentences 500] [--checkpoint DIR]

The shipped model learnt from image captions (Multi30K). This script translates English → German

- in-domain: the first `--sentences` lines of the Multi30K test split (`test_2016_flickr`), and
- out-of-domain: the 60 sentences of `bench/data/out_of_domain.en-de.tsv`, written for this project
  (conversation, news, business, software, medicine, law, science, opinions), each with a German
  reference translation written with it,

with greedy search and beam 4, and scores each output's sentence confidence (`core.confidence`:
the geometric mean of its pieces' probabilities) against

- ranking: the ROC AUC of confidence for telling in-domain (positive) from out-of-domain sentences,
  i.e. the chance that a random in-domain sentence gets a higher confidence than a random
  out-of-domain one (0.5 = no better than chance);
- quality: Pearson and Spearman correlation of confidence with sentence-level chrF (sacreBLEU)
  against the reference, over both sets together and within the in-domain set alone;
- the hint: the share of each set below `core.confidence.LOW_CONFIDENCE`, and the threshold that
  best separates the two sets (Youden's J), which is where LOW_CONFIDENCE came from.

Writes bench/results/confidence.json.
"""

from __future__ import annotations

import csv
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sacrebleu.metrics import CHRF

from bench import common
from bench.common import log
from core.confidence import LOW_CONFIDENCE
from core.translator import Translator

OUT_OF_DOMAIN = common.BENCH_DIR / "data" / "out_of_domain.en-de.tsv"


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney U / n·m)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def ranks(values: list[float]) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    values = np.asarray(values)
    order = values.argsort(kind="stable")
    result = np.empty(len(values))
    result[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        result[tied] = result[tied].mean()
    return result


def pearson(x: list[float], y: list[float]) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: list[float], y: list[float]) -> float:
    return pearson(list(ranks(x)), list(ranks(y)))


def best_threshold(positive: list[float], negative: list[float]) -> dict:
    """The threshold t maximising Youden's J = P(in-domain ≥ t) − P(out-of-domain ≥ t)."""
    best = {"threshold": None, "youden_j": -1.0}
    for t in sorted(set(positive) | set(negative)):
        j = np.mean(np.asarray(positive) >= t) - np.mean(np.asarray(negative) >= t)
        if j > best["youden_j"]:
            best = {"threshold": t, "youden_j": float(j)}
    return best


def measure(translator: Translator, sources: dict[str, list[str]], references: dict[str, list[str]], beam: int) -> dict:
    chrf = CHRF()
    found = {}
    for name, lines in sources.items():
        translations = translator.translate(lines, "en", "de", beam_size=beam, scores=True)
        found[name] = {
            "confidence": [t.confidence for t in translations],
            "min_piece_prob": [min(t.piece_probs) for t in translations],
            "chrf": [chrf.sentence_score(t.text, [ref]).score for t, ref in zip(translations, references[name])],
            "examples": [[t.source, t.text, round(t.confidence, 3)] for t in translations[:5]],
        }
    inside, outside = found["in_domain"], found["out_of_domain"]
    both = {key: inside[key] + outside[key] for key in ("confidence", "chrf")}
    summary = {
        "beam_size": beam,
        "sentences": {name: len(f["confidence"]) for name, f in found.items()},
        "auc_in_vs_out": auc(inside["confidence"], outside["confidence"]),
        "auc_in_vs_out_min_piece_prob": auc(inside["min_piece_prob"], outside["min_piece_prob"]),
        "chrf_correlation_all": {
            "pearson": pearson(both["confidence"], both["chrf"]),
            "spearman": spearman(both["confidence"], both["chrf"]),
        },
        "chrf_correlation_in_domain": {
            "pearson": pearson(inside["confidence"], inside["chrf"]),
            "spearman": spearman(inside["confidence"], inside["chrf"]),
        },
        "mean_confidence": {name: float(np.mean(f["confidence"])) for name, f in found.items()},
        "mean_chrf": {name: float(np.mean(f["chrf"])) for name, f in found.items()},
        "below_low_confidence": {name: float(np.mean(np.asarray(f["confidence"]) < LOW_CONFIDENCE)) for name, f in found.items()},
        "best_threshold": best_threshold(inside["confidence"], outside["confidence"]),
        "examples": {name: f["examples"] for name, f in found.items()},
        "chrf_signature": str(chrf.get_signature()),
    }
    log(
        f"beam {beam}: AUC {summary['auc_in_vs_out']:.3f}, Spearman with chrF "
        f"{summary['chrf_correlation_all']['spearman']:.3f} (all) "
        f"{summary['chrf_correlation_in_domain']['spearman']:.3f} (in-domain)"
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=500, help="in-domain test sentences")
    args = parser.parse_args(argv)
    n_threads = common.threads(args.threads)
    translator = Translator.load(args.checkpoint, device=args.device)
    test_en, test_de = common.test_set("en", "de")
    count = 100 if args.quick else args.sentences
    with OUT_OF_DOMAIN.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    sources = {"in_domain": test_en[:count], "out_of_domain": [r["en"] for r in rows]}
    references = {"in_domain": test_de[:count], "out_of_domain": [r["de"] for r in rows]}
    result = {
        "what": "sentence confidence (geometric mean of piece probabilities) of the shipped model, en→de",
        "model": args.checkpoint.name,
        "in_domain": f"Multi30K test_2016_flickr, first {count} lines",
        "out_of_domain": f"{OUT_OF_DOMAIN.relative_to(common.ROOT)} ({len(rows)} sentences written for this project)",
        "low_confidence": LOW_CONFIDENCE,
        "machine": common.machine_info(n_threads, args.device),
        "runs": [measure(translator, sources, references, beam) for beam in (1, 4)],
    }
    path = common.write_json(common.result_path("confidence", args.json), result)
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
