"""Ready to run as a Hugging Face Space: the README front matter matches the project, and
tools/prepare_space.py makes a copy whose weights go through Git LFS and whose plain files fit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools import prepare_space as space

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_front_matter_matches_the_project() -> None:
    meta = space.front_matter((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))
    assert meta["python_version"] == "3.11" and meta["app_file"] == "app.py"
    assert space.check_front_matter(PROJECT_ROOT) == []


def _project_files(tmp_path: Path) -> Path:
    """The three files the front matter is checked against, copied, plus app.py."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("README.md", "pyproject.toml", "requirements.txt", "app.py"):
        shutil.copyfile(PROJECT_ROOT / name, copy / name)
    return copy


@pytest.mark.parametrize(
    "old, new, complaint",
    [
        ('python_version: "3.11"', 'python_version: "3.10"', "does not satisfy requires-python"),
        ('python_version: "3.11"\n', "", "no python_version"),
        ("sdk_version: 6.31.0", "sdk_version: 6.30.0", "differs from the Gradio pin"),
        ("app_file: app.py", "app_file: main.py", "'main.py' is not a file"),
    ],
)
def test_a_front_matter_mismatch_fails(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    copy = _project_files(tmp_path)
    readme = copy / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert old in text
    readme.write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = space.check_front_matter(copy)
    assert len(problems) == 1 and complaint in problems[0]


def test_the_gradio_pin_is_what_sdk_version_is_checked_against(tmp_path: Path) -> None:
    copy = _project_files(tmp_path)
    requirements = copy / "requirements.txt"
    requirements.write_text(requirements.read_text(encoding="utf-8").replace("gradio==6.31.0", "gradio==7.0.0"), encoding="utf-8")
    assert any("Gradio pin 7.0.0" in p for p in space.check_front_matter(copy))


def _git_repo(tmp_path: Path, files: dict[str, bytes]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("README.md", "pyproject.toml", "requirements.txt", "app.py"):
        shutil.copyfile(PROJECT_ROOT / name, repo / name)
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    (repo / "untracked.txt").write_text("not in git", encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    tracked = ["README.md", "pyproject.toml", "requirements.txt", "app.py", *files]
    subprocess.run(["git", "add", *tracked], cwd=repo, check=True)
    return repo


def test_prepare_space_on_a_temporary_copy(tmp_path: Path) -> None:
    big = b"\0" * (11 * 1024 * 1024)
    repo = _git_repo(tmp_path, {"checkpoints/m/model.safetensors": big, "checkpoints/m/spm.model": b"spm", "core/x.py": b"print(1)\n"})
    report = space.prepare_space(tmp_path / "space", repo, use_git=False)  # the path taken without git-lfs
    assert report.ok, report.problems
    assert report.copied == 7 and not (tmp_path / "space" / "untracked.txt").exists()
    assert report.lfs_files == ["checkpoints/m/model.safetensors", "checkpoints/m/spm.model"]
    attributes = (tmp_path / "space" / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in attributes
    assert "spm.model filter=lfs diff=lfs merge=lfs -text" in attributes
    assert any("git lfs is not installed" in note for note in report.notes)
    with pytest.raises(ValueError, match="not empty"):
        space.prepare_space(tmp_path / "space", repo, use_git=False)


def test_prepare_space_refuses_a_big_plain_file(tmp_path: Path) -> None:
    repo = _git_repo(tmp_path, {"data/corpus.bin": b"\0" * (10 * 1024 * 1024 + 1), "data/small.bin": b"\0" * 1000})
    report = space.prepare_space(tmp_path / "space", repo, use_git=False)
    assert not report.ok and len(report.problems) == 1 and report.problems[0].startswith("data/corpus.bin: 10.5 MB")
    assert space.main([str(tmp_path / "space2"), "--repo", str(repo)]) == 1


def test_prepare_space_on_this_repository(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert space.main([str(tmp_path / "space")]) == 0, capsys.readouterr().err
    assert "checkpoints/multi30k-4lang/model.safetensors" in capsys.readouterr().out
    # the Space installs requirements.txt only: it gets CTranslate2's pin for the bulk paths, once
    pin = next(line for line in (PROJECT_ROOT / "requirements-ct2.txt").read_text().splitlines() if line.startswith("ctranslate2=="))
    assert (tmp_path / "space" / "requirements.txt").read_text().splitlines().count(pin) == 1
    assert space.main([str(tmp_path / "plain"), "--without-ct2"]) == 0
    assert (tmp_path / "plain" / "requirements.txt").read_text() == (PROJECT_ROOT / "requirements.txt").read_text()
