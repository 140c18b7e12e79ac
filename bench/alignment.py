"""Which decoder layer's cross-attention gives the best word alignments? Measured on the shipped model.

    python bench/alignment.py [--sentences 100] [--checkpoint DIR]

No gold word alignments ship with Multi30K, so this is agreement with simple baselines, not an
alignment error rate. For each of the first `--sentences` pairs of the Multi30K test split
(`test_2016_flickr`, en and de), the model is teacher-forced on the reference in both directions:
en→de producing the German reference, and de→en producing the English sentence. Each layer's
cross-attention (heads averaged, and every single head) gives word alignments (`core.alignment`,
argmax per target word). Reported per layer and head:

- `bidirectional`: agreement (F1 of the pairs, `core.alignment.agreement`) between the en→de
  alignments and the de→en ones read backwards. Two directions computed independently agree only
  where both find the same word correspondences, so higher is better; this picks the layer.
- `diagonal`: agreement of en→de with the positional baseline (`core.alignment.diagonal`: word j
  to the word at the same relative position). English and German captions are close to
  monotone, so a good layer agrees with it often, but not always.
- the diagonal baseline's own bidirectional agreement, for scale.

It is not a speed benchmark. Writes bench/results/alignment.json.
"""

from __future__ import annotations

from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common
from bench.common import log
from core import alignment
from core.translator import Translator


def pairs_of(view, layer: int, head: int | None, fed: bool = False) -> list[tuple[int, int]]:
    weights = alignment.layer_weights(view.cross, layer, head)
    if fed:  # the row of the step a piece is fed into (one later) instead of the step producing it
        weights = np.concatenate([weights[1:], weights[-1:]])
    return alignment.align(weights, view.source_pieces, view.target_pieces)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=100)
    args = parser.parse_args(argv)
    n_threads = common.threads(args.threads)
    translator = Translator.load(args.checkpoint, device=args.device)
    english, german = common.test_set("en", "de")
    english, german = english[: args.sentences], german[: args.sentences]
    forward = [translator.attention(en, "en", "de", forced=de) for en, de in zip(english, german)]
    backward = [translator.attention(de, "de", "en", forced=en) for en, de in zip(english, german)]
    layers, heads = forward[0].cross.shape[:2]
    log(f"{len(english)} pairs, {layers} decoder layers × {heads} heads")

    def score(layer: int, head: int | None, fed: bool = False) -> dict:
        both, diagonal = [], []
        for there, back in zip(forward, backward):
            en_de = pairs_of(there, layer, head, fed)
            de_en = [(j, i) for i, j in pairs_of(back, layer, head, fed)]  # (German, English) read as (English, German)
            n_en, n_de = len(alignment.words(there.source_pieces)), len(alignment.words(there.target_pieces))
            both.append(alignment.agreement(en_de, de_en))
            diagonal.append(alignment.agreement(en_de, alignment.diagonal(n_en, n_de)))
        return {"bidirectional": float(np.mean(both)), "diagonal": float(np.mean(diagonal))}

    per_layer = []
    for layer in range(layers):
        entry = {
            "layer": layer + 1,
            "heads_averaged": score(layer, None),
            "heads_averaged_rows_fed": score(layer, None, fed=True),
            "heads": [score(layer, head) for head in range(heads)],
        }
        per_layer.append(entry)
        log(f"layer {layer + 1}: averaged heads {entry['heads_averaged']}, rows fed {entry['heads_averaged_rows_fed']}")
    diagonal_both = float(
        np.mean(
            [
                alignment.agreement(
                    alignment.diagonal(len(alignment.words(f.source_pieces)), len(alignment.words(f.target_pieces))),
                    [(j, i) for i, j in alignment.diagonal(len(alignment.words(b.source_pieces)), len(alignment.words(b.target_pieces)))],
                )
                for f, b in zip(forward, backward)
            ]
        )
    )
    best = max(per_layer, key=lambda e: e["heads_averaged"]["bidirectional"])
    best_head = max(((e["layer"], h, s["bidirectional"]) for e in per_layer for h, s in enumerate(e["heads"])), key=lambda x: x[2])
    result = {
        "what": "agreement of cross-attention word alignments between en→de and de→en (teacher-forced on the "
        "Multi30K test references) and with a positional diagonal baseline; no gold alignments",
        "checkpoint": args.checkpoint.name,
        "test_set": "multi30k test_2016_flickr en-de",
        "sentences": len(english),
        "method": "argmax per target word over heads-averaged (or single-head) cross-attention, pieces merged into words; "
        "the row of a piece is the step that produced it (rows_fed: the next step, where it is the input)",
        "layers": per_layer,
        "diagonal_baseline_bidirectional": diagonal_both,
        "best_layer_heads_averaged": best["layer"],
        "best_single_head": {"layer": best_head[0], "head": best_head[1], "bidirectional": best_head[2]},
        "default_layer": alignment.layer_index(layers, alignment.DEFAULT_LAYER) + 1,
        "machine": common.machine_info(n_threads, args.device),
    }
    path = common.write_json(common.result_path("alignment", args.json), result)
    log(f"best layer {best['layer']} (heads averaged); wrote {path}")
    return result


if __name__ == "__main__":
    main()
