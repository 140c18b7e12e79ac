"""What the packed linear layers cost in memory: resident memory after decoding, with and without them.

    python bench/decode_memory.py [--sentences 256]

`fast.linear` keeps a copy of every linear layer's weight reordered for oneDNN (and oneDNN keeps its
kernels), from the first translation on. Each variant of bench/decode_attempts.py runs in a fresh
process: load the shipped checkpoint, switch `core.fast` to the variant, then decode the first
`--sentences` test sentences greedy and beam 4 (one thread, batches of 64), reading the process's
resident memory (RSS, /proc/self/statm) after loading and after decoding. Compared: the variant
before the linear layers were packed ("packed_output_projection") and the code as it is.
Writes bench/results/decode_memory.json (with provenance).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, decode_attempts, profile_decode
from bench.common import log

COMPARED = ("packed_output_projection", decode_attempts.BEST)


def resident_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def child(checkpoint: Path, variant: str, sentences: int) -> dict:
    """Run in a fresh process: RSS after loading, and after decoding under `variant`."""
    import torch

    torch.set_num_threads(1)
    translator = profile_decode.load(checkpoint)
    loaded = resident_mb()
    decode_attempts.use(translator.model, variant)
    sources = profile_decode.batches(translator, sentences)
    with torch.inference_mode():
        profile_decode.search(translator.model, sources, 1)
        profile_decode.search(translator.model, sources, profile_decode.BEAM)
    return {"rss_mb_loaded": round(loaded, 1), "rss_mb_after_decoding": round(resident_mb(), 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--child", default="", help=decode_attempts.argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.checkpoint, args.child, args.sentences)))
        return {}
    out: dict = {"sentences": args.sentences, "threads": 1, "variants": {}}
    for variant in COMPARED:
        log(f"decoding under {variant}, in a fresh process")
        command = [sys.executable, __file__, "--child", variant, "--checkpoint", str(args.checkpoint), "--sentences", str(args.sentences)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out["variants"][variant] = json.loads(done.stdout.strip().splitlines()[-1])
    before, now = (out["variants"][v]["rss_mb_after_decoding"] for v in COMPARED)
    out["packed_linear_layers_cost_mb"] = round(now - before, 1)
    path = common.write_json(common.result_path("decode_memory", args.json), {**out, "machine": common.machine_info(1)})
    print(json.dumps(out, indent=1))
    log(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
