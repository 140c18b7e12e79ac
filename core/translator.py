"""A loaded model ready to use: translate, sample, look at attention and at each decoding step.

`core.load(path)` returns a `Translator`. It works on plain strings and returns plain data
(strings, floats, numpy arrays), so the UI, the CLI and notebooks all call the same methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core import alignment, checkpoint, compiled, quantize
from core.attribution import DEFAULT_STEPS, attribute
from core.confidence import sentence_confidence
from core.config import ModelConfig
from core.decoding import (
    DEFAULT_LIMITS,
    PATIENCE,
    BeamTree,
    Hypothesis,
    SearchLimits,
    beam_search,
    greedy,
    sample,
    score_tokens,
    step_by_step,
)
from core.device import pick_device
from core.languages import language_name
from core.model import AttentionMaps, Transformer
from core.parallel import parallel_map, workers_for
from core.tokenizer import Tokenizer
from core.vocab import BOS_ID, EOS_ID, PAD_ID

MAX_INPUT_CHARS = 5000  # per line, before tokenization; longer lines are cut with a notice
PRECISIONS = ("float32", "bfloat16", "int8")  # what `Translator.at_precision` accepts


@dataclass
class Translation:
    source: str
    text: str
    pieces: list[str]
    log_prob: float
    score: float
    n_best: list[tuple[str, float]] = field(default_factory=list)  # (text, score), best first
    truncated: bool = False  # the source was longer than the model reads and was cut
    # With translate(scores=True): the model's probability of each piece of `pieces`, then of
    # </s> (one more than the pieces), and their geometric mean (`core.confidence`).
    piece_probs: list[float] = field(default_factory=list)
    confidence: float | None = None


@dataclass
class Candidate:
    text: str
    log_prob: float
    pieces: list[str]


@dataclass
class StepView:
    candidates: list[tuple[str, float]]  # (piece, probability), most probable first
    chosen: str
    chosen_probability: float


@dataclass
class BeamTreeView:
    """The beam search tree of one sentence (`decoding.BeamTree`) with pieces as text: each node a
    dict with parent, piece, step, log_prob, status and rank (see `TreeNode`)."""

    translation: Translation
    nodes: list[dict]
    beam_size: int


@dataclass
class AttentionView:
    """Attention of the translation shown, per layer and head, as numpy arrays [L, H, queries, keys]."""

    translation: Translation
    source_pieces: list[str]  # <2xx> pieces… </s>
    target_pieces: list[str]  # produced pieces … </s> (row i = the step that produced piece i)
    encoder_self: np.ndarray
    decoder_self: np.ndarray
    cross: np.ndarray


@dataclass
class AttributionView:
    """Input attribution of the translation shown (`core.attribution`): row i = produced piece i,
    column j = source piece j, as in `AttentionView.cross`."""

    translation: Translation
    source_pieces: list[str]  # <2xx> pieces… </s>
    target_pieces: list[str]  # produced pieces … </s>
    scores: np.ndarray  # [target, source]: integrated gradients of each piece's probability
    difference: np.ndarray  # [target]: p(piece | sentence) − p(piece | baseline), what each row adds up to
    steps: int
    gap: float  # the largest distance of a row's sum from `difference` (the Riemann sum's error)


class Translator:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, config: dict, path: Path | None = None, bf16: bool = False) -> None:
        self.model = model.eval()
        self.bf16 = bf16
        self.device = next(model.parameters()).device
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.languages: list[str] = list(config["languages"])
        self.directions: list[str] = list(config.get("directions", []))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Translator:
        folder = Path(path)
        config = checkpoint.read_config(folder)
        model_config = ModelConfig(**config["run"]["model"])
        model = Transformer(model_config)
        state = checkpoint.load_weights(folder / checkpoint.WEIGHTS)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise checkpoint.CheckpointError(f"{folder / checkpoint.WEIGHTS}: weights do not match config.json ({error})") from error
        try:
            tokenizer = Tokenizer.load(folder / checkpoint.TOKENIZER, config["languages"])
        except (RuntimeError, OSError, ValueError) as error:
            raise checkpoint.CheckpointError(f"{folder / checkpoint.TOKENIZER}: unreadable tokenizer ({error})") from error
        return cls(model.to(pick_device(device)), tokenizer, config, folder)

    def quantized(self) -> Translator:
        """A copy whose linear layers hold int8 weights (dynamic quantization: activations are
        quantized on the fly, `core.quantize`). CPU only; smaller and often faster, at a small cost in BLEU."""
        return Translator(quantize.int8_copy(self.model), self.tokenizer, self.config, self.path)

    def in_bf16(self) -> Translator:
        """A translator sharing this one's model whose searches run under bfloat16 autocast: the
        matmuls in bf16, softmax, LayerNorm and log-probabilities in float32. It pays where the
        hardware multiplies bf16 fast (CPUs with AVX512-BF16 or AMX, GPUs) and the matmuls dominate,
        and costs a little BLEU; elsewhere it is slower. Speed and BLEU of both precisions: the
        README's speed section (bench/results.json)."""
        return Translator(self.model, self.tokenizer, self.config, self.path, bf16=True)

    def at_precision(self, precision: str) -> Translator:
        """This translator at another arithmetic precision, one of PRECISIONS: "float32" (itself),
        "bfloat16" (`in_bf16`, same model) or "int8" (`quantized`, a CPU copy)."""
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}: pick one of {', '.join(PRECISIONS)}")
        if precision == "int8":
            return self.quantized()
        return self.in_bf16() if precision == "bfloat16" else self

    def _precision(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        return pad(rows, self.device)

    @property
    def name(self) -> str:
        return self.path.name if self.path else "model"

    # --- input checks ---------------------------------------------------------------------

    def check_pair(self, src: str, tgt: str) -> None:
        for lang in (src, tgt):
            if lang not in self.languages:
                known = ", ".join(f"{code} ({language_name(code)})" for code in self.languages)
                raise ValueError(f"Unknown language {lang!r}. This model knows: {known}")
        if src == tgt:
            raise ValueError(f"Source and target are both {src!r}: pick two different languages")

    def _encode(self, text: str, tgt: str) -> tuple[list[int], bool]:
        """Source ids `<2tgt> … </s>`, cut to what the model can read."""
        cleaned = _clean(text)
        truncated = len(cleaned) > MAX_INPUT_CHARS
        ids = self.tokenizer.source_ids(cleaned[:MAX_INPUT_CHARS], tgt)
        limit = self.model.config.max_positions // 2  # leave room for a longer translation
        if len(ids) > limit:
            ids, truncated = ids[: limit - 1] + [EOS_ID], True
        return ids, truncated

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
        limits: SearchLimits = DEFAULT_LIMITS,
        workers: int | None = None,
        scores: bool = False,
        prefix: str = "",
        engine: str = "torch",
        patience: float = PATIENCE,
    ) -> list[Translation]:
        """Translate each line; empty lines give empty translations. beam_size 1 is greedy search.
        Several batches are decoded at once on a multi-core CPU (`core.parallel`); `workers` sets
        how many (default: one per CPU thread torch uses, 1 on a GPU).

        `scores=True` adds each piece's probability and the sentence confidence (one more
        teacher-forced pass per batch). `prefix`: every translation starts with these words and
        the model completes it (the prefix's pieces count towards the length limit's extra room).
        `patience`: a beam search stops once beam_size × patience hypotheses have finished.

        `engine="ctranslate2"` (or "ctranslate2-int8") decodes the same weights with CTranslate2,
        for bulk work: core's translations (greedy exactly; beam search see `core.ct2`), no scores or prefix.
        On a CPU the PyTorch engine starts building its compiled decoder step in the background
        (`core.compiled`: the same translations, faster once ready)."""
        if engine != "torch":
            from core import ct2

            ct2.check_engine(engine)
            ct2.check_options(self, scores, prefix)
            return ct2.translate(self, texts, src, tgt, engine, beam_size, length_penalty, n_best, batch_size, limits, workers, patience)
        self.check_pair(src, tgt)
        if beam_size < 1 or n_best < 1:
            raise ValueError("beam_size and n_best must be at least 1")
        if self.device.type == "cpu":
            compiled.start_building()
        forced = self._prefix_ids(prefix)
        if forced:
            limits = SearchLimits(limits.max_len_a, limits.max_len_b + len(forced))
        lines, results, encoded, batches = batched_lines(texts, lambda line: self._encode(line, tgt), batch_size)

        def search(chunk: list[int]) -> list[list[Hypothesis]]:
            source = self._pad([encoded[i][0] for i in chunk])
            with self._precision():  # autocast is per thread: entered by the thread that searches
                if beam_size == 1:
                    found = [[h] for h in greedy(self.model, source, limits, forced)]
                else:
                    found = beam_search(self.model, source, beam_size, length_penalty, n_best, limits, forced, patience=patience)
                if scores:
                    for hyps, piece_log_probs in zip(found, score_tokens(self.model, source, [h[0].tokens for h in found])):
                        hyps[0].piece_log_probs = piece_log_probs
            return found

        found = parallel_map(search, batches, workers_for(self.device, workers))
        for chunk, hypotheses in zip(batches, found):
            for i, hyps in zip(chunk, hypotheses):
                results[i] = self._translation(lines[i], hyps, encoded[i][1])
        return results  # type: ignore[return-value]

    def _prefix_ids(self, prefix: str | None) -> list[int] | None:
        """The pieces a translation must start with; None for no prefix."""
        cleaned = clean_prefix(prefix)
        return self.tokenizer.encode(cleaned) if cleaned else None

    def _translation(self, source: str, hypotheses: list[Hypothesis], truncated: bool) -> Translation:
        best = hypotheses[0]
        piece_log_probs = best.piece_log_probs
        return Translation(
            source=source,
            text=self.tokenizer.decode(best.tokens),
            pieces=self.tokenizer.pieces(best.tokens),
            log_prob=best.log_prob,
            score=best.score,
            n_best=[(self.tokenizer.decode(h.tokens), h.score) for h in hypotheses],
            truncated=truncated,
            piece_probs=[] if piece_log_probs is None else [float(np.exp(p)) for p in piece_log_probs],
            confidence=None if piece_log_probs is None else sentence_confidence(piece_log_probs),
        )

    def translate_to_all(self, text: str, src: str, **options) -> dict[str, Translation]:
        """One sentence into every other language of the model."""
        return {tgt: self.translate([text], src, tgt, **options)[0] for tgt in self.languages if tgt != src}

    def pivot(self, texts: list[str], src: str, tgt: str, via: str = "en", **options) -> list[Translation]:
        """Translate src → via → tgt (the classic alternative to a direct or zero-shot direction)."""
        middle = self.translate(texts, src, via, **options)
        return self.translate([m.text for m in middle], via, tgt, **options)

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
        """`n` sampled translations, most probable first (each starting with `prefix`, if given)."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        if n < 1:
            raise ValueError("n must be at least 1")
        ids, _ = self._encode(text, tgt)
        forced = self._prefix_ids(prefix)
        limits = SearchLimits(DEFAULT_LIMITS.max_len_a, DEFAULT_LIMITS.max_len_b + len(forced or []))
        with self._precision():
            hypotheses = sample(self.model, self._pad([ids]), n, temperature, top_k, top_p, seed, limits, forced)[0]
        candidates = [Candidate(self.tokenizer.decode(h.tokens), h.log_prob, self.tokenizer.pieces(h.tokens)) for h in hypotheses]
        return sorted(candidates, key=lambda c: c.log_prob, reverse=True)

    def step_by_step(self, text: str, src: str, tgt: str, top_k: int = 10, follow: str | None = None) -> list[StepView]:
        """At each step, the top-k next pieces and the one taken (greedy, or the pieces of `follow`)."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        ids, _ = self._encode(text, tgt)
        forced = self.tokenizer.encode(follow) if follow is not None else None
        with self._precision():
            steps = step_by_step(self.model, self._pad([ids]), top_k, forced)
        piece = self.tokenizer.processor.id_to_piece
        return [StepView([(piece(i), p) for i, p in s.candidates], piece(s.chosen), s.chosen_probability) for s in steps]

    def next_pieces(self, text: str, src: str, tgt: str, prefix: str = "", top_k: int = 10) -> list[tuple[str, float]]:
        """The decoder as a language model: the `top_k` most probable next pieces after the start of
        a translation `prefix`, with their probabilities, most probable first."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        ids, _ = self._encode(text, tgt)
        forced = self._prefix_ids(prefix) or []
        with self._precision():
            after = step_by_step(self.model, self._pad([ids]), top_k, forced)[len(forced)]
        piece = self.tokenizer.processor.id_to_piece
        return [(piece(i), p) for i, p in after.candidates]

    def beam_tree(
        self, text: str, src: str, tgt: str, beam_size: int = 4, length_penalty: float = 1.0, n_best: int | None = None, prefix: str = ""
    ) -> BeamTreeView:
        """Beam search on one sentence, with every candidate it kept, finished and dropped at each
        step (`decoding.BeamTree`). Beam size 1 is greedy search (length penalty 0): one branch.
        The n-best marked in the tree (`rank`) are those of `translate(..., n_best=n_best)`."""
        self.check_pair(src, tgt)
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        if beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if beam_size == 1:
            length_penalty = 0.0  # beam 1 ranked by raw probability is greedy search
        n_best = beam_size if n_best is None else min(n_best, beam_size)
        ids, truncated = self._encode(text, tgt)
        forced = self._prefix_ids(prefix)
        limits = SearchLimits(DEFAULT_LIMITS.max_len_a, DEFAULT_LIMITS.max_len_b + len(forced or []))
        tree = BeamTree()
        with self._precision():
            hypotheses = beam_search(self.model, self._pad([ids]), beam_size, length_penalty, n_best, limits, forced, tree)[0]
        piece = self.tokenizer.processor.id_to_piece
        nodes = [
            {
                "parent": n.parent,
                "piece": "<s>" if n.parent is None else piece(n.token),
                "step": n.step,
                "log_prob": n.log_prob,
                "status": n.status,
                "rank": n.rank,
            }
            for n in tree.nodes
        ]
        return BeamTreeView(self._translation(text, hypotheses, truncated), nodes, beam_size)

    @torch.inference_mode()
    def attention(
        self, text: str, src: str, tgt: str, beam_size: int = 1, length_penalty: float = 1.0, forced: str | None = None
    ) -> AttentionView:
        """Translate, then replay that very translation through the model with attention maps on.
        With `forced` (e.g. a reference translation) that text is replayed instead of searching;
        its `Translation` then holds the text and pieces, with no scores."""
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        if forced is None:
            translation = self.translate([text], src, tgt, beam_size=beam_size, length_penalty=length_penalty)[0]
        else:
            self.check_pair(src, tgt)
            pieces = self.tokenizer.pieces(self._prefix_ids(forced) or [])
            translation = Translation(text, _clean(forced), pieces, 0.0, 0.0)
        ids, _ = self._encode(text, tgt)
        # Replay the exact pieces of the hypothesis (re-encoding its text could split differently).
        target = [self.tokenizer.processor.piece_to_id(piece) for piece in translation.pieces]
        maps = AttentionMaps()
        self.model(self._pad([ids]), self._pad([[BOS_ID, *target]]), maps=maps)

        def stack(layers: list[torch.Tensor]) -> np.ndarray:
            return torch.stack([w[0] for w in layers]).float().cpu().numpy()

        return AttentionView(
            translation=translation,
            source_pieces=self.tokenizer.pieces(ids),
            target_pieces=self.tokenizer.pieces([*target, EOS_ID]),
            encoder_self=stack(maps.encoder_self),
            decoder_self=stack(maps.decoder_self),
            cross=stack(maps.cross),
        )

    def alignments(
        self,
        text: str,
        src: str,
        tgt: str,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        layer: int = alignment.DEFAULT_LAYER,
        threshold: float | None = None,
        forced: str | None = None,
    ) -> alignment.AlignmentView:
        """Translate (or replay `forced`), then align its words to the source's from the
        cross-attention of decoder `layer` (`core.alignment`)."""
        view = self.attention(text, src, tgt, beam_size=beam_size, length_penalty=length_penalty, forced=forced)
        return alignment.of_attention(view, layer, threshold=threshold)

    def attribution(
        self, text: str, src: str, tgt: str, beam_size: int = 1, length_penalty: float = 1.0, steps: int = DEFAULT_STEPS
    ) -> AttributionView:
        """Translate, then attribute each produced piece (and </s>) to the source pieces by
        integrated gradients over the source embeddings with `steps` points (`core.attribution`)."""
        if not _clean(text):
            raise ValueError("Enter a sentence to translate")
        translation = self.translate([text], src, tgt, beam_size=beam_size, length_penalty=length_penalty)[0]
        ids, _ = self._encode(text, tgt)
        target = [*(self.tokenizer.processor.piece_to_id(piece) for piece in translation.pieces), EOS_ID]
        found = attribute(self.model, self._pad([ids]), target, steps)
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
        """Mean-pooled encoder states of each sentence at every layer: [layers + 1, N, d_model].

        Every sentence gets the same target tag (the model's first language) and the tag and
        </s> are left out of the mean, so only the sentence's own pieces shape its vector.
        """
        if lang not in self.languages:
            raise ValueError(f"Unknown language {lang!r}")
        tag = self.languages[0]
        layers = []
        for start in range(0, len(texts), batch_size):
            ids = [self._encode(t, tag)[0] for t in texts[start : start + batch_size]]
            source = self._pad(ids)
            pieces = (source != PAD_ID) & (source != EOS_ID)
            pieces[:, 0] = False
            weights = (pieces.float() / pieces.sum(1, keepdim=True).clamp(min=1))[None, :, :, None]
            states = torch.stack(self.model.encoder_states(source))
            layers.append((states * weights).sum(dim=2))
        return torch.cat(layers, dim=1).cpu().numpy()


def _clean(text: str) -> str:
    """Drop control characters (they carry no meaning for the model) and squeeze whitespace."""
    return " ".join("".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text).split())


def clean_prefix(prefix: str | None) -> str:
    """A prefix the translation must start with, cleaned as a line; too long raises ValueError."""
    cleaned = _clean(prefix or "")
    if len(cleaned) > MAX_INPUT_CHARS:
        raise ValueError(f"The prefix is longer than {MAX_INPUT_CHARS} characters")
    return cleaned


def batched_lines(
    texts: str | Sequence[str], encode: Callable[[str], tuple], batch_size: int
) -> tuple[list[str], list[Translation | None], dict[int, tuple], list[list[int]]]:
    """What every engine's `translate` starts with: the lines, their results (an empty Translation
    for each empty line, None for the others), `encode(line)` of each other line by its index (ids
    first), and those indices in batches. Longest first, in batches of similar length: little
    padding, and the slowest batch is met first so progress estimates are honest."""
    lines = [texts] if isinstance(texts, str) else list(texts)
    results: list[Translation | None] = [None] * len(lines)
    encoded = {}
    for index, line in enumerate(lines):
        if _clean(line):
            encoded[index] = encode(line)
        else:
            results[index] = Translation(line, "", [], 0.0, 0.0, [("", 0.0)])
    order = sorted(encoded, key=lambda i: len(encoded[i][0]), reverse=True)
    return lines, results, encoded, [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pad(rows: list[list[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """Right-pad id lists into one [rows, longest] tensor."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=device)
