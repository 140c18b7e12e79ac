"""Pretrained Hugging Face translation models behind the `Translator` interface (an engine).

`core.load("hf:Helsinki-NLP/opus-mt-en-de")`, `core.load("hf:facebook/m2m100_418M")` or
`core.load("path/to/folder")` (a folder written by `save_pretrained`, or by
`python -m core export --format hf`) returns an `HFTranslator`. It has the methods the tabs, the
CLI and `core.evaluate` call on a `Translator` — translate (greedy, beam, n-best, scores, prefix),
sample (prefix), step_by_step, next_pieces, attention, attribution, alignments, sentence_embeddings,
check_pair — and returns the same plain data, so a class can put opus-mt next to the
7.6M-parameter model it just trained. `beam_tree` raises a ValueError that says why: generate()
does not report the candidates it drops.

Search is transformers' own `generate()`; scores are the model's log-probabilities of the tokens
it produced, recomputed in one teacher-forced pass so that greedy, beam and sampled candidates
are scored the same way as core's (`core.decoding`): log P(y|x), and for beam search
log P(y|x) / |y|^length_penalty with </s> counted. Attention maps come from one forward pass with
`output_attentions=True` over the translation found (eager attention, the reference
implementation). Sentence embeddings are mean-pooled encoder states, special tokens left out.

Families and their language handling (`Languages` below):
- M2M100 and NLLB: the source language is a token in front of the source, the target language a
  forced first target token. NLLB codes (deu_Latn) are shown as the Lab's codes (de) where one exists.
- Marian (opus-mt) for one pair: one fixed direction, from the tokenizer's source/target language
  or the model's name (opus-mt-en-de).
- Marian with several targets: a `>>xx<<` token in front of the source picks the target.
- A Lab model exported to M2M100 (`core.export`): core's own SentencePiece model and `<2xx>` tags.

`transformers` is imported only when such a model is opened, so the app starts as fast without it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from core.attribution import DEFAULT_STEPS, integrated_gradients
from core.confidence import sentence_confidence
from core.decoding import SearchLimits
from core.device import pick_device
from core.languages import language_name
from core.limits import current_limits
from core.translator import (
    MAX_INPUT_CHARS,
    PRECISIONS,
    AttentionView,
    AttributionView,
    Candidate,
    StepView,
    Translation,
    _clean,
    batched_lines,
    clean_prefix,
)

PREFIX = "hf:"  # core.load("hf:owner/name") opens a model of the Hugging Face Hub
ALLOW_ENV = "POLYGLOT_HF_MODELS"  # hosted mode: comma-separated Hub ids the Space owner allows
FAMILIES = {"marian": "Marian (opus-mt)", "m2m_100": "M2M100"}  # config.json model_type → label
LOAD_OVERHEAD = 1.2  # memory needed to load = float32 weights × this (buffers, activations)
EXPORT_POSITIONS = "core_positions.safetensors"  # marks a folder written by `core.export.save_hf`
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# NLLB's codes (ISO 639-3 + script) for the languages the Lab names with ISO 639-1 codes.
NLLB_CODES = {
    "en": "eng_Latn",
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "cs": "ces_Latn",
    "es": "spa_Latn",
    "it": "ita_Latn",
    "pt": "por_Latn",
    "nl": "nld_Latn",
    "pl": "pol_Latn",
    "ru": "rus_Cyrl",
    "uk": "ukr_Cyrl",
    "sv": "swe_Latn",
    "da": "dan_Latn",
    "fi": "fin_Latn",
    "tr": "tur_Latn",
    "ar": "arb_Arab",
    "he": "heb_Hebr",
    "zh": "zho_Hans",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "hi": "hin_Deva",
    "el": "ell_Grek",
    "hu": "hun_Latn",
    "ro": "ron_Latn",
    "sk": "slk_Latn",
}
NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


class HFModelError(ValueError):
    """A Hugging Face model that cannot be opened, with a message for the user (never a traceback)."""


class HubId(str):
    """A Hub model typed as "hf:owner/name"; `.name` is its last part, like a checkpoint folder's."""

    @property
    def name(self) -> str:
        return self.removeprefix(PREFIX).rsplit("/", 1)[-1]


# --- what can be opened ----------------------------------------------------------------------


