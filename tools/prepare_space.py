"""Prepare a push to a Hugging Face Space: a copy of the repository whose weights go through Git LFS.

    python tools/prepare_space.py /tmp/space            # then: cd /tmp/space && git commit && git push

A Space refuses plain-git files over 10 MB, and the repository stores its weights as plain blobs
(clones and CI need no LFS). This script copies the tracked files (`git ls-files`) into TARGET,
writes `.gitattributes` so that weights (`*.safetensors`, `spm.model`) are LFS files, checks that
no other file is over 10 MB, and checks the README front matter against the project
(`python_version` against `requires-python`, `sdk_version` against the Gradio pin, `app_file`).
The Space's requirements.txt also gets CTranslate2 (`requirements-ct2.txt`): a Space serves many visitors
on two CPUs, and the app's bulk paths translate with it when it is installed (`--without-ct2` leaves it out).
With `git lfs` installed it also runs `git init` and `git lfs install` in TARGET and stages the
files; without it, it writes `.gitattributes` and says what to install. Exit status 1 on a problem.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLAIN_FILE_LIMIT = 10 * 1024 * 1024  # bytes: the Hub refuses bigger files outside LFS
LFS_PATTERNS = ("*.safetensors", "spm.model")  # the weights and the SentencePiece model
LFS_RULE = "{} filter=lfs diff=lfs merge=lfs -text"


@dataclass
class Report:
    target: Path
    copied: int = 0
    lfs_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def tracked_files(repo: Path) -> list[str]:
    """The repository's files as git knows them (untracked and ignored files stay behind)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True)
    return [name for name in out.stdout.decode("utf-8").split("\0") if name and (repo / name).is_file()]


def lfs_patterns(gitattributes: str) -> list[str]:
    """Patterns a .gitattributes sends through LFS."""
    return [line.split()[0] for line in gitattributes.splitlines() if "filter=lfs" in line.split()[1:]]


def is_lfs(name: str, patterns: list[str]) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(base, p) if "/" not in p else fnmatch.fnmatch(name, p.lstrip("/")) for p in patterns)


def lfs_available() -> bool:
    try:
        return subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0
    except OSError:
        return False


# --- README front matter ----------------------------------------------------------------------


def front_matter(readme: str) -> dict[str, str]:
    """The `key: value` lines between the README's opening `---` lines (quotes stripped)."""
    lines = readme.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    values = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return values
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return {}


