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

Same output as core in float32, option by option. Core's searches follow CTranslate2's rules
(`core.decoding`), so the same options give the same search:
- Length limit: core's rule (`SearchLimits.per_sentence`: at most `L = int(1.5·source) + 10`
  tokens, </s> included, capped by the position table; at step L a translation ends, cut there if
  its token was not </s>) is CT2's `max_decoding_length = L`. CT2 takes one limit per call, so
  greedy search passes the batch's longest and a step callback ends each sentence at its own; beam
  search runs the batch to its longest and keeps each search that stopped before its own limit,
  running the others again with theirs (`_beam_batch`).
- Beam search: the same 2·beam candidates per step, those ending in </s> among the top `beam`
  finish, the best `beam` others continue; a sentence stops once `beam × patience` have finished
  (`core.decoding.PATIENCE`, CT2's `patience`), or with length penalty 0 once its best candidate
  ended and n-best have. Scores are `log P / length^penalty`, with </s> counted in the length
  (`return_end_token` keeps it in CT2's hypotheses).
- `min_decoding_length=0` (an empty translation is allowed), `max_input_length=0` (core already
  cut the source), n-best as CT2's `num_hypotheses`.
tests/test_ct2.py checks every option against core; `bench/decode_speed.py` measures the agreement
on the test set (identical up to float rounding, where two candidates' scores nearly tie).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core import export
from core.checkpoint import WEIGHTS
from core.decoding import PATIENCE, SearchLimits
from core.parallel import parallel_map, workers_for
from core.vocab import EOS_ID

if TYPE_CHECKING:
    from core.translator import Translation, Translator

ENGINES = ("torch", "ctranslate2", "ctranslate2-int8")  # what `Translator.translate(engine=...)` accepts
INSTALL = "pip install ctranslate2==4.8.5"  # also: pip install -r requirements-ct2.txt
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
    patience: float = PATIENCE,
) -> list[Translation]:
    """`Translator.translate` on CTranslate2: same arguments, same translations (module docstring)."""
    from core.decoding import DEFAULT_LIMITS
    from core.translator import Translation, batched_lines, pad

    check_engine(engine)
    translator.check_pair(src, tgt)
    if beam_size < 1 or n_best < 1:
        raise ValueError("beam_size and n_best must be at least 1")
    if beam_size > 1 and min(n_best, beam_size) > round(beam_size * patience):
        raise ValueError(
            f"CTranslate2 returns at most beam_size × patience = {round(beam_size * patience)} hypotheses: "
            f"raise patience for n_best {n_best}, or use the torch engine"
        )
    limits = limits or DEFAULT_LIMITS
    workers = workers_for(translator.device, workers)
    model = ct2_translator(translator, engine.endswith("-int8"), workers)
    vocabulary = export.vocabulary_of(translator.tokenizer)
    piece_id = translator.tokenizer.processor.piece_to_id

    lines, results, encoded, batches = batched_lines(texts, lambda line: translator._encode(line, tgt), batch_size)
    max_positions = translator.model.config.max_positions

    def search(chunk: list[int]) -> list[list[_Found]]:
        """Each sentence's hypotheses (ids without </s>, score), best first."""
        ids = [encoded[i][0] for i in chunk]
        caps = limits.per_sentence(pad(ids), max_positions).tolist()  # core's own rule, per sentence
        tokens = [[vocabulary[t] for t in row] for row in ids]
        if beam_size == 1:
            return _greedy(model, tokens, caps, piece_id)
        return _beam_batch(model, tokens, caps, beam_size, length_penalty, min(n_best, beam_size), patience, piece_id)

    for chunk, found in zip(batches, parallel_map(search, batches, workers)):
        for i, hyps in zip(chunk, found):
            best = hyps[0]
            results[i] = Translation(
                source=lines[i],
                text=translator.tokenizer.decode(best.ids),
                pieces=translator.tokenizer.pieces(best.ids),
                log_prob=best.log_prob,
                score=best.score,
                n_best=[(translator.tokenizer.decode(h.ids), h.score) for h in hyps],
                truncated=encoded[i][1],
            )
    stats["ct2"] += len(encoded)
    return results  # type: ignore[return-value]


stats = {"ct2": 0}  # sentences translated by CT2 (tests check that the engine really ran)


@dataclass
class _Found:
    ids: list[int]  # without </s>
    log_prob: float
    score: float  # what the search ranked by
    length: int  # tokens generated, </s> included: the step it finished at, plus one


def _greedy(model, tokens: list[list[str]], caps: list[int], piece_id) -> list[list[_Found]]:
    """Greedy search, each sentence ended by the callback at its own limit (`cap` tokens)."""

    def stop_at_limit(step) -> bool:
        return step.step + 1 >= caps[step.batch_id]

    results = model.translate_batch(
        tokens,
        beam_size=1,
        num_hypotheses=1,
        length_penalty=0.0,
        return_end_token=True,
        return_scores=True,
        min_decoding_length=0,
        max_input_length=0,
        max_decoding_length=max(caps),
        callback=stop_at_limit,
    )
    return [[_found(result.hypotheses[0], result.scores[0], result.scores[0], piece_id)] for result in results]


def _beam_batch(
    model, tokens: list[list[str]], caps: list[int], beam_size: int, length_penalty: float, n_best: int, patience: float, piece_id
) -> list[list[_Found]]:
    """Beam search on a batch whose sentences have their own length limits (`caps`).

    CT2 takes one limit per call, so the whole batch first runs to its longest limit. Up to a
    sentence's own last step that search is the one its own limit allows. A search stops as soon
    as beam × patience hypotheses have finished; CT2 returns that many, best first, so when all of
    them are shorter than the sentence's limit they had all finished before its last step, the
    search stopped there too, and the result is the same. The others (runaway searches that reach
    their limit: a few) run again in groups of sentences that share a limit. With length penalty 0
    a search stops on another rule, so every group runs apart."""
    found: list[list[_Found] | None] = [None] * len(tokens)
    if length_penalty != 0:
        enough = round(beam_size * patience)
        for r, hyps in enumerate(_beam(model, tokens, max(caps), beam_size, length_penalty, enough, patience, piece_id)):
            if len(hyps) == enough and max(h.length for h in hyps) < caps[r]:
                found[r] = hyps[:n_best]
    for cap in sorted({caps[r] for r, hyps in enumerate(found) if hyps is None}):
        rows = [r for r, hyps in enumerate(found) if hyps is None and caps[r] == cap]
        for r, hyps in zip(rows, _beam(model, [tokens[r] for r in rows], cap, beam_size, length_penalty, n_best, patience, piece_id)):
            found[r] = hyps
    return found  # type: ignore[return-value]


def _beam(
    model, tokens: list[list[str]], cap: int, beam_size: int, length_penalty: float, hypotheses: int, patience: float, piece_id
) -> list[list[_Found]]:
    """Beam search on sentences sharing one length limit (`cap` tokens); the best `hypotheses` of each."""
    results = model.translate_batch(
        tokens,
        beam_size=beam_size,
        patience=patience,
        num_hypotheses=hypotheses,
        length_penalty=length_penalty,
        return_end_token=True,
        return_scores=True,
        min_decoding_length=0,
        max_input_length=0,
        max_decoding_length=cap,
    )
    # CT2 returns log P / length^penalty, the length counting </s> (kept by return_end_token)
    return [[_found(h, s * len(h) ** length_penalty, s, piece_id) for h, s in zip(r.hypotheses, r.scores)] for r in results]


def _found(pieces: list[str], log_prob: float, score: float, piece_id) -> _Found:
    return _Found(_ids(pieces, piece_id), log_prob, score, len(pieces))


def _ids(pieces: list[str], piece_id) -> list[int]:
    ids = [piece_id(p) for p in pieces]
    return ids[:-1] if ids and ids[-1] == EOS_ID else ids