def is_hub_name(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def is_hf_folder(folder: str | Path) -> bool:
    """A folder holding a Transformers model of a supported family (not a Lab run folder)."""
    config = _read_json(Path(folder) / "config.json")
    return config.get("model_type") in FAMILIES and "run" not in config


def hf_folders(root: str | Path) -> list[Path]:
    """The Hugging Face model folders directly under `root`, by name (none if it is missing)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_hf_folder(p)), key=lambda p: p.name.lower()
    )


def allowed_ids() -> list[str]:
    return [item.strip().removeprefix(PREFIX) for item in os.environ.get(ALLOW_ENV, "").split(",") if item.strip()]


def check_allowed(spec: str) -> str:
    """The Hub id of "hf:owner/name"; refused when malformed, or in hosted mode when not allow-listed."""
    model_id = spec.removeprefix(PREFIX).strip()
    if not HUB_ID.match(model_id) or ".." in model_id:
        raise HFModelError(f"{spec!r} is not a Hugging Face model id: write hf:owner/name, e.g. hf:Helsinki-NLP/opus-mt-en-de")
    if current_limits().hosted and model_id not in allowed_ids():
        allowed = ", ".join(f"hf:{m}" for m in allowed_ids()) or "none"
        raise HFModelError(
            f"This hosted app only opens the Hugging Face models its owner allowed ({allowed}); "
            f"{model_id} is not one of them. The owner lists them in {ALLOW_ENV}."
        )
    return model_id


# --- memory ----------------------------------------------------------------------------------


def count_parameters(config) -> int:
    """Parameters of the model `config` describes, counted on the meta device (no memory, no weights)."""
    from transformers import AutoModelForSeq2SeqLM

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSeq2SeqLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # tied matrices are one Parameter, counted once


def human_count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n:,}"


def memory_line(parameters: int) -> str:
    """E.g. "615M parameters, about 2.5 GB in float32"."""
    return f"{human_count(parameters)} parameters, about {parameters * 4 / 1e9:.1f} GB in float32"


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def check_memory(name: str, parameters: int, device: torch.device) -> None:
    needed, free = parameters * 4 * LOAD_OVERHEAD, available_bytes(device)
    if needed > free:
        raise HFModelError(
            f"{name} does not fit: {memory_line(parameters)} (about {needed / 1e9:.1f} GB to load), "
            f"and this machine has {free / 1e9:.1f} GB free on {device.type}. "
            "Pick a smaller model, or close other programs."
        )


# --- opening ---------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _fetch(what, source: str, label: str, **kwargs):
    """`what.from_pretrained(source)`, with every failure turned into an HFModelError."""
    offline = _offline()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Recommended: pip install sacremoses"
            return what.from_pretrained(source, local_files_only=offline, **kwargs)
    except MemoryError:
        raise HFModelError(f"{label}: not enough memory to load it") from None
    except Exception as error:  # noqa: BLE001 - hub, network and file errors all become one clear message
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if Path(source).is_dir():
            raise HFModelError(f"{label}: cannot read this Hugging Face model folder ({first})") from None
        if offline:
            raise HFModelError(
                f"{label} is not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE=1). "
                "Download it once with a network connection, or open a local model folder."
            ) from None
        kind = type(error).__name__
        if "RepositoryNotFound" in kind or "GatedRepo" in kind:
            raise HFModelError(f"{label}: no such public model on the Hugging Face Hub (check the id)") from None
        raise HFModelError(
            f"{label}: could not get it from the Hugging Face Hub ({first}). Without a network "
            "connection only models already in the Hugging Face cache open."
        ) from None


def load(spec: str | Path, device: str = "auto") -> HFTranslator:
    """Open "hf:owner/name" (downloaded into the Hugging Face cache, with a progress bar) or a model folder.

    The memory the float32 weights need is computed from config.json before any weight is read,
    and loading is refused when the machine does not have it.
    """
    if is_hub_name(str(spec)):
        source = check_allowed(str(spec))
        name, label = source.rsplit("/", 1)[-1], f"hf:{source}"
    else:
        folder = Path(spec)
        if not is_hf_folder(folder):
            raise HFModelError(f"{folder}: not a Hugging Face model folder (config.json with model_type {' or '.join(FAMILIES)})")
        source, name, label = str(folder), folder.name, str(folder)
    try:
        import transformers
    except ImportError:
        raise HFModelError("Opening Hugging Face models needs transformers: pip install -r requirements.txt") from None

    config = _fetch(transformers.AutoConfig, source, label)
    if config.model_type not in FAMILIES:
        raise HFModelError(f"{label} is a {config.model_type} model; the Lab opens {', '.join(FAMILIES.values())} models")
    parameters = count_parameters(config)
    target = pick_device(device)
    check_memory(label, parameters, target)
    start = time.perf_counter()
    model = _fetch(transformers.AutoModelForSeq2SeqLM, source, label, attn_implementation="eager")
    exported = not is_hub_name(str(spec)) and (Path(source) / EXPORT_POSITIONS).exists()
    if exported:
        languages: Languages = LabExport.open(Path(source), model)
    else:
        tokenizer = _fetch(transformers.AutoTokenizer, source, label)
        languages = Marian(tokenizer, model, name) if config.model_type == "marian" else M2M100(tokenizer, model)
    return HFTranslator(model.to(target).eval(), languages, name, label, parameters, time.perf_counter() - start)


# --- language handling per family ------------------------------------------------------------


class Languages:
    """How one family of models is told the source and target language, and its vocabulary.

    Also stands in for core's `Tokenizer` where the analysis reads pieces (`encode`, `pieces`).
    """

    family = ""
    languages: list[str]
    directions: list[str]

    def __init__(self, tokenizer, model) -> None:
        self.hf = tokenizer
        start = model.generation_config.decoder_start_token_id
        self.start = [model.config.decoder_start_token_id if start is None else start]
        self.eos_id = model.config.eos_token_id
        self.pad_id = model.config.pad_token_id

    # what the tabs call
    def check_pair(self, src: str, tgt: str) -> None:
        for lang in (src, tgt):
            if lang not in self.languages:
                known = ", ".join(f"{code} ({language_name(code)})" for code in self.languages[:40])
                more = f" and {len(self.languages) - 40} more" if len(self.languages) > 40 else ""
                raise ValueError(f"Unknown language {lang!r}. This model knows: {known}{more}")
        if src == tgt:
            raise ValueError(f"Source and target are both {src!r}: pick two different languages")
        if f"{src}-{tgt}" not in self.directions:
            raise ValueError(f"This model does not translate {src}-{tgt}. It translates: {', '.join(self.directions[:40])}")

    def source(self, text: str, src: str, tgt: str) -> tuple[list[int], int, int]:
        """Encoder input ids, and how many special ids lead and trail the sentence's own pieces."""
        raise NotImplementedError

    def forced(self, tgt: str) -> list[int]:
        """Target tokens every translation into `tgt` starts with (after the decoder start)."""
        return []

    def target(self, text: str) -> list[int]:
        """The pieces of a given translation (for `step_by_step(follow=…)`), without specials."""
        return self.hf(text_target=text, add_special_tokens=False)["input_ids"]

    # the Tokenizer interface the analysis uses
    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def encode_batch(self, texts) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True).strip()

    def pieces(self, ids) -> list[str]:
        return list(self.hf.convert_ids_to_tokens([int(i) for i in ids]))

    def piece_id(self, piece: str) -> int:
        return int(self.hf.convert_tokens_to_ids(piece))

    def __len__(self) -> int:
        return len(self.hf)


