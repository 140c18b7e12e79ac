"""Looking at what a multilingual model learned: zero-shot directions (with the off-target rate),
the shared sentence space, and how the shared vocabulary treats each language. The transfer
experiment, which trains models, has its own module: `core.transfer`.

Every function takes plain Python (translators, dicts of sentences) and returns plain data
(dicts of floats, lists, numpy arrays), so a UI handler, the CLI or a notebook can call it in
one line and hand the result to `core.plots`:

- `zero_shot_report`      → `plots.direction_matrix(r["bleu"], r["languages"], zero_shot=set(r["zero_shot"]))`
                            and `plots.bleu_bars({"direct": r["zero_shot_bleu"], "pivot": r["pivot_bleu"]})`
- `embedding_space`       → `plots.embedding_scatter(r["points"], r["languages"], r["sentence_ids"], r["labels"])`
- `retrieval_accuracy`    → `plots.line_chart(*to_series(acc), "encoder layer", "top-1 accuracy", title)`
- `sentence_space`        → both of the above from one pass over the encoder, for a test set
- `vocab_size_sweep`      → `plots.line_chart(*to_series(sweep), "vocabulary size", "pieces per word", title)`
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from core.evaluate import Progress, corpus_scores, evaluate
from core.languages import direction, parse_directions, split_direction
from core.tokenizer import Tokenizer
from core.translator import Translator


def _mean(values: Iterable[float]) -> float | None:
    """Mean, or None when there is nothing to average (JSON-friendly, unlike NaN)."""
    values = list(values)
    return sum(values) / len(values) if values else None


def to_series(nested: Mapping[Any, Mapping[str, float]]) -> tuple[list[Any], dict[str, list[float]]]:
    """{x: {name: y}} → (xs, {name: [y per x]}): the shape `plots.line_chart` wants.

    Used for retrieval accuracy ({layer: {pair: accuracy}}) and the vocabulary sweep
    ({size: {lang: fertility}}).
    """
    xs = list(nested)
    names = list(dict.fromkeys(name for row in nested.values() for name in row))
    return xs, {name: [nested[x].get(name, float("nan")) for x in xs] for name in names}


# --- 1. zero-shot directions ---------------------------------------------------------------


def zero_shot_report(
    translator: Translator,
    split_lines: dict[str, list[str]],
    languages: Sequence[str] | None = None,
    beam_size: int = 4,
    max_sentences: int | None = None,
    via: str = "en",
    progress: Progress | None = None,
    engine: str = "torch",
) -> dict[str, Any]:
    """BLEU of every direction among `languages`, split into what the model was trained on
    (supervised) and what it never saw (zero-shot), and for each zero-shot direction the BLEU of
    the classic alternative: translating through `via` (pivoting, two supervised hops).

    Zero-shot is usually far below pivoting: the model often answers in the wrong language
    ("off-target"), because it never had to produce that target from that source.
    `languages` defaults to the model's languages that `split_lines` has; `engine` translates
    both the direct and the pivoted directions ("torch" or "ctranslate2[-int8]", `core.ct2`).
    """
    languages = list(languages) if languages else [lang for lang in translator.languages if lang in split_lines]
    for lang in languages:
        if lang not in translator.languages or lang not in split_lines:
            raise ValueError(
                f"{lang!r} must be known to the model ({', '.join(translator.languages)}) "
                f"and present in the test data ({', '.join(split_lines)})"
            )
    if len(languages) < 2:
        raise ValueError("A zero-shot report needs at least two languages")
    directions = parse_directions("all", languages)
    trained = set(translator.directions)
    zero_shot = [d for d in directions if trained and d not in trained]
    pivotable = [d for d in zero_shot if via in translator.languages and via not in split_direction(d)]
    # Progress: one unit per direct direction, two per pivoted one (two translation passes).
    total = len(directions) + 2 * len(pivotable)

    def direct_progress(fraction: float, message: str) -> None:
        progress(fraction * len(directions) / total, message)

    report = evaluate(
        translator,
        split_lines,
        directions,
        beam_size=beam_size,
        max_sentences=max_sentences,
        progress=direct_progress if progress else None,
        off_target=True,
        engine=engine,
    )
    rows: dict[str, dict[str, Any]] = {}
    for name, score in report.scores.items():
        rows[name] = {
            "kind": "zero-shot" if name in zero_shot else "supervised",
            "bleu": score.bleu,
            "chrf": score.chrf,
            "off_target": score.off_target,
            "pivot_bleu": None,
            "pivot_chrf": None,
            "sentences": score.sentences,
        }
    for index, name in enumerate(pivotable):
        src, tgt = split_direction(name)
        if progress:
            progress((len(directions) + 2 * index) / total, f"Pivoting {src}→{via}→{tgt}")
        translations = translator.pivot(split_lines[src][:max_sentences], src, tgt, via=via, beam_size=beam_size, engine=engine)
        bleu, chrf, _, _ = corpus_scores([t.text for t in translations], split_lines[tgt][:max_sentences])
        rows[name].update(pivot_bleu=bleu, pivot_chrf=chrf)
    if progress:
        progress(1.0, "Done")
    supervised = [d for d in directions if d not in zero_shot]
    return {
        "model": translator.name,
        "languages": languages,
        "via": via,
        "beam_size": beam_size,
        "max_sentences": max_sentences,
        "engine": report.engine,
        "directions": rows,
        "zero_shot": zero_shot,
        "supervised": supervised,
        "bleu": {d: rows[d]["bleu"] for d in directions},
        "zero_shot_bleu": {d: rows[d]["bleu"] for d in zero_shot},
        "pivot_bleu": {d: rows[d]["pivot_bleu"] for d in pivotable},
        "summary": {
            "mean_supervised_bleu": _mean(rows[d]["bleu"] for d in supervised),
            "mean_zero_shot_bleu": _mean(rows[d]["bleu"] for d in zero_shot),
            "mean_pivot_bleu": _mean(rows[d]["pivot_bleu"] for d in pivotable),
            "mean_supervised_off_target": _mean(rows[d]["off_target"] for d in supervised if rows[d]["off_target"] is not None),
            "mean_zero_shot_off_target": _mean(rows[d]["off_target"] for d in zero_shot if rows[d]["off_target"] is not None),
        },
        "bleu_signature": report.bleu_signature,
        "chrf_signature": report.chrf_signature,
    }


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def zero_shot_table(report: dict[str, Any]) -> str:
    """`zero_shot_report` as a Markdown table (CLI, UI)."""
    lines = [f"| direction | kind | BLEU | off-target | pivot via {report['via']} BLEU |", "| --- | --- | ---: | ---: | ---: |"]
    for name, row in report["directions"].items():
        lines.append(f"| {name} | {row['kind']} | {_score(row['bleu'])} | {_share(row['off_target'])} | {_score(row['pivot_bleu'])} |")
    summary = report["summary"]
    lines.append(
        f"| **mean supervised** | | **{_score(summary['mean_supervised_bleu'])}** | **{_share(summary['mean_supervised_off_target'])}** | |"
    )
    lines.append(
        f"| **mean zero-shot** | | **{_score(summary['mean_zero_shot_bleu'])}** "
        f"| **{_share(summary['mean_zero_shot_off_target'])}** | **{_score(summary['mean_pivot_bleu'])}** |"
    )
    lines.append(
        "\nOff-target: the share of outputs in another of the model's languages (language identification "
        "by py3langid among the model's languages)."
    )
    return "\n".join(lines)


# --- 3. the shared sentence space ----------------------------------------------------------


def shared_languages(languages: Sequence[str], split_lines: Mapping[str, Sequence[str]]) -> list[str]:
    """The languages of `languages` (a model's) that the test data `split_lines` has, in that order;
    ValueError when there are fewer than two."""
    shared = [lang for lang in languages if lang in split_lines]
    if len(shared) < 2:
        raise ValueError(f"The test set ({', '.join(split_lines)}) shares fewer than two languages with the model ({', '.join(languages)})")
    return shared


def parallel_sentences(
    languages: Sequence[str], split_lines: Mapping[str, Sequence[str]], max_sentences: int | None = None
) -> dict[str, list[str]]:
    """{lang: lines} of the `shared_languages`: the first `max_sentences` rows (all when None) where
    none of them is blank, so line i of each translates line i of the others."""
    shared = shared_languages(languages, split_lines)
    rows = [i for i in range(min(len(split_lines[lang]) for lang in shared)) if all(split_lines[lang][i].strip() for lang in shared)]
    return {lang: [split_lines[lang][i] for i in rows[:max_sentences]] for lang in shared}


def _check_parallel(sentences: Mapping[str, Sequence[str]]) -> int:
    """Number of sentences per language; every language must have the same number, none empty."""
    counts = {lang: len(lines) for lang, lines in sentences.items()}
    if not counts or len(set(counts.values())) != 1 or not next(iter(counts.values())):
        raise ValueError(f"Give the same (non-zero) number of sentences in every language, got {counts}")
    for lang, lines in sentences.items():
        for index, line in enumerate(lines):
            if not line.strip():
                raise ValueError(f"Sentence {index + 1} of {lang!r} is empty")
    return next(iter(counts.values()))


def _embeddings(translator: Translator, sentences: Mapping[str, Sequence[str]], remove_language_mean: bool) -> dict[str, np.ndarray]:
    """{lang: [layers + 1, N, d_model]}. Subtracting each language's mean vector removes what all
    sentences of a language share (mostly "this is German"), leaving what they mean."""
    _check_parallel(sentences)
    vectors = {lang: translator.sentence_embeddings(list(lines), lang) for lang, lines in sentences.items()}
    if remove_language_mean:
        vectors = {lang: v - v.mean(axis=1, keepdims=True) for lang, v in vectors.items()}
    return vectors


def _layer_index(layer: int, n_layers: int) -> int:
    """Layer 0 is the embedding layer, k the output of encoder layer k; negative counts from the top."""
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be between 0 and {n_layers - 1} (or negative from the top), got {layer}")
    return layer % n_layers


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Project [n, d] vectors on their two main directions: ([n, 2] points, explained variance ratios).

    PCA by SVD of the centred matrix; each axis's sign is fixed (largest loading positive) so the
    picture does not flip between calls.
    """
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1, signs)[:, None]
    points = np.zeros((len(vectors), 2))
    points[:, : len(components)] = centred @ components.T
    variance = singular**2
    ratios = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else []
    return points, ratios + [0.0] * (2 - len(ratios))


