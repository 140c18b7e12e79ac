"""Choose beam search's `patience` on the validation split (`core.decoding.PATIENCE`).

    python bench/patience.py                 # 12 directions × 300 validation sentences, beam 4
    python bench/patience.py --quick         # 2 directions × 100 sentences

A beam search stops once beam_size × patience hypotheses have finished (CTranslate2's rule,
which core follows so both engines find the same translations). Patience 1 stops soonest; more
patience searches longer and can find higher-scoring translations. The shipped model translates
the validation split (never the test set: this is a tuning choice) at each patience; all
directions' translations are pooled into one corpus for a paired bootstrap against patience 1,
with per-direction BLEU beside it and the decoding time (one thread, while nothing else ran
only if the machine was idle: see `machine.other_load`). Writes bench/results/patience.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench import common
from bench.common import log
from core.evaluate import corpus_scores, paired_bootstrap
from core.languages import direction
from core.translator import Translator

PATIENCES = (1.0, 2.0, 4.0)
BEAM = 4


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=0, help="validation sentences per direction (default 300; --quick 100)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or 1)
    machine = common.machine_info(torch.get_num_threads())
    translator = Translator.load(args.checkpoint)
    languages = translator.languages
    directions = [(s, t) for s in languages for t in languages if s != t][: 2 if args.quick else None]
    n = args.sentences or (100 if args.quick else 300)
    folder = common.multi30k_folder()
    valid = {lang: common.read_lines(folder / f"val.{lang}.gz")[:n] for lang in languages}

    systems: dict[str, list[str]] = {}
    per_direction: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for patience in PATIENCES:
        name = f"patience {patience:g}"
        hypotheses: list[str] = []
        start = time.perf_counter()
        for src, tgt in directions:
            out = [t.text for t in translator.translate(valid[src], src, tgt, beam_size=BEAM, workers=1, patience=patience)]
            per_direction.setdefault(direction(src, tgt), {})[name] = corpus_scores(out, valid[tgt])[0]
            hypotheses += out
        seconds[name] = time.perf_counter() - start
        systems[name] = hypotheses
        log(f"{name}: {seconds[name]:.1f} s")
    references = [line for src, tgt in directions for line in valid[tgt]]
    scores = paired_bootstrap(systems, references, 1000)
    *_, bleu_signature, chrf_signature = corpus_scores(systems["patience 1"], references)
    result = {
        "benchmark": "patience",
        "quick": args.quick,
        "machine": machine,
        "setup": {
            "checkpoint": str(args.checkpoint),
            "split": "val",
            "directions": [direction(s, t) for s, t in directions],
            "sentences_per_direction": n,
            "beam_size": BEAM,
            "length_penalty": 1.0,
            "bootstrap_samples": 1000,
        },
        "pooled": scores,
        "per_direction_bleu": per_direction,
        "seconds": seconds,
        "bleu_signature": bleu_signature,
        "chrf_signature": chrf_signature,
    }
    path = common.write_json(common.result_path("patience", args.json), result)
    rows = [
        [name, f"{s['bleu']['score']:.2f}", s["bleu"]["p_value"] or "—", f"{s['chrf']['score']:.2f}", f"{seconds[name]:.0f}"]
        for name, s in scores.items()
    ]
    print(common.markdown_table(["", "BLEU (pooled)", "p vs patience 1", "chrF", "seconds"], rows))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