def _all_pairs(sources: list[str], targets: list[str]) -> list[str]:
    return [f"{s}-{t}" for s in sources for t in targets if s != t]


class M2M100(Languages):
    """M2M100 (`__de__` tokens) and NLLB (`deu_Latn` tokens): source language token in front of the
    source, target language forced as the first generated token. Any pair of its languages."""

    def __init__(self, tokenizer, model) -> None:
        super().__init__(tokenizer, model)
        if getattr(tokenizer, "lang_code_to_id", None):  # M2M100Tokenizer: "de" → id of "__de__"
            self.family, self.codes = "M2M100", {code: code for code in tokenizer.lang_code_to_id}
            self.ids = dict(tokenizer.lang_code_to_id)
        else:  # NLLB: the codes are vocabulary tokens such as deu_Latn
            self.family = "NLLB"
            own = sorted(token for token in tokenizer.get_vocab() if NLLB_CODE.match(token))
            lab = {nllb: code for code, nllb in NLLB_CODES.items()}
            self.codes = {lab.get(token, token): token for token in own}
            self.ids = {code: int(tokenizer.convert_tokens_to_ids(token)) for code, token in self.codes.items()}
        if not self.codes:
            raise HFModelError("This M2M100-type model's tokenizer names no languages")
        self.languages = list(self.codes)
        self.directions = _all_pairs(self.languages, self.languages)
        self.legacy = bool(getattr(tokenizer, "legacy_behaviour", False))  # old NLLB: code after </s>

    def source(self, text: str, src: str, tgt: str) -> tuple[list[int], int, int]:
        pieces = self.encode(text)
        if self.legacy:
            return [*pieces, self.eos_id, self.ids[src]], 0, 2
        return [self.ids[src], *pieces, self.eos_id], 1, 1

    def forced(self, tgt: str) -> list[int]:
        return [self.ids[tgt]]

    def target(self, text: str) -> list[int]:
        return self.encode(text)  # one vocabulary for both sides; the language token is forced