def embedding_space(
    translator: Translator,
    sentences: Mapping[str, Sequence[str]],
    layer: int = -1,
    remove_language_mean: bool = False,
) -> dict[str, Any]:
    """A 2-D map (PCA) of the encoder's sentence vectors at `layer`, for parallel `sentences`
    ({lang: lines}, line i of every language a translation of line i of the others).

    If the encoder has learned a language-neutral space, translations land together (same
    `sentence_ids`); if it mostly encodes the language, each language forms its own cloud.
    Points are language after language, in the order of `sentences`.
    """
    vectors = _embeddings(translator, sentences, remove_language_mean)
    return _space(vectors, sentences, _layer_index(layer, _n_layers(vectors)))


def _n_layers(vectors: Mapping[str, np.ndarray]) -> int:
    """Layers of `_embeddings` vectors: the embedding layer and every encoder layer."""
    return next(iter(vectors.values())).shape[0]


def _space(vectors: Mapping[str, np.ndarray], sentences: Mapping[str, Sequence[str]], index: int) -> dict[str, Any]:
    """`embedding_space` of vectors already computed, at layer `index` (0 … n_layers - 1)."""
    n_layers = _n_layers(vectors)
    points, explained = pca_2d(np.concatenate([v[index] for v in vectors.values()]))
    n = len(next(iter(sentences.values())))
    return {
        "points": points,  # [languages × n, 2]
        "languages": [lang for lang in sentences for _ in range(n)],
        "sentence_ids": [i for _ in sentences for i in range(n)],
        "labels": [line for lines in sentences.values() for line in lines],
        "layer": index,
        "n_layers": n_layers,
        "method": "pca",
        "explained_variance": explained,
    }


