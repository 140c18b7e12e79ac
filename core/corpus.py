"""Parallel corpora: the built-in generator, Multi30K (local folder or download), user files.

Every corpus becomes the same thing: `Corpus.splits[split][lang]` is a list of sentences, and
line i of every language in a split is a translation of line i of every other language
("N-way parallel"). Splits are named "train", "valid" and "test".
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from core.builtin_corpus import generate_corpus
from core.languages import check_language_code

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MAX_LINE_CHARS = 2000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class CorpusError(ValueError):
    """A corpus that cannot be used, with a message naming the file and line."""


@dataclass
class Corpus:
    name: str
    splits: dict[str, dict[str, list[str]]]

    @property
    def languages(self) -> list[str]:
        return list(self.splits["train"])

    def split(self, name: str) -> dict[str, list[str]]:
        if name not in self.splits:
            raise CorpusError(f"Corpus {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}")
        return self.splits[name]

    def restrict(self, languages: list[str]) -> Corpus:
        unknown = [lang for lang in languages if lang not in self.languages]
        if unknown:
            raise CorpusError(f"Corpus {self.name!r} has no {unknown}; it has {', '.join(self.languages)}")
        return Corpus(self.name, {s: {lang: lines[lang] for lang in languages} for s, lines in self.splits.items()})

    def sizes(self) -> dict[str, int]:
        return {split: len(next(iter(lines.values()))) for split, lines in self.splits.items()}

    def merge(self, other: Corpus) -> Corpus:
        """This corpus followed by `other`, over the languages of both and the splits they share.
        A language one side lacks is "" on that side's lines: the result stays N-way aligned, and
        every consumer skips pairs with an empty side, so no pair is made up."""
        languages = list(dict.fromkeys([*self.languages, *other.languages]))
        splits = {}
        for split in (s for s in self.splits if s in other.splits):
            parts = [corpus.splits[split] for corpus in (self, other)]
            sizes = [len(next(iter(lines.values()))) for lines in parts]
            splits[split] = {lang: [line for lines, n in zip(parts, sizes) for line in lines.get(lang, [""] * n)] for lang in languages}
        return Corpus(f"{self.name}+{other.name}", splits)

    def pairs(self, split: str, src: str, tgt: str) -> tuple[list[str], list[str]]:
        """The (source, target) lines of one direction with both sides non-empty."""
        lines = self.split(split)
        return non_empty_pairs(lines[src], lines[tgt])


def non_empty_pairs(sources: list[str], targets: list[str]) -> tuple[list[str], list[str]]:
    """Aligned lines without the pairs that have an empty side (a language missing from that part
    of a merged or low-resource corpus)."""
    kept = [(s, t) for s, t in zip(sources, targets, strict=True) if s.strip() and t.strip()]
    return [s for s, _ in kept], [t for _, t in kept]


# --- built-in -------------------------------------------------------------------------------


def load_builtin(n_sentences: int = 8000, seed: int = 0, held_out: int = 500) -> Corpus:
    """The project's own generated corpus: grammatical, deterministic, offline."""
    lines = generate_corpus(n_sentences, seed)
    return Corpus("builtin", _split_off(lines, held_out))


def _split_off(lines: dict[str, list[str]], held_out: int) -> dict[str, dict[str, list[str]]]:
    """Last `held_out` lines are test, the `held_out` before them valid, the rest train."""
    n = len(next(iter(lines.values())))
    train_end, valid_end = n - 2 * held_out, n - held_out
    return {
        "train": {lang: s[:train_end] for lang, s in lines.items()},
        "valid": {lang: s[train_end:valid_end] for lang, s in lines.items()},
        "test": {lang: s[valid_end:] for lang, s in lines.items()},
    }


# --- Multi30K --------------------------------------------------------------------------------

