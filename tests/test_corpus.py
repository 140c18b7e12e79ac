"""Corpora: built-in splits, Multi30K from a folder and over HTTP, user files and their errors."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from core import corpus as corpus_module
from core.corpus import (
    CorpusError,
    download_multi30k,
    load_builtin,
    load_corpus,
    load_multi30k,
    load_text_pair,
    load_tsv,
)
from core.languages import parse_directions


def test_builtin_corpus_has_disjoint_aligned_splits() -> None:
    corpus = load_builtin()
    assert corpus.languages == ["en", "de", "fr", "cs", "es"]
    assert corpus.sizes() == {"train": 7000, "valid": 500, "test": 500}
    train = set(corpus.split("train")["en"])
    assert not train & set(corpus.split("test")["en"])
    assert not train & set(corpus.split("valid")["en"])


def test_multi30k_loads_from_folder(multi30k_dir: Path) -> None:
    corpus = load_multi30k(multi30k_dir)
    assert corpus.sizes() == {"train": 29000, "valid": 1014, "test": 1000}
    assert corpus.split("test")["en"][0].startswith("A man in an orange hat")


def test_multi30k_path_from_environment(monkeypatch: pytest.MonkeyPatch, multi30k_dir: Path) -> None:
    monkeypatch.setenv("POLYGLOT_MULTI30K", str(multi30k_dir))
    assert corpus_module.find_multi30k() == multi30k_dir
    assert load_corpus("multi30k", ["en", "cs"]).languages == ["en", "cs"]


def test_missing_multi30k_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import outcome_of, require_multi30k

    monkeypatch.setattr(corpus_module, "find_multi30k", lambda: None)
    monkeypatch.setenv("CI", "true")
    failed = outcome_of(require_multi30k)
    assert type(failed) is pytest.fail.Exception and "Multi30K not found" in str(failed) and "CI=true" in str(failed)
    monkeypatch.delenv("CI")
    skipped = outcome_of(require_multi30k)
    assert type(skipped) is pytest.skip.Exception and "Multi30K not found" in str(skipped)


@pytest.fixture()
def file_server(tmp_path: Path):
    """A local HTTP server: the downloader is tested without touching the network."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_downloader_fetches_checks_and_caches(file_server, multi30k_dir: Path, tmp_path: Path) -> None:
    root, url = file_server
    for name in corpus_module.MULTI30K_SHA256:
        shutil.copy(multi30k_dir / name, root / name)
    target = tmp_path / "cache"
    download_multi30k(target, base_url=url, progress=False)
    assert load_multi30k(target).sizes()["test"] == 1000
    # Cached: with the mirror gone, a second call downloads nothing and succeeds.
    shutil.rmtree(root)
    root.mkdir()
    download_multi30k(target, base_url=url, progress=False)


def test_downloader_refuses_a_corrupt_file(file_server, multi30k_dir: Path, tmp_path: Path) -> None:
    root, url = file_server
    for name in corpus_module.MULTI30K_SHA256:
        shutil.copy(multi30k_dir / name, root / name)
    with gzip.open(root / "train.de.gz", "wt") as handle:
        handle.write("tampered\n")
    target = tmp_path / "cache"
    with pytest.raises(CorpusError, match="Checksum mismatch for train.de.gz"):
        download_multi30k(target, base_url=url, progress=False)
    assert not (target / "train.de.gz").exists()
    assert not list(target.glob("*.part"))


def test_downloader_reports_a_missing_file(file_server, tmp_path: Path) -> None:
    _, url = file_server
    with pytest.raises(CorpusError, match="Download of .* failed"):
        download_multi30k(tmp_path / "cache", base_url=url, progress=False)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def pair_lines(n: int) -> tuple[str, str]:
    return ("".join(f"sentence {i}\n" for i in range(n)), "".join(f"Satz {i}\n" for i in range(n)))


def test_text_pair_loads_and_holds_out(tmp_path: Path) -> None:
    en, de = pair_lines(100)
    corpus = load_corpus(f"{write(tmp_path / 'a.en.txt', en)},{write(tmp_path / 'b.de.txt', de)}")
    assert corpus.languages == ["en", "de"]
    assert corpus.sizes() == {"train": 90, "valid": 5, "test": 5}
    pairs = dict(zip(corpus.split("train")["en"], corpus.split("train")["de"]))
    assert pairs["sentence 7"] == "Satz 7"  # shuffled together, still aligned


@pytest.mark.parametrize(
    ("en", "de", "message"),
    [
        ("a\nb\nc\n", "x\ny\n", r"not line-aligned \(a.en.txt: 3 lines, b.de.txt: 2 lines\)"),
        ("a\n\nc\n", "x\ny\nz\n", r"a.en.txt:2: empty line"),
        (b"ok\n\xff\xfe bad\n", "x\ny\n", r"a.en.txt:2: not valid UTF-8"),
        (b"\x00\x01\x02binary", "x\n", r"a.en.txt: looks like a binary file"),
        ("", "x\n", r"a.en.txt: the file is empty"),
        ("x" * 3000 + "\n", "y\n", r"a.en.txt:1: line of 3000 characters"),
    ],
)
def test_text_pair_errors_name_file_and_line(tmp_path: Path, en, de, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_text_pair(write(tmp_path / "a.en.txt", en), write(tmp_path / "b.de.txt", de), "en", "de")


def test_text_pair_too_small_or_same_language(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.en.txt", "a\nb\n"), write(tmp_path / "b.de.txt", "x\ny\n")
    with pytest.raises(CorpusError, match="too few"):
        load_text_pair(a, b, "en", "de")
    with pytest.raises(CorpusError, match="Both files"):
        load_text_pair(a, b, "en", "en")


def test_tsv_loads_several_languages(tmp_path: Path) -> None:
    rows = "en\tde\tfr\n" + "".join(f"dog {i}\tHund {i}\tchien {i}\n" for i in range(60))
    corpus = load_tsv(write(tmp_path / "data.tsv", rows))
    assert corpus.languages == ["en", "de", "fr"]
    assert sum(corpus.sizes().values()) == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("en\tde\nHello\n", r"data.tsv:2: expected 2 tab-separated columns, found 1"),
        ("en\tde\nHello\t \n", r"data.tsv:2: empty de cell"),
        ("en\tEN GLISH\nHello\tHallo\n", r"data.tsv:1: header column 2"),
        ("en\ten\nHello\tHallo\n", r"data.tsv:1: the header must name at least two different languages"),
    ],
)
def test_tsv_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_tsv(write(tmp_path / "data.tsv", text))


def test_unknown_source_and_language_names(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="Unknown data source"):
        load_corpus("wikipedia")
    with pytest.raises(CorpusError, match="has no"):
        load_builtin().restrict(["en", "xx"])


def test_direction_specs() -> None:
    langs = ["en", "de", "fr", "cs"]
    assert len(parse_directions("all", langs)) == 12
    centric = parse_directions("en-centric", langs)
    assert sorted(centric) == sorted(["en-de", "en-fr", "en-cs", "de-en", "fr-en", "cs-en"])
    assert parse_directions("de-fr, fr-de", langs) == ["de-fr", "fr-de"]
    for bad, message in [("de-xx", "not among"), ("en-en", "into itself"), ("ende", "SRC-TGT"), ("xx-centric", "Pivot")]:
        with pytest.raises(ValueError, match=message):
            parse_directions(bad, langs)