def retrieval_accuracy(
    translator: Translator,
    sentences: Mapping[str, Sequence[str]],
    layers: Sequence[int] | None = None,
    remove_language_mean: bool = False,
) -> dict[int, dict[str, float]]:
    """{layer: {"a-b": accuracy}}: how often the nearest sentence of language b (cosine similarity
    of the mean-pooled encoder states) to a sentence of language a is its translation.

    A simple test of a language-neutral space (Artetxe & Schwenk 2019): chance is 1/N.
    `layers` defaults to all of them (0 = embeddings).
    """
    vectors = _embeddings(translator, sentences, remove_language_mean)
    n_layers = _n_layers(vectors)
    return _retrieval(vectors, [_layer_index(layer, n_layers) for layer in (range(n_layers) if layers is None else layers)])


def _retrieval(vectors: Mapping[str, np.ndarray], chosen: Sequence[int]) -> dict[int, dict[str, float]]:
    """`retrieval_accuracy` of vectors already computed, at the layer indices `chosen`."""
    if len(vectors) < 2:
        raise ValueError("Retrieval needs sentences in at least two languages")
    unit = {lang: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12) for lang, v in vectors.items()}
    pairs = parse_directions("all", list(vectors))
    result: dict[int, dict[str, float]] = {}
    for index in chosen:
        result[index] = {}
        for name in pairs:
            a, b = split_direction(name)
            nearest = (unit[a][index] @ unit[b][index].T).argmax(axis=1)
            result[index][name] = float((nearest == np.arange(len(nearest))).mean())
    return result


