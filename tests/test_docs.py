"""The documentation site builds from README.md with real output, strictly (no broken link,
no missing page): scripts/build_docs.py, then ``mkdocs build --strict``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("material")
ROOT = Path(__file__).resolve().parents[1]


def _needs_public_data() -> None:
    from tokenprint.errors import TokenprintError
    from tokenprint.samples import find_data

    try:
        find_data()
    except TokenprintError as exc:
        pytest.skip(f"the sample data is cut from the public datasets: {exc}")


def test_docs_build_strictly(tmp_path: Path):
    _needs_public_data()
    (tmp_path / "docs").mkdir()
    for page in ("method.md", "grafana.md", "mutation.md"):     # written by hand / by a run
        if (ROOT / "docs" / page).is_file():
            shutil.copy(ROOT / "docs" / page, tmp_path / "docs" / page)
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--out",
                    str(tmp_path / "docs")], check=True, env=env, timeout=600)
    pages = {p.relative_to(tmp_path / "docs").as_posix() for p in (tmp_path / "docs").rglob("*.md")}
    assert {"index.md", "method.md", "commands/study.md", "commands/plan.md",
            "commands/serve.md"} <= pages
    study = (tmp_path / "docs" / "commands" / "study.md").read_text()
    assert "## `--help`" in study and "![" in study and "Output on the sample data" in study
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                        str(tmp_path / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "method" / "index.html").is_file()
    assert (tmp_path / "site" / "commands" / "study" / "index.html").is_file()
