"""bench/check_figures.py: every figure in the README's result tables is backed by a stored artifact.

It passes on the real README, and fails, naming the figure, on a copy with one figure altered
(in the generated speed block, and in a hand-written table backed by a JSON file)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import check_figures

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "check_figures.py"


def run_check(readme: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_real_readme_passes() -> None:
    done = run_check(ROOT / "README.md")
    assert done.returncode == 0, done.stdout + done.stderr


def _copy_with(tmp_path: Path, old_line: str, new_line: str) -> Path:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(old_line) == 1
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(old_line, new_line), encoding="utf-8")
    return copy


def test_an_altered_speed_figure_fails(tmp_path: Path) -> None:
    """One sentences/s figure of the generated table changed by hand."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(check_figures.BEGIN) : text.index(check_figures.END)]
    line = next(row for row in block.splitlines() if row.startswith("| greedy, one batch at a time"))
    figure = re.search(r"\*\*([\d,.]+)\*\*", line).group(1)
    changed = line.replace(f"**{figure}**", "**7,777**", 1)
    done = run_check(_copy_with(tmp_path, line, changed))
    assert done.returncode == 1, done.stdout
    assert "generated speed block differs" in done.stdout and "7,777" in done.stdout, done.stdout


def test_an_altered_quality_figure_fails(tmp_path: Path) -> None:
    """The shipped model's en→de BLEU in its hand-written table, which eval_test.json backs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(row for row in text.splitlines() if row.startswith("| en→de |"))
    cells = line.split("|")
    cells[2] = " 91.3 "  # the BLEU column; no stored value rounds to it
    done = run_check(_copy_with(tmp_path, line, "|".join(cells)))
    assert done.returncode == 1, done.stdout
    assert re.search(r"README\.md:\d+: 91\.3 \('en→de', section 'The shipped model", done.stdout), done.stdout


def test_rounding_and_percentages() -> None:
    values, _ = check_figures.stored_values([])
    assert values == []
    values = sorted({4642.97, 464297.0, 4.64297, 4.534, 0.5319, 53.19, 0.0005319, 0.000519})
    assert check_figures.backed("4,643", values)
    assert not check_figures.backed("4,650", values)
    assert check_figures.backed("53", values)  # a share stored as 0.5319, printed as 53%
    assert not check_figures.backed("53.3", values)


def test_table_figures_skip_labels_floors_and_code() -> None:
    lines = ["| direction | BLEU | floor |", "| --- | ---: | ---: |", "| en→de 2016 | 35.0 `x 12` | 30 ✓ |"]
    found = list(check_figures.table_figures(1, lines, skip_headers=("floor",)))
    assert [(n, figure) for n, figure, _ in found] == [(3, "35.0")]


@pytest.mark.parametrize("missing", ["transfer"])
def test_a_section_without_its_artifact_fails(tmp_path: Path, missing: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("## Looking inside\n\n| direction | BLEU |\n| --- | ---: |\n| en→cs | 12.3 |\n", encoding="utf-8")
    problems, _ = check_figures.check(readme, root=tmp_path)
    assert any("12.3" in p and "no artifact" in p for p in problems), problems
