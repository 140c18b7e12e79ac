"""The classroom promise: `python -m core train --preset tiny --out DIR` (built-in corpus, default steps)
finishes in about 3 minutes on 2 CPU cores with a mean validation BLEU of at least 30.

    python bench/classroom.py [--threads N]      # also part of `python bench/run.py` (about 3 minutes)

Runs exactly that command in a subprocess, then reads the run's metrics.jsonl; prints a table,
writes bench/results/classroom.json, and exits non-zero if the BLEU floor is missed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from core.checkpoint import read_metrics  # noqa: E402
from core.events import Event  # noqa: E402

BLEU_FLOOR = 30.0


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    # run.py passes these to every benchmark: the classroom run trains its own tiny model from scratch
    # (the same with or without --quick), so the shipped checkpoint is not used.
    parser.add_argument("--checkpoint", type=Path, default=None, help="ignored (accepted from run.py)")
    parser.add_argument("--steps", type=int, default=None, help="fewer steps than the preset's (a smoke test only)")
    args = parser.parse_args()
    n_threads = args.threads or 0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "tiny"
        command = [sys.executable, "-m", "core", "train", "--preset", "tiny", "--out", str(out)]
        if n_threads:
            command += ["--threads", str(n_threads)]
        if args.steps:
            command += ["--steps", str(args.steps)]
        start = time.perf_counter()
        subprocess.run(command, cwd=common.ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        records = read_metrics(out)
    valid = [r for r in records if r["event"] == Event.VALID]
    final = valid[-1]
    result = {
        "benchmark": "classroom",
        "machine": common.machine_info(n_threads or common.threads()),
        "command": "python -m core train --preset tiny --out DIR" + (f" --steps {args.steps}" if args.steps else ""),
        "wall_seconds": round(wall, 1),
        "train_seconds": final.get("elapsed_s"),
        "mean_valid_bleu": final["mean_bleu"],
        "valid_bleu": final["bleu"],
        "bleu_signature": final.get("bleu_signature"),
        "bleu_floor": BLEU_FLOOR,
    }
    print(
        common.markdown_table(
            ["command", "wall s", "mean valid BLEU", "directions"],
            [[result["command"], result["wall_seconds"], f"{final['mean_bleu']:.1f}", len(final["bleu"])]],
        )
    )
    common.write_json(common.result_path("classroom", args.json), result)
    return 0 if args.steps or final["mean_bleu"] >= BLEU_FLOOR else 1  # no floor for a shortened run


if __name__ == "__main__":
    sys.exit(main())