class Marian(Languages):
    """opus-mt: one source language; one target, or several picked by a `>>xx<<` token."""

    def __init__(self, tokenizer, model, name: str) -> None:
        super().__init__(tokenizer, model)
        named = re.search(r"opus-mt-([^-/]+)-([^-/]+)$", name)
        source = getattr(tokenizer, "source_lang", None) or (named.group(1) if named else None)
        self.target_tokens = {m.group(1): token for token in tokenizer.get_vocab() if (m := re.fullmatch(r">>(.+)<<", token))}
        if self.target_tokens:
            self.family, targets = "Marian, several targets", sorted(self.target_tokens)
        else:
            target = getattr(tokenizer, "target_lang", None) or (named.group(2) if named else None)
            self.family, targets = "Marian", [target] if target else []
        if not source or not targets:
            raise HFModelError(
                f"{name}: cannot tell this Marian model's languages (no source_lang/target_lang "
                "in tokenizer_config.json, and the name is not opus-mt-SRC-TGT)"
            )
        self.languages = list(dict.fromkeys([source, *targets]))
        self.directions = _all_pairs([source], targets)

    def source(self, text: str, src: str, tgt: str) -> tuple[list[int], int, int]:
        lead = [self.piece_id(self.target_tokens[tgt])] if self.target_tokens else []
        return [*lead, *self.encode(text), self.eos_id], len(lead), 1


class LabExport(Languages):
    """A Lab model exported by `core.export`: core's SentencePiece model, `<2xx>` tags, core's ids."""

    family = "Lab model (M2M100 export)"

    def __init__(self, tokenizer, model) -> None:
        super().__init__(tokenizer, model)
        self.languages = list(tokenizer.languages)
        self.directions = _all_pairs(self.languages, self.languages)

    @classmethod
    def open(cls, folder: Path, model) -> LabExport:
        from safetensors.torch import load_file

        from core.export import set_hf_positions
        from core.tokenizer import Tokenizer

        set_hf_positions(model, load_file(str(folder / EXPORT_POSITIONS))["positions"])  # not saved by HF
        try:
            proto = (folder / "spm.model").read_bytes()
            probe = Tokenizer(proto, [])
        except (OSError, RuntimeError, ValueError) as error:
            raise HFModelError(f"{folder / 'spm.model'}: unreadable tokenizer ({error})") from None
        pieces = (probe.processor.id_to_piece(i) for i in range(len(probe)))
        languages = [m.group(1) for piece in pieces if (m := re.fullmatch(r"<2(\w+)>", piece))]
        return cls(Tokenizer(proto, languages), model)

    def source(self, text: str, src: str, tgt: str) -> tuple[list[int], int, int]:
        return self.hf.source_ids(text, tgt), 1, 1

    def target(self, text: str) -> list[int]:
        return self.hf.encode(text)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids)

    def pieces(self, ids) -> list[str]:
        return self.hf.pieces(ids)

    def piece_id(self, piece: str) -> int:
        return self.hf.processor.piece_to_id(piece)


# --- the translator --------------------------------------------------------------------------