def sentence_space(
    translator: Translator,
    split_lines: Mapping[str, Sequence[str]],
    max_sentences: int = 40,
    layer: int | None = None,
    remove_language_mean: bool = False,
    retrieval: bool = True,
) -> dict[str, Any]:
    """The sentence-space view of a test set in one pass over the encoder: `embedding_space` of
    the first `max_sentences` parallel lines of the model's languages (`parallel_sentences`) at
    `layer`, and, with `retrieval`, their `retrieval_accuracy` at every layer.

    `layer` is clamped to 0 … the top encoder layer (None: the top), so a slider sized for a
    deeper model still gets a picture. Returns the `embedding_space` dict plus "retrieval"
    ({layer: {"a-b": accuracy}}) and "retrieval_mean" ({layer: mean over the pairs}) when asked.
    """
    if max_sentences < 2:
        raise ValueError(f"Give at least 2 sentences per language, got {max_sentences}")
    sentences = parallel_sentences(translator.languages, split_lines, max_sentences)
    vectors = _embeddings(translator, sentences, remove_language_mean)
    top = _n_layers(vectors) - 1
    result = _space(vectors, sentences, top if layer is None else min(max(int(layer), 0), top))
    if retrieval:
        accuracy = _retrieval(vectors, range(top + 1))
        result["retrieval"] = accuracy
        result["retrieval_mean"] = {index: _mean(row.values()) for index, row in accuracy.items()}
    return result


# --- 4. tokenization across languages ------------------------------------------------------


def _tokenizer(model: Translator | Tokenizer) -> Tokenizer:
    """Accept a Translator or a bare Tokenizer."""
    return model.tokenizer if isinstance(model, Translator) else model


def tokenization_view(model: Translator | Tokenizer, sentences: Mapping[str, str]) -> dict[str, list[str]]:
    """{lang: pieces} of one sentence per language: see how the shared vocabulary cuts each one."""
    tokenizer = _tokenizer(model)
    return {lang: tokenizer.pieces(tokenizer.encode(text)) for lang, text in sentences.items()}


