"""CTranslate2 as a bulk decoding engine: `Translator.translate(..., engine="ctranslate2")`.

For translating many sentences, the same weights run in CTranslate2 (C++ kernels, no Python in
the decoding loop). Everything that looks inside the model (attention, step by step, sampling,
per-piece scores, prefixes, the beam tree) stays on the PyTorch engine; asking this engine for
one of them is a ValueError.

The model is exported once (`core.export.to_ctranslate2`) into a cache folder next to the
checkpoint, `<run>/ct2-<sha256 of model.safetensors>[-int8]/`, built in a temporary folder and
renamed into place, so a half-written export is never read. New weights have a new hash, hence a
new folder. A translator with no folder (in memory) or a read-only one exports under the system's
temporary folder instead, keyed by the hash of its weights.

Same output as core in float32, option by option:
- Greedy search: CT2's greedy search with `max_decoding_length` the batch's longest limit, and a
  step callback that ends each sentence at its own limit. Core's rule (`SearchLimits.per_sentence`:
  at most `L = int(1.5·source) + 10` tokens, </s> included, capped by the position table) forces
  </s> at step L at no cost, so the translation is the first L - 1 pieces; the callback stops CT2
  after the same L - 1 pieces, with the same summed log-probability.
- Beam search: CT2 ranks the same 2·beam candidates per step, finishes those ending in </s> among
  the top `beam` and continues the best `beam` others, as `decoding.beam_search` does. Three options
  make the rest agree: the length in `log P / length^penalty` counts </s> in both (CT2 4.8 counts it;
  `return_end_token` keeps it in the hypothesis, which tells a finished one from one cut at the
  limit), `min_decoding_length=0` (an empty translation is allowed) and `max_input_length=0` (core
  already cut the source). CT2 takes one length limit per call, so each batch is decoded in groups of
  sentences with the same limit L, with `max_decoding_length = L - 1`. At the limit the two searches
  differ (core appends </s> to every live beam for free; CT2 keeps the top `beam` candidates), so a
  sentence whose CT2 search reached its last step is translated again by core: the output is core's.
- What no option makes agree exactly: when a beam search stops before the limit. Core stops a
  sentence once it has `beam` finished hypotheses and no live beam, normalised at the next length,
  beats the worst of them (with a length penalty > 0 a live beam could still win later, so this is
  a heuristic); CT2 once it has `beam × patience` finished hypotheses (with length penalty 0: once
  the top beam finished and n-best are). Both searches see the same hypotheses in the same order,
  so they agree whenever they stop late enough; `PATIENCE` = 4 makes CT2 stop later than core in
  nearly all cases. Measured on a small trained model (60 sentences, beam 4): every translation
  identical at length penalty 1.0 and 0.6 (patience 2: 3 of 60 differ at 1.0). The n-best lists
  beyond the first can still differ where core stopped early: there CT2 finds better-scoring
  hypotheses than core (tests/test_ct2.py checks both).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core import export
from core.checkpoint import WEIGHTS
from core.decoding import SearchLimits
from core.parallel import parallel_map, workers_for
from core.vocab import EOS_ID

if TYPE_CHECKING:
    from core.translator import Translation, Translator

ENGINES = ("torch", "ctranslate2", "ctranslate2-int8")  # what `Translator.translate(engine=...)` accepts
INSTALL = "pip install ctranslate2==4.8.5"  # also: pip install -r requirements-ct2.txt
PATIENCE = 4  # CT2 goes on until beam × patience hypotheses are finished (see the module docstring)
TEMP_CACHE = Path(tempfile.gettempdir()) / "polyglot-lab-ct2"  # exports of in-memory or read-only models

_loaded: dict[tuple[str, str, str, int], object] = {}  # (folder, device, compute type, workers) → ctranslate2.Translator
_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}  # (weights file, size, mtime) → sha256


def require():
    """The ctranslate2 module, or an ImportError that says how to install it."""
    try:
        import ctranslate2
    except ImportError as error:
        raise ImportError(
            f"The ctranslate2 engine needs CTranslate2, which is not installed: {INSTALL} (or pip install -r requirements-ct2.txt)"
        ) from error
    return ctranslate2


def available() -> bool:
    """Whether CTranslate2 is installed (it is an optional dependency)."""
    try:
        require()
    except ImportError:
        return False
    return True


def bulk_engines() -> list[str]:
    """The engines a bulk path (many lines, the Evaluate tab, the zero-shot matrix) can offer here,
    the default first: CTranslate2 when installed, since it gives core's translations faster."""
    return ["ctranslate2", "torch", "ctranslate2-int8"] if available() else ["torch"]


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: pick one of {', '.join(ENGINES)}")