class HFTranslator:
    """A Transformers encoder-decoder behind the `core.translator.Translator` interface."""

    def __init__(
        self, model, languages: Languages, name: str, source: str, parameters: int, load_seconds: float = 0.0, bf16: bool = False
    ) -> None:
        self.model = model
        # The Inside tab sizes its layer slider from `model.config.n_encoder_layers` (core's name).
        model.config.n_encoder_layers = model.config.encoder_layers
        self.tokenizer = languages
        self.device = next(model.parameters()).device
        self.source, self.parameters, self.load_seconds, self.bf16 = source, parameters, load_seconds, bf16
        self._name = name
        self.path = Path(source) if not is_hub_name(source) else None
        self.languages, self.directions = languages.languages, languages.directions
        self.config = self._lab_config()
        self._lock = threading.Lock()  # generate() is not re-entrant on one model

    @property
    def name(self) -> str:
        return self._name

    def _lab_config(self) -> dict:
        """What a Lab run's config.json would say, for the parts of the app that read one."""
        cfg = self.model.config
        return {
            "languages": self.languages,
            "directions": self.directions,
            "parameters": self.parameters,
            "engine": "transformers",
            "family": self.tokenizer.family,
            "source": self.source,
            "run": {
                "model": {
                    "n_encoder_layers": cfg.encoder_layers,
                    "n_decoder_layers": cfg.decoder_layers,
                    "d_model": cfg.d_model,
                    "n_heads": cfg.encoder_attention_heads,
                    "vocab_size": cfg.vocab_size,
                    "max_positions": cfg.max_position_embeddings,
                },
                "data": {"source": "builtin"},
            },
            "training": {"status": "pretrained", "steps": None},
            "corpus": "",  # trained on the maker's data, none of the Lab's corpora (no domain hint)
        }

    def summary(self) -> str:
        """The model card line: family, languages, size and memory, load time."""
        shown = ", ".join(language_name(code) for code in self.languages[:8])
        more = f" and {len(self.languages) - 8} more" if len(self.languages) > 8 else ""
        cfg = self.model.config
        return (
            f"**{self.name}** · Hugging Face {self.tokenizer.family} ({self.source}) · {shown}{more} · "
            f"{len(self.directions)} directions · {cfg.encoder_layers}+{cfg.decoder_layers} layers, "
            f"d_model {cfg.d_model} · {memory_line(self.parameters)} · loaded in {self.load_seconds:.1f} s"
        )

    # --- precision ------------------------------------------------------------------------

    def at_precision(self, precision: str) -> HFTranslator:
        """float32 (itself), bfloat16 (autocast, same model) or int8 (dynamic quantization, a CPU copy)."""
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}: pick one of {', '.join(PRECISIONS)}")
        if precision == "float32":
            return self
        model = self.model
        if precision == "int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu(), {torch.nn.Linear}, dtype=torch.qint8)
        return HFTranslator(
            model, self.tokenizer, self._name, self.source, self.parameters, self.load_seconds, bf16=precision == "bfloat16"
        )

    def _precision(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    # --- input ----------------------------------------------------------------------------

    def check_pair(self, src: str, tgt: str) -> None:
        self.tokenizer.check_pair(src, tgt)

    def _encode(self, text: str, src: str, tgt: str) -> tuple[list[int], int, int, bool]:
        """Source ids cut to half the positions the model has (room for the translation):
        (ids, leading specials, trailing specials, truncated)."""
        cleaned = _clean(text)
        ids, lead, tail = self.tokenizer.source(cleaned[:MAX_INPUT_CHARS], src, tgt)
        limit = self.model.config.max_position_embeddings // 2
        truncated = len(cleaned) > MAX_INPUT_CHARS or len(ids) > limit
        if len(ids) > limit:
            ids = ids[: limit - tail] + ids[-tail:]
        return ids, lead, tail, truncated

    def _batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their attention mask, [rows, longest]."""
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.tokenizer.pad_id] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        return ids, mask

    def _max_tokens(self, source_length: int, limits: SearchLimits) -> int:
        """Tokens a translation may have, </s> included: core's rule (`SearchLimits.per_sentence`)."""
        return min(int(source_length * limits.max_len_a) + limits.max_len_b, self.model.config.max_position_embeddings - 1)

    # --- scoring --------------------------------------------------------------------------

    def _log_probs(self, source: list[int], prefix: list[int], rows: list[list[int]]) -> list[float]:
        """log P(row | source) for each produced row (forced tokens excluded, a final </s> included)."""
        return [sum(tokens) for tokens in self._token_log_probs(source, prefix, rows)]

    @torch.inference_mode()
    def _token_log_probs(self, source: list[int], prefix: list[int], rows: list[list[int]]) -> list[list[float]]:
        """log P(token | source, tokens before it) of each token of each row, after `prefix`."""
        ids, mask = self._batch([source] * len(rows))
        inputs = [prefix + row for row in rows]
        width = max(len(r) for r in inputs)
        decoder = torch.tensor([r + [self.tokenizer.pad_id] * (width - len(r)) for r in inputs], device=self.device)
        with self._precision():
            logits = self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder[:, :-1]).logits
        log_probs = logits.float().log_softmax(-1)
        result = []
        for index, row in enumerate(rows):
            chosen = torch.tensor(row, device=self.device)
            steps = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(row), device=self.device)
            result.append(log_probs[index, steps, chosen].tolist() if row else [])
        return result

    def _generate(
        self, sources: list[list[int]], tgt: str, limits: SearchLimits, prefix: list[int] | None = None, **options
    ) -> list[list[tuple[list[int], bool]]]:
        """transformers' generate(): for each source, its hypotheses as (pieces, ended with </s>),
        forced tokens left out and cut at core's length limit (as core's searches cut them). With
        `prefix`, every hypothesis starts with those pieces (given to the decoder; they count
        towards the length limit, which grows by as many)."""
        forced = self.tokenizer.forced(tgt)
        n = options.get("num_return_sequences", 1)
        prefix = prefix or []
        if prefix:
            limits = SearchLimits(limits.max_len_a, limits.max_len_b + len(prefix))
        allowed = [self._max_tokens(len(s), limits) for s in sources]
        ids, mask = self._batch(sources)
        if prefix:  # the decoder starts from start + language + prefix; generate() continues it
            start = torch.tensor([self.tokenizer.start + forced + prefix] * len(sources), device=self.device)
            options |= {"decoder_input_ids": start, "max_new_tokens": max(1, max(allowed) - len(prefix))}
        else:
            options |= {"max_new_tokens": max(allowed) + len(forced), "forced_bos_token_id": forced[0] if forced else None}
        with self._lock, self._precision():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_length=None, **options)
        eos = self.tokenizer.eos_id  # generate() pads a finished row after its </s>
        results = []
        for index, allow in enumerate(allowed):
            hypotheses = []
            for sequence in out[index * n : (index + 1) * n].tolist():
                tokens, ended = [], False
                for token in sequence[len(self.tokenizer.start) + len(forced) :]:
                    if token == eos:
                        ended = True
                        break
                    tokens.append(token)
                if len(tokens) >= allow:  # no room left for </s>: cut at core's limit
                    tokens, ended = tokens[:allow], False
                hypotheses.append((tokens, ended))
            results.append(hypotheses)
        return results

    def _scored(
        self, source: list[int], tgt: str, hypotheses: list[tuple[list[int], bool]], length_penalty: float | None = None
    ) -> list[tuple[list[int], float, float]]:
        """(pieces, log P, score) of each hypothesis; the score is log P, or with `length_penalty`
        log P / |y|^length_penalty with </s> counted where it ended the translation (core's ranking)."""
        prefix = self.tokenizer.start + self.tokenizer.forced(tgt)
        rows = [tokens + [self.tokenizer.eos_id] * ended for tokens, ended in hypotheses]
        scored = []
        for (tokens, _), row, log_prob in zip(hypotheses, rows, self._log_probs(source, prefix, rows)):
            score = log_prob if length_penalty is None else log_prob / max(1, len(row)) ** length_penalty
            scored.append((tokens, log_prob, score))
        return scored

    # --- translation ----------------------------------------------------------------------

    def translate(
        self,
        texts: str | list[str],
        src: str,
        tgt: str,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        n_best: int = 1,
        batch_size: int = 64,
        limits: SearchLimits | None = None,
        workers: int | None = None,
        scores: bool = False,
        prefix: str = "",
        engine: str = "torch",
    ) -> list[Translation]:
        """Translate each line (empty lines give empty translations). beam_size 1 is greedy search.
        `workers` is accepted for the Translator interface; batches run one after the other.
        `scores=True` adds each piece's probability (and </s>'s) and the sentence confidence, from
        one teacher-forced pass; `prefix`: every translation starts with these words."""
        if engine != "torch":
            raise ValueError(f"Hugging Face models decode with transformers; engine={engine!r} is for Lab models")
        self.check_pair(src, tgt)
        if beam_size < 1 or n_best < 1:
            raise ValueError("beam_size and n_best must be at least 1")
        forced = self._prefix_ids(prefix)
        lines, results, encoded, batches = batched_lines(texts, lambda line: self._encode(line, src, tgt), batch_size)
        n_best = min(n_best, beam_size)
        options = {"num_beams": beam_size, "do_sample": False, "num_return_sequences": n_best}
        if beam_size > 1:
            options |= {"length_penalty": length_penalty, "early_stopping": False}
        for chunk in batches:
            found = self._generate([encoded[i][0] for i in chunk], tgt, limits or SearchLimits(), forced, **options)
            for i, hypotheses in zip(chunk, found):
                scored = self._scored(encoded[i][0], tgt, hypotheses, length_penalty if beam_size > 1 else None)
                scored.sort(key=lambda h: h[2], reverse=True)
                best = scored[0]
                results[i] = Translation(
                    lines[i],
                    self.tokenizer.decode(best[0]),
                    self.tokenizer.pieces(best[0]),
                    best[1],
                    best[2],
                    [(self.tokenizer.decode(t), s) for t, _, s in scored],
                    encoded[i][3],
                )
                if scores:
                    self._add_scores(results[i], encoded[i][0], tgt, best[0])
        return results  # type: ignore[return-value]

    def _prefix_ids(self, prefix: str | None) -> list[int] | None:
        """The target pieces a translation must start with; None for no prefix."""
        cleaned = clean_prefix(prefix)
        return self.tokenizer.target(cleaned) if cleaned else None

    def _add_scores(self, translation: Translation, source: list[int], tgt: str, tokens: list[int]) -> None:
        """Each piece's probability, then </s>'s, and their geometric mean (as core's `score_tokens`)."""
        start = self.tokenizer.start + self.tokenizer.forced(tgt)
        (log_probs,) = self._token_log_probs(source, start, [[*tokens, self.tokenizer.eos_id]])
        translation.piece_probs = [math.exp(p) for p in log_probs]
        translation.confidence = sentence_confidence(log_probs)

    def translate_to_all(self, text: str, src: str, **options) -> dict[str, Translation]:
        """One sentence into every language this model translates `src` into."""
        targets = [d.split("-", 1)[1] for d in self.directions if d.startswith(f"{src}-")]
        return {tgt: self.translate([text], src, tgt, **options)[0] for tgt in targets}

    def sample(
        self,
        text: str,
        src: str,
        tgt: str,
        n: int = 5,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        prefix: str = "",
    ) -> list[Candidate]:
        """`n` sampled translations, most probable first (log-probabilities at temperature 1, unfiltered),
        each starting with `prefix` if given."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        if n < 1:
            raise ValueError("n must be at least 1")
        if temperature <= 0:
            raise ValueError("temperature must be positive; use greedy search for temperature 0")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        ids = self._encode(text, src, tgt)[0]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            hypotheses = self._generate(
                [ids],
                tgt,
                SearchLimits(),
                self._prefix_ids(prefix),
                do_sample=True,
                num_beams=1,
                num_return_sequences=n,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )[0]
        candidates = [
            Candidate(self.tokenizer.decode(tokens), log_prob, self.tokenizer.pieces(tokens))
            for tokens, log_prob, _ in self._scored(ids, tgt, hypotheses)
        ]
        return sorted(candidates, key=lambda c: c.log_prob, reverse=True)

    @torch.inference_mode()
    def step_by_step(self, text: str, src: str, tgt: str, top_k: int = 10, follow: str | None = None) -> list[StepView]:
        """At each step, the top-k next pieces and the one taken (greedy, or the pieces of `follow`)."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        ids = self._encode(text, src, tgt)[0]
        source, mask = self._batch([ids])
        forced = self.tokenizer.target(follow) if follow is not None else None
        max_tokens = self._max_tokens(len(ids), SearchLimits()) if forced is None else len(forced) + 1
        eos = self.tokenizer.eos_id
        with self._precision():
            memory = self.model.get_encoder()(input_ids=source, attention_mask=mask)
        decoder = self.tokenizer.start + self.tokenizer.forced(tgt)
        steps = []
        for step in range(max_tokens):
            with self._precision():
                logits = self.model(
                    encoder_outputs=memory, attention_mask=mask, decoder_input_ids=torch.tensor([decoder], device=self.device)
                ).logits
            probs = logits[0, -1].float().softmax(-1)
            top = probs.topk(min(top_k, probs.shape[0]))
            if forced is not None:
                chosen = forced[step] if step < len(forced) else eos
            else:
                chosen = int(top.indices[0])
            candidates = list(zip(self.tokenizer.pieces(top.indices.tolist()), top.values.tolist()))
            steps.append(StepView(candidates, self.tokenizer.pieces([chosen])[0], float(probs[chosen])))
            if chosen == eos:
                break
            decoder.append(chosen)
        return steps

    @torch.inference_mode()
    def next_pieces(self, text: str, src: str, tgt: str, prefix: str = "", top_k: int = 10) -> list[tuple[str, float]]:
        """The decoder as a language model: the `top_k` most probable next pieces after the start of
        a translation `prefix`, with their probabilities, most probable first."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        source, mask = self._batch([self._encode(text, src, tgt)[0]])
        decoder = self.tokenizer.start + self.tokenizer.forced(tgt) + (self._prefix_ids(prefix) or [])
        with self._precision():
            logits = self.model(input_ids=source, attention_mask=mask, decoder_input_ids=torch.tensor([decoder], device=self.device)).logits
        probs = logits[0, -1].float().softmax(-1)
        top = probs.topk(min(top_k, probs.shape[0]))
        return list(zip(self.tokenizer.pieces(top.indices.tolist()), top.values.tolist()))

    def beam_tree(
        self, text: str, src: str, tgt: str, beam_size: int = 4, length_penalty: float = 1.0, n_best: int | None = None, prefix: str = ""
    ):
        """Not for Hugging Face models: transformers' generate() does not report the candidates it drops."""
        raise ValueError(
            "The beam search tree is drawn for Lab models only: transformers' generate(), which "
            "searches for Hugging Face models, does not report the candidates it drops."
        )

    @torch.inference_mode()
    def attention(
        self, text: str, src: str, tgt: str, beam_size: int = 1, length_penalty: float = 1.0, forced: str | None = None
    ) -> AttentionView:
        """Translate (or take the given translation `forced`), then replay that translation through
        the model with attention maps on.

        Rows are the steps: for a model with a forced language token, the first row is the step
        that produced it (so `target_pieces` starts with it)."""
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        if forced is None:
            translation = self.translate([text], src, tgt, beam_size=beam_size, length_penalty=length_penalty)[0]
            target = [self.tokenizer.piece_id(piece) for piece in translation.pieces]
        else:
            self.check_pair(src, tgt)
            target = self._prefix_ids(forced) or []
            translation = Translation(text, self.tokenizer.decode(target), self.tokenizer.pieces(target), 0.0, 0.0)
        ids = self._encode(text, src, tgt)[0]
        forced = self.tokenizer.forced(tgt)
        source, mask = self._batch([ids])
        decoder = torch.tensor([self.tokenizer.start + forced + target], device=self.device)
        out = self.model(input_ids=source, attention_mask=mask, decoder_input_ids=decoder, output_attentions=True)

        def stack(layers) -> np.ndarray:
            return torch.stack([w[0] for w in layers]).float().cpu().numpy()

        return AttentionView(
            translation=translation,
            source_pieces=self.tokenizer.pieces(ids),
            target_pieces=self.tokenizer.pieces([*forced, *target, self.tokenizer.eos_id]),
            encoder_self=stack(out.encoder_attentions),
            decoder_self=stack(out.decoder_attentions),
            cross=stack(out.cross_attentions),
        )

    def alignments(
        self,
        text: str,
        src: str,
        tgt: str,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        layer: int | None = None,
        threshold: float | None = None,
        forced: str | None = None,
    ):
        """Word alignments from the cross-attention of decoder `layer` (`core.alignment`)."""
        from core import alignment

        view = self.attention(text, src, tgt, beam_size=beam_size, length_penalty=length_penalty, forced=forced)
        return alignment.of_attention(view, alignment.DEFAULT_LAYER if layer is None else layer, threshold=threshold)

    def _embed_source(self, ids: torch.Tensor) -> torch.Tensor:
        """What the encoder adds its positions to: the token embeddings, scaled as it scales them
        (Marian multiplies after the lookup; M2M100's embedding scales itself)."""
        encoder = self.model.get_encoder()
        embedded = encoder.embed_tokens(ids)
        if not hasattr(encoder.embed_tokens, "embed_scale"):
            embedded = embedded * getattr(encoder, "embed_scale", 1.0)
        return embedded

    def attribution(
        self, text: str, src: str, tgt: str, beam_size: int = 1, length_penalty: float = 1.0, steps: int = DEFAULT_STEPS
    ) -> AttributionView:
        """Integrated gradients of each produced piece (and </s>) over the source's token embeddings
        (`inputs_embeds`), from a sentence of padding pieces (`core.attribution`)."""
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        translation = self.translate([text], src, tgt, beam_size=beam_size, length_penalty=length_penalty)[0]
        ids = self._encode(text, src, tgt)[0]
        lead = self.tokenizer.start + self.tokenizer.forced(tgt)
        target = [*(self.tokenizer.piece_id(piece) for piece in translation.pieces), self.tokenizer.eos_id]
        source, mask = self._batch([ids])
        decoder = torch.tensor([lead + target[:-1]], device=self.device)
        rows = torch.arange(len(lead) - 1, len(lead) - 1 + len(target), device=self.device)
        chosen = torch.tensor(target, device=self.device)

        def f(embedded: torch.Tensor) -> torch.Tensor:  # [N, S, d] -> the probability of each piece [N, T]
            n = embedded.shape[0]
            logits = self.model(inputs_embeds=embedded, attention_mask=mask.expand(n, -1), decoder_input_ids=decoder.expand(n, -1)).logits
            return logits.float().softmax(-1)[:, rows, chosen]

        with torch.no_grad():
            inputs = self._embed_source(source)[0]
            baseline = self._embed_source(torch.full_like(source, self.tokenizer.pad_id))[0]
        found = integrated_gradients(f, inputs, baseline, steps)
        return AttributionView(
            translation,
            self.tokenizer.pieces(ids),
            self.tokenizer.pieces(target),
            found.scores.cpu().numpy(),
            found.difference.cpu().numpy(),
            steps,
            found.gap,
        )

    @torch.inference_mode()
    def sentence_embeddings(self, texts: list[str], lang: str, batch_size: int = 64) -> np.ndarray:
        """Mean-pooled encoder states of each sentence at every layer: [layers + 1, N, d_model],
        language tokens and </s> left out of the mean.

        Every sentence gets the same target, as in core: the model's first language, or (Marian,
        where the target is part of the input) the first language `lang` translates into."""
        if lang not in self.languages:
            raise ValueError(f"Unknown language {lang!r}")
        tgt = self.languages[0]
        if isinstance(self.tokenizer, Marian):
            tgt = next((d.split("-", 1)[1] for d in self.directions if d.startswith(f"{lang}-")), self.directions[0].split("-", 1)[1])
        layers = []
        for start in range(0, len(texts), batch_size):
            encoded = [self._encode(t, lang, tgt) for t in texts[start : start + batch_size]]
            source, mask = self._batch([e[0] for e in encoded])
            pieces = torch.zeros_like(mask, dtype=torch.float)
            for row, (ids, lead, tail, _) in enumerate(encoded):
                pieces[row, lead : len(ids) - tail] = 1.0
            weights = (pieces / pieces.sum(1, keepdim=True).clamp(min=1))[None, :, :, None]
            with self._precision():
                states = self.model.get_encoder()(input_ids=source, attention_mask=mask, output_hidden_states=True)
            layers.append((torch.stack(states.hidden_states).float() * weights).sum(dim=2))
        return torch.cat(layers, dim=1).cpu().numpy()