def _requires_python(pyproject: str) -> str | None:
    found = re.search(r'^requires-python\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    return found.group(1) if found else None


def _pin(requirements: str, package: str) -> str | None:
    found = re.search(rf"^{re.escape(package)}==([^\s#;]+)", requirements, re.MULTILINE | re.IGNORECASE)
    return found.group(1) if found else None


def check_front_matter(repo: Path) -> list[str]:
    """What the README front matter gets wrong for a Space build of this repository (empty: nothing)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    meta = front_matter((repo / "README.md").read_text(encoding="utf-8"))
    if not meta:
        return ["README.md has no front matter (--- … ---) for the Space"]
    problems = []
    requires = _requires_python((repo / "pyproject.toml").read_text(encoding="utf-8"))
    python = meta.get("python_version")
    if not python:
        problems.append("README front matter has no python_version: Spaces would use their default Python")
    elif requires:
        try:
            if Version(python) not in SpecifierSet(requires):
                problems.append(f"python_version {python} does not satisfy requires-python {requires!r} (pyproject.toml)")
        except (InvalidVersion, InvalidSpecifier) as error:
            problems.append(f"python_version {python!r} or requires-python {requires!r} is unreadable ({error})")
    gradio = _pin((repo / "requirements.txt").read_text(encoding="utf-8"), "gradio")
    if meta.get("sdk") == "gradio" and meta.get("sdk_version") != gradio:
        problems.append(f"sdk_version {meta.get('sdk_version')} differs from the Gradio pin {gradio} in requirements.txt")
    app_file = meta.get("app_file")
    if not app_file or not (repo / app_file).is_file():
        problems.append(f"app_file {app_file!r} is not a file of the repository")
    return problems


# --- the copy -----------------------------------------------------------------------------------


def prepare_space(target: Path, repo: Path = PROJECT_ROOT, use_git: bool | None = None, ct2: bool = True) -> Report:
    """Copy `repo`'s tracked files into the empty (or new) folder `target`, set up LFS, check sizes;
    `ct2`: add CTranslate2's pin to the copy's requirements.txt."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} is not empty: give a new or empty folder")
    report = Report(target)
    report.problems += check_front_matter(repo)
    for name in tracked_files(repo):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, destination)
        report.copied += 1
    if ct2:
        report.notes += add_ct2_requirement(target)

    attributes = target / ".gitattributes"
    existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    patterns = lfs_patterns(existing)
    missing = [LFS_RULE.format(p) for p in LFS_PATTERNS if p not in patterns]
    if missing:
        attributes.write_text(
            existing + ("\n" if existing and not existing.endswith("\n") else "") + "\n".join(missing) + "\n", encoding="utf-8"
        )
    patterns = lfs_patterns(attributes.read_text(encoding="utf-8"))

    for path in sorted(p for p in target.rglob("*") if p.is_file() and ".git" not in p.relative_to(target).parts):
        name = path.relative_to(target).as_posix()
        if is_lfs(name, patterns):
            report.lfs_files.append(name)
        elif path.stat().st_size > PLAIN_FILE_LIMIT:
            report.problems.append(
                f"{name}: {path.stat().st_size / 1e6:.1f} MB, over the 10 MB a Space takes outside "
                "Git LFS (add its pattern to .gitattributes)"
            )

    if use_git is None:
        use_git = lfs_available()
    if use_git:
        for command in (["git", "init", "-q"], ["git", "lfs", "install", "--local"], ["git", "add", "-A"]):
            subprocess.run(command, cwd=target, check=True, capture_output=True)
        report.notes.append(
            f"git repository with LFS set up and files staged: cd {target} && git commit -m 'Space' && "
            "git remote add space https://huggingface.co/spaces/OWNER/NAME && git push space HEAD:main"
        )
    else:
        report.notes.append(
            "git lfs is not installed: .gitattributes is written, but install Git LFS "
            f"(https://git-lfs.com) and run `git init && git lfs install` in {target} before committing, "
            "or the Space will refuse the weights"
        )
    return report


def add_ct2_requirement(target: Path) -> list[str]:
    """Append the pins of requirements-ct2.txt to the copy's requirements.txt (a Space installs only that file)."""
    extra, requirements = target / "requirements-ct2.txt", target / "requirements.txt"
    if not extra.exists() or not requirements.exists():
        return ["no requirements-ct2.txt: the Space runs without CTranslate2 (bulk translation on PyTorch)"]
    pins = [line for line in extra.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    current = requirements.read_text(encoding="utf-8")
    added = ["# CTranslate2 for the bulk paths (tools/prepare_space.py)", *pins]
    requirements.write_text(current + ("" if current.endswith("\n") else "\n") + "\n".join(added) + "\n", encoding="utf-8")
    return [f"requirements.txt gains {', '.join(pins)}: the app's bulk paths translate with CTranslate2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy the repository for a Hugging Face Space push, weights via Git LFS.")
    parser.add_argument("target", help="a new or empty folder")
    parser.add_argument("--repo", default=str(PROJECT_ROOT), help="the repository to copy (default: this one)")
    parser.add_argument("--without-ct2", action="store_true", help="leave CTranslate2 out of the Space's requirements")
    args = parser.parse_args(argv)
    try:
        report = prepare_space(Path(args.target), Path(args.repo), ct2=not args.without_ct2)
    except (ValueError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{report.copied} files copied to {report.target}; through Git LFS: {', '.join(report.lfs_files) or 'none'}")
    for note in report.notes:
        print(note)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