def fertility(model: Translator | Tokenizer, lines_by_lang: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{lang: SentencePiece pieces per whitespace word} over all lines (0.0 when there are no words).

    A language the vocabulary serves badly is cut into more pieces per word: longer sequences,
    slower and usually worse translation.
    """
    tokenizer = _tokenizer(model)
    result = {}
    for lang, lines in lines_by_lang.items():
        words = sum(len(line.split()) for line in lines)
        pieces = sum(len(ids) for ids in tokenizer.encode_batch(lines))
        result[lang] = pieces / words if words else 0.0
    return result


def vocabulary_usage(model: Translator | Tokenizer, lines_by_lang: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Which part of the shared vocabulary each language actually uses, and how much languages share.

    Returns {"vocab_size": ordinary pieces (no specials or tags), "used": {lang: distinct pieces},
    "share": {lang: used / vocab_size}, "overlap": {"a-b": pieces used by both}, "jaccard":
    {"a-b": |A∩B| / |A∪B|}, "shared_by_all": pieces used by every language}. Pair keys come in both
    orders, so `plots.direction_matrix(r["jaccard"], languages, metric="Jaccard")` draws a full grid.
    """
    tokenizer = _tokenizer(model)
    processor, tags = tokenizer.processor, set(tokenizer.tag_ids.values())
    ordinary = [i for i in range(len(tokenizer)) if not (processor.is_control(i) or processor.is_unknown(i) or i in tags)]
    used = {lang: {i for ids in tokenizer.encode_batch(lines) for i in ids} for lang, lines in lines_by_lang.items()}
    pairs = [split_direction(name) for name in parse_directions("all", list(used))] if len(used) > 1 else []
    union = {(a, b): len(used[a] | used[b]) for a, b in pairs}
    return {
        "vocab_size": len(ordinary),
        "used": {lang: len(ids) for lang, ids in used.items()},
        "share": {lang: len(ids) / len(ordinary) for lang, ids in used.items()},
        "overlap": {direction(a, b): len(used[a] & used[b]) for a, b in pairs},
        "jaccard": {direction(a, b): len(used[a] & used[b]) / union[a, b] if union[a, b] else 0.0 for a, b in pairs},
        "shared_by_all": len(set.intersection(*used.values())) if used else 0,
    }


def tokenization_report(
    translator: Translator, split_lines: Mapping[str, Sequence[str]], number: int = 1, max_sentences: int = 500
) -> dict[str, Any]:
    """How the shared vocabulary treats each of the model's languages in a test set: sentence
    `number` (1-based) of the parallel lines cut into pieces, and `fertility` and
    `vocabulary_usage` over the first `max_sentences` of them.

    Returns {"languages", "sentences" ({lang: sentence `number`}), "pieces" ({lang: pieces}),
    "fertility", "usage", "count" (parallel lines measured)}.
    """
    lines = parallel_sentences(translator.languages, split_lines, max_sentences)
    count = len(next(iter(lines.values())))
    if not 1 <= number <= count:
        raise ValueError(f"Pick a sentence number between 1 and {count}")
    chosen = {lang: lines[lang][number - 1] for lang in lines}
    return {
        "languages": list(lines),
        "sentences": chosen,
        "pieces": tokenization_view(translator, chosen),
        "fertility": fertility(translator, lines),
        "usage": vocabulary_usage(translator, lines),
        "count": count,
    }


def vocab_size_sweep(
    lines_by_lang: Mapping[str, Sequence[str]],
    sizes: Sequence[int] = (250, 500, 1000, 2000, 4000),
    model_type: str = "unigram",
    seed: int = 1,
) -> dict[int, dict[str, float]]:
    """{requested vocabulary size: {lang: fertility}}, training one shared SentencePiece model per size
    on `lines_by_lang` and measuring on the same lines.

    Bigger vocabularies cut words into fewer pieces, but the gain is uneven across languages.
    On a small corpus SentencePiece may stop below a requested size (then two sizes can tie).
    """
    result = {}
    for size in sizes:
        try:
            tokenizer = Tokenizer.train({lang: list(lines) for lang, lines in lines_by_lang.items()}, size, model_type, seed=seed)
        except RuntimeError as error:  # e.g. fewer pieces allowed than the corpus has characters
            raise ValueError(f"Cannot train a {size}-piece {model_type} vocabulary on these lines: {error}") from None
        result[size] = fertility(tokenizer, lines_by_lang)
    return result


# --- 5. side by side ---------------------------------------------------------------------


def compare_translations(
    translators: Sequence[Translator], text: str, src: str, tgt: str, beam_size: int = 4, attention: bool = False
) -> list[dict[str, Any]]:
    """The same sentence through several models, one dict per model in the given order.

    A model that cannot translate src→tgt gets an "error" message instead of stopping the others.
    With `attention`, each row also has "attention": the cross-attention of the last decoder layer,
    averaged over heads ([target pieces, source pieces], empty when the model cannot translate),
    with its "source_pieces" and "target_pieces".
    """
    rows = []
    for translator in translators:
        row: dict[str, Any] = {
            "model": translator.name,
            "text": "",
            "pieces": [],
            "score": None,
            "log_prob": None,
            "zero_shot": None,
            "seconds": None,
            "error": None,
        }
        if attention:
            row.update(_last_cross_attention(translator, text, src, tgt, beam_size))
        try:
            start = time.perf_counter()
            translation = translator.translate([text], src, tgt, beam_size=beam_size)[0]
        except ValueError as error:
            row["error"] = str(error)
        else:
            row.update(
                text=translation.text,
                pieces=translation.pieces,
                score=translation.score,
                log_prob=translation.log_prob,
                seconds=time.perf_counter() - start,
                zero_shot=bool(translator.directions) and direction(src, tgt) not in translator.directions,
            )
        rows.append(row)
    return rows


def _last_cross_attention(translator: Translator, text: str, src: str, tgt: str, beam_size: int) -> dict[str, Any]:
    try:
        view = translator.attention(text, src, tgt, beam_size=beam_size)
    except ValueError:
        return {"attention": np.zeros((0, 0)), "source_pieces": [], "target_pieces": []}
    return {"attention": view.cross[-1].mean(axis=0), "source_pieces": view.source_pieces, "target_pieces": view.target_pieces}
