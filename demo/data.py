"""Corpora for the UI: uploaded files, test sets for the Evaluate tab, example sentences.

In hosted mode an upload is deleted from Gradio's cache as soon as it has been read (whether it
could be used or not); what was read is kept in memory for the same visitor a little while, so the
Train tab's language preview and its Start button read one upload once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.builtin_corpus import BUILTIN_LANGUAGES
from core.corpus import MULTI30K_LANGUAGES, Corpus, CorpusError, find_multi30k, load_builtin, load_corpus, read_user_files
from core.limits import check_upload_size, current_limits
from demo.session import current_owner

log = logging.getLogger("polyglot.demo")

BUILTIN, MULTI30K, UPLOAD = "Built-in corpus", "Multi30K", "Uploaded files"
DATA_SOURCES = [BUILTIN, MULTI30K, UPLOAD]
KNOWN_LANGUAGES = {BUILTIN: list(BUILTIN_LANGUAGES), MULTI30K: list(MULTI30K_LANGUAGES)}
UPLOAD_HELP = (
    "Upload two line-aligned text files named by language (e.g. `talks.en.txt` and `talks.de.txt`), "
    "or one `.tsv` file whose header names a language per column (e.g. `en<TAB>de<TAB>fr`)."
)

# Shown when a model's own corpus cannot give examples (e.g. Multi30K is not on this machine).
FALLBACK_EXAMPLES: dict[str, list[str]] = {
    "en": ["A dog runs on the beach.", "Two children are playing in the park.", "The woman reads a book."],
    "de": ["Ein Hund läuft am Strand.", "Zwei Kinder spielen im Park.", "Die Frau liest ein Buch."],
    "fr": ["Un chien court sur la plage.", "Deux enfants jouent dans le parc.", "La femme lit un livre."],
    "cs": ["Pes běží po pláži.", "Dvě děti si hrají v parku.", "Žena čte knihu."],
    "es": ["Un perro corre en la playa.", "Dos niños juegan en el parque.", "La mujer lee un libro."],
}


def paths_of(files: list | str | Path | None) -> list[Path]:
    """Paths of a gr.File value: one path or a list of them (str, Path, or an object with a .path)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [Path(item) if isinstance(item, (str, os.PathLike)) else Path(item.path) for item in items]


def upload_source(files: list | str | None) -> str:
    """The `data.source` string for uploaded files: two aligned `NAME.xx.txt` files or one TSV.

    Every upload passes here, so this is where the upload size cap (core.limits) is enforced.
    """
    paths = paths_of(files)
    for path in paths:
        if path.is_file():
            check_upload_size(path.stat().st_size, path.name)
    one_tsv = len(paths) == 1 and paths[0].suffix.lower() == ".tsv"
    two_texts = len(paths) == 2 and not any(p.suffix.lower() == ".tsv" for p in paths)
    if not (one_tsv or two_texts):
        raise CorpusError(f"Got {len(paths)} file(s). {UPLOAD_HELP}")
    return ",".join(str(p) for p in paths)


def gradio_cache() -> Path:
    """Where Gradio keeps uploads (its GRADIO_TEMP_DIR rule)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def delete_uploads(paths: list[Path]) -> None:
    """Delete uploaded files (and their emptied folders) from Gradio's cache; nothing outside it."""
    cache = gradio_cache()
    for path in paths:
        resolved = path.resolve()
        if cache not in resolved.parents:
            continue
        resolved.unlink(missing_ok=True)
        folder = resolved.parent
        while folder != cache and cache in folder.parents and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


MAX_READ_UPLOADS = 8
_READ: OrderedDict[tuple, Any] = OrderedDict()  # (visitor, what, paths) -> what was read, most recent last
_READ_LOCK = threading.Lock()


def _read_once(files: list | str | None, what: str, read: Callable[[list[Path]], Any]) -> Any:
    """`read(paths)` of an upload. Hosted: the files are deleted right after, and the result is
    remembered for this visitor, so reading the same upload again gives it without the files."""
    paths = paths_of(files)
    if not current_limits().hosted:
        return read(paths)
    key = (current_owner(), what, tuple(str(p) for p in paths))
    with _READ_LOCK:
        if key in _READ:
            _READ.move_to_end(key)
            return _READ[key]
    gone = [p.name for p in paths if not p.is_file()]
    if gone:
        raise CorpusError(f"{', '.join(gone)}: no longer on the server (uploads are deleted once read). Upload the file again.")
    try:
        result = read(paths)
    finally:
        delete_uploads(paths)
        log.info("Read and deleted the uploads %s", ", ".join(str(p) for p in paths))
    with _READ_LOCK:
        _READ[key] = result
        while len(_READ) > MAX_READ_UPLOADS:
            _READ.popitem(last=False)
    return result


def corpus_from_uploads(files: list | str | None) -> Corpus:
    """Uploaded files as a training corpus; CorpusError (naming file and line) otherwise."""
    return _read_once(files, "corpus", lambda paths: load_corpus(upload_source(paths)))


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=4)
def _builtin() -> Corpus:
    return load_builtin()


def builtin_corpus() -> Corpus:
    """The built-in corpus, loaded once."""
    return _builtin()


@lru_cache(maxsize=2)
def _multi30k(folder: str) -> Corpus:
    return load_corpus(f"multi30k:{folder}")


def multi30k() -> Corpus:
    folder = find_multi30k()
    if folder is None:
        raise CorpusError(
            "Multi30K is not on this machine. Download it with `python -m core download` "
            "(or tick 'download' in the Train tab), or set POLYGLOT_MULTI30K to its folder."
        )
    return _multi30k(str(folder))


def transfer_corpus() -> Corpus:
    """The corpus of the small transfer experiment: Multi30K when it is here (the stored result's
    data), else the built-in corpus."""
    return multi30k() if find_multi30k() is not None else builtin_corpus()


TEST_SETS = {"Built-in test split": BUILTIN, "Multi30K test split": MULTI30K, "Uploaded files": UPLOAD}


def load_test_set(name: str, files: list | str | None = None) -> tuple[str, dict[str, list[str]]]:
    """(cache key, {lang: lines}) of a test set named as in TEST_SETS."""
    kind = TEST_SETS.get(name)
    if kind == BUILTIN:
        return "builtin:test", _builtin().split("test")
    if kind == MULTI30K:
        return "multi30k:test", multi30k().split("test")
    if kind == UPLOAD:
        paths = paths_of(files)
        if not paths:
            raise CorpusError(f"No files uploaded. {UPLOAD_HELP}")
        return _read_once(paths, "test set", lambda paths: (f"upload:{_digest(paths)}", read_user_files(upload_source(paths))))
    raise CorpusError(f"Unknown test set {name!r}; choose one of {', '.join(TEST_SETS)}")


def example_sentences(corpus_name: str, lang: str, n: int = 5) -> list[str]:
    """A few test sentences of the corpus a model was trained on, else hand-written ones."""
    try:
        corpus = _builtin() if corpus_name == "builtin" else multi30k() if corpus_name == "multi30k" else None
    except CorpusError:
        corpus = None
    if corpus is not None and lang in corpus.languages:
        return corpus.split("test")[lang][:n]
    return FALLBACK_EXAMPLES.get(lang, [])[:n]