def check_options(translator: Translator, scores: bool, prefix: str) -> None:
    """Everything that needs the model's insides runs on the PyTorch engine only."""
    if scores:
        raise ValueError("Per-piece scores and confidence need the torch engine: drop engine='ctranslate2' or scores=True")
    if prefix:
        raise ValueError("A translation prefix needs the torch engine: drop engine='ctranslate2' or the prefix")
    if translator.bf16:
        raise ValueError(
            "bfloat16 is a torch-engine precision: the ctranslate2 engine runs float32, or int8 with engine='ctranslate2-int8'"
        )
    if any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in translator.model.modules()):
        raise ValueError(
            "This translator holds torch int8 weights: use the float32 translator with engine='ctranslate2-int8' for CTranslate2's own int8"
        )


# --- the cached export -------------------------------------------------------------------------


def weights_hash(translator: Translator) -> str:
    """sha256 of the checkpoint's weights file (remembered while the file is unchanged), or of the
    model's tensors for a translator with no folder."""
    if translator.path is not None and (translator.path / WEIGHTS).is_file():
        file = translator.path / WEIGHTS
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _file_hashes:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _file_hashes[key] = digest.hexdigest()
        return _file_hashes[key]
    digest = hashlib.sha256()
    for name, tensor in sorted(translator.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_folder(translator: Translator, int8: bool = False) -> Path:
    """Where this model's CTranslate2 export lives: `<run>/ct2-<sha256>[-int8]`, or under the
    system's temporary folder for a translator with no (writable) folder."""
    name = f"ct2-{weights_hash(translator)}{'-int8' if int8 else ''}"
    if translator.path is not None and os.access(translator.path, os.W_OK):
        return translator.path / name
    return TEMP_CACHE / name


def exported(translator: Translator, int8: bool = False) -> Path:
    """The CTranslate2 model folder of `translator`, exported on first use (atomically: written in a
    temporary folder beside it, then renamed into place)."""
    folder = cache_folder(translator, int8)
    if (folder / "model.bin").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model = translator.model if translator.device.type == "cpu" else _cpu_copy(translator.model)
        export.to_ctranslate2(model, export.vocabulary_of(translator.tokenizer), staging / "model", quantization="int8" if int8 else None)
        try:
            os.rename(staging / "model", folder)
        except OSError:  # another process finished the same export first: keep theirs
            if not (folder / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


def ct2_translator(translator: Translator, int8: bool, workers: int):
    """A `ctranslate2.Translator` on the export, one per (folder, device, precision, workers), with
    `workers` batches decoded at once (inter_threads), as core's own engine does."""
    ctranslate2 = require()
    folder = exported(translator, int8)
    device = "cuda" if translator.device.type == "cuda" and ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute_type = "int8" if int8 else "float32"
    key = (str(folder), device, compute_type, workers)
    with _lock:
        if key not in _loaded:
            threads = torch.get_num_threads()
            options = {"inter_threads": workers, "intra_threads": max(1, threads // workers)} if device == "cpu" else {}
            _loaded[key] = ctranslate2.Translator(str(folder), device=device, compute_type=compute_type, **options)
            # CTranslate2 sets the calling thread's OpenMP thread count to its intra_threads, which
            # is torch's count too: put it back, or torch would run on fewer cores afterwards.
            torch.set_num_threads(threads)
        return _loaded[key]


def forget_loaded() -> None:
    """Drop the loaded CTranslate2 models (the exports on disk stay)."""
    with _lock:
        _loaded.clear()


# --- translation -------------------------------------------------------------------------------


def translate(
    translator: Translator,
    texts: str | Sequence[str],
    src: str,
    tgt: str,
    engine: str = "ctranslate2",
    beam_size: int = 1,
    length_penalty: float = 1.0,
    n_best: int = 1,
    batch_size: int = 64,
    limits: SearchLimits | None = None,
    workers: int | None = None,
) -> list[Translation]:
    """`Translator.translate` on CTranslate2: same arguments, same translations (module docstring)."""
    from core.decoding import DEFAULT_LIMITS
    from core.translator import Translation, batched_lines, pad

    check_engine(engine)
    translator.check_pair(src, tgt)
    if beam_size < 1 or n_best < 1:
        raise ValueError("beam_size and n_best must be at least 1")
    limits = limits or DEFAULT_LIMITS
    workers = workers_for(translator.device, workers)
    model = ct2_translator(translator, engine.endswith("-int8"), workers)
    vocabulary = export.vocabulary_of(translator.tokenizer)
    piece_id = translator.tokenizer.processor.piece_to_id

    lines, results, encoded, batches = batched_lines(texts, lambda line: translator._encode(line, tgt), batch_size)
    max_positions = translator.model.config.max_positions

    def search(chunk: list[int]) -> list[list[tuple[list[int], float]] | None]:
        """Each sentence's hypotheses (ids without </s>, score), best first; None: redo with core."""
        ids = [encoded[i][0] for i in chunk]
        caps = limits.per_sentence(pad(ids), max_positions).tolist()  # core's own rule, per sentence
        tokens = [[vocabulary[t] for t in row] for row in ids]
        if beam_size == 1:
            return _greedy(model, tokens, caps, piece_id)
        found: list[list[tuple[list[int], float]] | None] = [None] * len(chunk)
        for cap in sorted(set(caps)):
            rows = [r for r, c in enumerate(caps) if c == cap]
            for r, hyps in zip(rows, _beam(model, [tokens[r] for r in rows], cap, beam_size, length_penalty, n_best, piece_id)):
                found[r] = hyps
        return found

    redo = []
    for chunk, found in zip(batches, parallel_map(search, batches, workers)):
        for i, hyps in zip(chunk, found):
            if hyps is None:
                redo.append(i)
                continue
            best = hyps[0][0]
            log_prob = hyps[0][1] * (len(best) + 1) ** length_penalty if beam_size > 1 else hyps[0][1]
            results[i] = Translation(
                source=lines[i],
                text=translator.tokenizer.decode(best),
                pieces=translator.tokenizer.pieces(best),
                log_prob=log_prob,
                score=hyps[0][1],
                n_best=[(translator.tokenizer.decode(h), s) for h, s in hyps],
                truncated=encoded[i][1],
            )
    if redo:  # sentences whose CT2 beam search reached its length limit: core's search decides
        again = translator.translate(
            [lines[i] for i in redo],
            src,
            tgt,
            beam_size=beam_size,
            n_best=n_best,
            length_penalty=length_penalty,
            batch_size=batch_size,
            limits=limits,
            workers=workers,
        )
        for i, translation in zip(redo, again):
            results[i] = translation
    stats["ct2"] += len(encoded) - len(redo)
    stats["redone"] += len(redo)
    return results  # type: ignore[return-value]


stats = {"ct2": 0, "redone": 0}  # sentences translated by CT2, and redone by core at the length limit


def _greedy(model, tokens: list[list[str]], caps: list[int], piece_id) -> list[list[tuple[list[int], float]]]:
    """Greedy search, each sentence ended by the callback after `cap - 1` pieces (core then forces
    </s> at no cost) unless it ended with </s> before."""

    def stop_at_limit(step) -> bool:
        return step.step + 2 >= caps[step.batch_id]

    results = model.translate_batch(
        tokens,
        beam_size=1,
        num_hypotheses=1,
        length_penalty=0.0,
        return_scores=True,
        min_decoding_length=0,
        max_input_length=0,
        max_decoding_length=max(max(caps) - 1, 1),
        callback=stop_at_limit,
    )
    return [[(_ids(result.hypotheses[0], piece_id), result.scores[0])] for result in results]


def _beam(
    model, tokens: list[list[str]], cap: int, beam_size: int, length_penalty: float, n_best: int, piece_id
) -> list[list[tuple[list[int], float]] | None]:
    """Beam search on sentences sharing one length limit `cap`; None for those whose search reached
    CT2's last step (`cap - 1` tokens), where CT2 and core part ways."""
    if cap < 2:
        return [None] * len(tokens)
    wanted = round(beam_size * PATIENCE)  # all CT2 keeps, so a hypothesis cut at the limit is seen
    results = model.translate_batch(
        tokens,
        beam_size=beam_size,
        patience=PATIENCE,
        num_hypotheses=wanted,
        length_penalty=length_penalty,
        return_end_token=True,
        return_scores=True,
        min_decoding_length=0,
        max_input_length=0,
        max_decoding_length=cap - 1,
    )
    found: list[list[tuple[list[int], float]] | None] = []
    for result in results:
        if any(len(h) >= cap - 1 for h in result.hypotheses):
            found.append(None)
        else:
            found.append([(_ids(h, piece_id), s) for h, s in zip(result.hypotheses, result.scores)][: min(n_best, beam_size)])
    return found


def _ids(pieces: list[str], piece_id) -> list[int]:
    ids = [piece_id(p) for p in pieces]
    return ids[:-1] if ids and ids[-1] == EOS_ID else ids
