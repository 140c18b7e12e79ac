"""The decoder step compiled: `csrc/decoder_step.cpp`, built once per machine, used by the searches
of `core/decoding.py` where it applies. A speed path, like `core/fast.py`: the operations of the
Python step (`decoding._next_log_probs`) without Python between them, and the new position's
self-attention fused with the growing of its cache. So the same log-probabilities to float rounding
(the fused sums run in their own order), the same caches bit for bit, and the same translations
(tests/test_compiled.py; bench/decode_speed.py compares core with core_python on the test set).
Beam search's choice of candidates after each step (`fast.top_candidates`) is compiled alongside:
the same values and indices.

Why: on the CPU a step of a small model with few rows is bound by per-operation overhead, not by
arithmetic (bench/profile_decode.py: a one-row step of the shipped model costs a third of a 64-row
one). PyTorch's own compiler was tried first and dropped: its first call took over 80 seconds, even
with a warm cache, and its steps were no faster (bench/decode_attempts.py, "torch_compile").

Building needs a C++ compiler and takes about half a minute. The library is kept on disk, one file
per source, torch and Python version (POLYGLOT_COMPILED_CACHE, by default
~/.cache/polyglot-lab/compiled), written atomically: later processes load it at once, and a build
cut short (a process that ends mid-build) leaves nothing half-made behind. Each build runs in a
folder of its own, not in torch's shared one, whose lock file a killed build would leave for every
later build to wait on. `Translator.translate` starts a build in the background on a CPU and decodes
in Python until it is ready; POLYGLOT_COMPILE=0 in the environment turns that off. Without a
compiler everything works as before, and `status()` says why the step is not compiled.
Benchmark: bench/decode_speed.py (core against core_python, CTranslate2 and Transformers).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from core import fast
from core.model import LayerCache, Transformer

SOURCE = Path(__file__).parent / "csrc" / "decoder_step.cpp"
NAME = "polyglot_decoder_step"
FLAGS = ["-O3"]  # -O3 vectorises the fused attention's loops (one copy per vector width, see the source)
CACHE = Path(os.environ.get("POLYGLOT_COMPILED_CACHE", Path.home() / ".cache" / "polyglot-lab" / "compiled"))
SWITCH = "POLYGLOT_COMPILE"  # "0": `start_building` does nothing (an explicit `build()` still builds)

Step = Callable[[Tensor, list[LayerCache], Tensor, int], Tensor]  # (tokens, caches, mask, step) -> log-probabilities
Candidates = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]  # (scores, log_probs, k) -> (values, indices)

_lock = threading.Lock()  # held briefly, to read and change the state below
_one_build = threading.Lock()  # held through a build, so that two callers do not build twice
_extension: ModuleType | None = None
_status = NOT_TRIED = "not built"


def build() -> bool:
    """Build (or load from the disk cache) the compiled step, waiting for it; whether it is ready."""
    global _extension, _status
    with _one_build:
        if _extension is not None:
            return True
        start = time.perf_counter()
        try:
            extension = _load_or_build(_library())
        except Exception as error:  # no compiler, no ninja, a failed build: the Python step stays
            lines = str(error).strip().splitlines()
            with _lock:
                _status = f"not built: {type(error).__name__}: {lines[-1] if lines else ''}"
            return False
        with _lock:
            _extension, _status = extension, f"ready (built or loaded in {time.perf_counter() - start:.1f} s)"
        return True


def _library() -> Path:
    """Where the built step is kept: one file per source, build flags, torch version, Python and machine."""
    made_for = f"{torch.__version__} {sys.version} {platform.machine()} {FLAGS}".encode()
    return CACHE / f"{NAME}-{hashlib.sha256(SOURCE.read_bytes() + made_for).hexdigest()[:16]}.so"


def _load_or_build(library: Path) -> ModuleType:
    if library.is_file():
        spec = importlib.util.spec_from_file_location(NAME, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    from torch.utils import cpp_extension

    _ninja_on_path()
    with tempfile.TemporaryDirectory(prefix="polyglot-build-") as folder:
        module = cpp_extension.load(NAME, sources=[str(SOURCE)], extra_cflags=FLAGS, build_directory=folder, verbose=False)
        library.parent.mkdir(parents=True, exist_ok=True)
        partial = library.with_name(f"{library.name}.{os.getpid()}.partial")
        shutil.copyfile(Path(folder) / f"{NAME}.so", partial)
        os.replace(partial, library)  # whole or not at all
    return module


def _ninja_on_path() -> None:
    """torch builds with the `ninja` it finds on PATH; the pip package (requirements.txt) has one."""
    if shutil.which("ninja") is None:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def start_building() -> None:
    """`build()` in a background thread, once per process (a failed build is not tried again),
    unless POLYGLOT_COMPILE=0."""
    global _status
    with _lock:
        if _status != NOT_TRIED or os.environ.get(SWITCH) == "0":
            return
        _status = "building"
    threading.Thread(target=build, name="build-decoder-step", daemon=True).start()


def status() -> str:
    """Where the compiled step stands: "ready (…)", "building", "not built" or "not built: <why>"."""
    return _status


def decoder_step(model: nn.Module, python_step: Step) -> Step | None:
    """The compiled step for one search of `model`, or None where the Python step must run: not
    built yet, or a model it does not cover (training mode, gradients or autocast on, not float32
    on the CPU, oneDNN off, a layer that is not a plain `nn.Linear`, such as the int8 ones, or any
    hook that watches the decoder). `python_step` takes the steps it does not cover (more beams than
    `fast.FEW_QUERIES`: the Python step uses PyTorch's fused attention kernel there; a step past
    the model's positions, for its error message)."""
    extension = _extension
    if extension is None or not _applies(model):
        return None
    tensors = _tensors(model)
    positions = model.sinusoids if model.config.positions == "sinusoidal" else model.positions.weight
    heads, eps, max_positions = model.config.n_heads, model.decoder_norm.eps, model.config.max_positions
    embedding = model.embedding.weight

    def step(tokens: Tensor, caches: list[LayerCache], mask: Tensor, offset: int) -> Tensor:
        if caches[0].beams > fast.FEW_QUERIES or offset + tokens.shape[1] > max_positions:
            return python_step(tokens, caches, mask, offset)
        past = [] if caches[0].self_keys is None else [t for c in caches for t in (c.self_keys, c.self_values)]
        cross = [t for c in caches for t in (c.cross_keys, c.cross_values)]
        orders, beams = [c.order for c in caches], caches[0].beams
        found = extension.decoder_step(tokens, offset, embedding, positions, tensors, past, orders, cross, mask, beams, heads, eps)
        for i, cache in enumerate(caches):
            cache.self_keys, cache.self_values, cache.order = found[1 + 2 * i], found[2 + 2 * i], None
        return found[0]

    return step


def top_candidates() -> Candidates | None:
    """`fast.top_candidates` compiled, for one search, or None where it is not built yet. It takes
    the same arguments and gives the same values and indices, and of equal values the smaller index
    first (tests/test_compiled.py), where torch's order is unspecified. What it does not cover (not
    float32 on the CPU, a vocabulary without blocks, k larger than the blocks) it leaves to
    `fast.top_candidates`."""
    extension = _extension
    if extension is None:
        return None

    def choose(scores: Tensor, log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
        size = fast.candidate_block_size(scores, log_probs, k)
        if size is None or scores.dtype != torch.float32 or log_probs.dtype != torch.float32:
            return fast.top_candidates(scores, log_probs, k)
        values, indices = extension.top_candidates(scores, log_probs, k, size)
        return values, indices

    return choose


def _applies(model: nn.Module) -> bool:
    """Whether the compiled step computes what the Python step would for this model, now."""
    if not isinstance(model, Transformer):
        return False
    weight = model.embedding.weight
    # What `fast.dense` needs to run a layer on oneDNN: float32 on the CPU, no gradients, no autocast.
    if weight.device.type != "cpu" or not fast._packable(weight, weight):
        return False
    decoder = [m for part in (model.embedding, model.decoder_norm, *model.decoder_layers) for m in part.modules()]
    if any(m.training or m._forward_hooks or m._forward_pre_hooks for m in decoder):
        return False  # dropout would be on, or someone watches the decoder's layers
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return False
    return all(type(linear) is nn.Linear for layer in model.decoder_layers for linear in _linears(layer))


def _linears(layer: nn.Module) -> list[nn.Module]:
    own, cross, feed_forward = layer.self_attention, layer.cross_attention, layer.feed_forward
    return [own.query, own.key, own.value, own.output, cross.query, cross.output, feed_forward.linear1, feed_forward.linear2]


def _tensors(model: Transformer) -> list[Tensor]:
    """What `csrc/decoder_step.cpp` reads, in its order: per decoder layer 18 tensors (the linear
    maps' weights packed for oneDNN, as `fast.dense` keeps them), then the final LayerNorm and the
    packed output projection."""
    tensors = []
    for layer in model.decoder_layers:
        own, cross, feed_forward = layer.self_attention, layer.cross_attention, layer.feed_forward
        qkv_weight, qkv_bias = fast._joined([own.query, own.key, own.value])
        tensors += [layer.self_attention_norm.weight, layer.self_attention_norm.bias, fast._packed(qkv_weight), qkv_bias]
        tensors += [fast._packed(own.output.weight), own.output.bias]
        tensors += [layer.cross_attention_norm.weight, layer.cross_attention_norm.bias]
        tensors += [fast._packed(cross.query.weight), cross.query.bias, fast._packed(cross.output.weight), cross.output.bias]
        tensors += [layer.feed_forward_norm.weight, layer.feed_forward_norm.bias]
        tensors += [fast._packed(feed_forward.linear1.weight), feed_forward.linear1.bias]
        tensors += [fast._packed(feed_forward.linear2.weight), feed_forward.linear2.bias]
    return [*tensors, model.decoder_norm.weight, model.decoder_norm.bias, fast._packed(model.embedding.weight)]