MULTI30K_LANGUAGES = ("en", "de", "fr", "cs")
MULTI30K_FILES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
MULTI30K_SHA256 = {
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


def multi30k_candidates() -> list[Path]:
    """Where to look for Multi30K: $POLYGLOT_MULTI30K, the download cache, a sibling shared/ folder."""
    candidates = []
    if os.environ.get("POLYGLOT_MULTI30K"):
        candidates.append(Path(os.environ["POLYGLOT_MULTI30K"]))
    candidates += [PROJECT_ROOT / "data" / "multi30k", PROJECT_ROOT.parent / "shared" / "data" / "multi30k"]
    return candidates


def find_multi30k() -> Path | None:
    for folder in multi30k_candidates():
        if (folder / "train.en.gz").exists():
            return folder
    return None


def load_multi30k(folder: str | Path | None = None, languages: tuple[str, ...] = MULTI30K_LANGUAGES) -> Corpus:
    """Read `{split}.{lang}.gz` files; splits train / val / test_2016_flickr become train / valid / test."""
    if folder is None:
        folder = find_multi30k()
        if folder is None:
            looked = ", ".join(str(p) for p in multi30k_candidates())
            raise CorpusError(
                f"Multi30K not found (looked in {looked}). Run `python -m core download` "
                "or set POLYGLOT_MULTI30K to a folder holding train.en.gz etc."
            )
    folder = Path(folder)
    splits = {}
    for split, stem in MULTI30K_FILES.items():
        splits[split] = {lang: _read_gzip_lines(folder / f"{stem}.{lang}.gz") for lang in languages}
        _check_aligned({folder / f"{stem}.{lang}.gz": lines for lang, lines in splits[split].items()})
    return Corpus("multi30k", splits)


def _read_gzip_lines(path: Path) -> list[str]:
    if not path.exists():
        raise CorpusError(f"Missing file {path}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise CorpusError(f"{path}: cannot read as gzipped UTF-8 text ({error})") from error


def download_multi30k(
    folder: str | Path | None = None,
    base_url: str = MULTI30K_URL,
    progress: bool = True,
) -> Path:
    """Download the 12 Multi30K files into `folder` (default: data/multi30k in the project).

    Files already present with the right checksum are kept (a cache); each download goes to a
    `.part` file that is checked and then renamed, so an interrupted download never leaves a
    truncated file behind.
    """
    folder = Path(folder) if folder else PROJECT_ROOT / "data" / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for name, checksum in MULTI30K_SHA256.items():
        target = folder / name
        if target.exists() and _sha256(target) == checksum:
            continue
        partial = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(base_url + name, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with open(partial, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CorpusError(f"Download of {base_url + name} failed: {error}") from error
        if _sha256(partial) != checksum:
            partial.unlink()
            raise CorpusError(f"Checksum mismatch for {name} from {base_url}: the file was not saved")
        os.replace(partial, target)
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- user files ------------------------------------------------------------------------------


def read_text_pair(path_a: str | Path, path_b: str | Path, lang_a: str, lang_b: str) -> dict[str, list[str]]:
    """Two line-aligned plain-text files, one sentence per line, as {lang: lines} (not split)."""
    check_language_code(lang_a)
    check_language_code(lang_b)
    if lang_a == lang_b:
        raise CorpusError(f"Both files are marked as {lang_a!r}: give two different languages")
    lines = {lang_a: [s.strip() for s in _read_user_lines(Path(path_a))], lang_b: [s.strip() for s in _read_user_lines(Path(path_b))]}
    _check_aligned({Path(path_a): lines[lang_a], Path(path_b): lines[lang_b]})
    return lines


def load_text_pair(path_a: str | Path, path_b: str | Path, lang_a: str, lang_b: str, held_out: int | None = None, seed: int = 1) -> Corpus:
    """Two aligned files as a corpus, with valid/test lines held out."""
    return _user_corpus(Path(path_a).stem, read_text_pair(path_a, path_b, lang_a, lang_b), held_out, seed)


def load_tsv(path: str | Path, held_out: int | None = None, seed: int = 1) -> Corpus:
    """A TSV file as a corpus, with valid/test lines held out."""
    return _user_corpus(Path(path).stem, read_tsv(path), held_out, seed)


def read_tsv(path: str | Path) -> dict[str, list[str]]:
    """A TSV file whose header names a language per column (e.g. `en<TAB>de<TAB>fr`), as {lang: lines}."""
    path = Path(path)
    rows = _read_user_lines(path, allow_empty_lines=False)
    header = rows[0].split("\t")
    for column, code in enumerate(header, 1):
        try:
            check_language_code(code.strip())
        except ValueError as error:
            raise CorpusError(f"{path}:1: header column {column}: {error}") from None
    languages = [code.strip() for code in header]
    if len(languages) < 2 or len(set(languages)) != len(languages):
        raise CorpusError(f"{path}:1: the header must name at least two different languages, got {header}")
    lines: dict[str, list[str]] = {lang: [] for lang in languages}
    for number, row in enumerate(rows[1:], 2):
        cells = row.split("\t")
        if len(cells) != len(languages):
            raise CorpusError(f"{path}:{number}: expected {len(languages)} tab-separated columns, found {len(cells)}")
        for lang, cell in zip(languages, cells):
            if not cell.strip():
                raise CorpusError(f"{path}:{number}: empty {lang} cell")
            lines[lang].append(cell.strip())
    return lines


def _read_user_lines(path: Path, allow_empty_lines: bool = False) -> list[str]:
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise CorpusError(f"{path}: the file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise CorpusError(f"{path}: {size / 1e6:.1f} MB is over the {MAX_UPLOAD_BYTES / 1e6:.0f} MB limit")
    data = path.read_bytes()
    if b"\x00" in data:
        raise CorpusError(f"{path}: looks like a binary file (it contains NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not valid UTF-8 (byte {error.start}); save the file as UTF-8") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() and not allow_empty_lines:
            raise CorpusError(f"{path}:{number}: empty line (every line must hold a sentence)")
        if len(line) > MAX_LINE_CHARS:
            raise CorpusError(f"{path}:{number}: line of {len(line)} characters is over the {MAX_LINE_CHARS} limit")
    return lines


def _check_aligned(files: dict[Path, list[str]]) -> None:
    counts = {path: len(lines) for path, lines in files.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{path.name}: {n} lines" for path, n in counts.items())
        raise CorpusError(f"Files are not line-aligned ({detail})")


def _user_corpus(name: str, lines: dict[str, list[str]], held_out: int | None, seed: int) -> Corpus:
    """Shuffle once (seeded) and hold out valid/test lines: 5% each, at most 500, at least 1."""
    n = len(next(iter(lines.values())))
    held_out = held_out if held_out is not None else max(1, min(500, n // 20))
    if n < 2 * held_out + 10:
        raise CorpusError(f"{name}: {n} sentence pairs is too few to train on (need at least {2 * held_out + 10})")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    shuffled = {lang: [s[i] for i in order] for lang, s in lines.items()}
    return Corpus(name, _split_off(shuffled, held_out))


# --- one entry point for every kind of source ------------------------------------------------


def load_corpus(source: str, languages: list[str] | None = None) -> Corpus:
    """`source` is "builtin", "multi30k", "multi30k:DIR", "FILE.tsv" or "A.en.txt,B.de.txt".

    For two text files the language is the last dotted part before the extension
    (`news.en.txt` → en) or the extension itself (`news.en` → en).
    """
    loaders: dict[str, Callable[[], Corpus]] = {
        "builtin": load_builtin,
        "multi30k": load_multi30k,
    }
    if source in loaders:
        corpus = loaders[source]()
    elif source.startswith("multi30k:"):
        corpus = load_multi30k(source.split(":", 1)[1])
    else:
        corpus = _user_corpus(Path(source.split(",")[0]).stem, read_user_files(source), None, 1)
    return corpus.restrict(languages) if languages else corpus


def read_user_files(source: str) -> dict[str, list[str]]:
    """User files as {lang: lines}, unsplit (e.g. a whole test set): "FILE.tsv" or "A.en.txt,B.de.txt"."""
    if "," in source:
        paths = [Path(p.strip()) for p in source.split(",")]
        if len(paths) != 2:
            raise CorpusError(f"Give exactly two aligned files separated by a comma, got {len(paths)}")
        return read_text_pair(paths[0], paths[1], _language_from_name(paths[0]), _language_from_name(paths[1]))
    if source.endswith(".tsv"):
        return read_tsv(source)
    raise CorpusError(f"Unknown data source {source!r}: use builtin, multi30k[:DIR], FILE.tsv or A.xx,B.yy")


def _language_from_name(path: Path) -> str:
    parts = path.name.split(".")
    candidates = [p for p in parts[1:] if p not in ("txt", "gz")]
    if not candidates:
        raise CorpusError(f"{path}: cannot tell the language from the name; call it e.g. data.en.txt")
    try:
        return check_language_code(candidates[-1])
    except ValueError as error:
        raise CorpusError(f"{path}: {error}") from None
