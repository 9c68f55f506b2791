"""The report pages: self-contained HTML, exact cell formatting, a cheap CLI module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from analysis.html import Page, exact, fmt, write_report
from tests.analysis.fixtures import assert_self_contained


def test_fmt_cells() -> None:
    values = (None, True, 1234567, 0.123456, 1234.5678, 12345.678, 1e-7, 3e9, 3_440_000_368_640.0,
              28_000_000_000, float("nan"), "x")
    assert [fmt(v) for v in values] == \
        ["-", "yes", "1,234,567", "0.1235", "1,234.6", "12.35k", "1.000e-07", "3B", "3.44T", "28B", "-", "x"]
    assert exact(3_440_000_368_640.0) == "3,440,000,368,640.0" and exact(1234567) == ""


def test_page_escapes_and_embeds(tmp_path: Path) -> None:
    from analysis.plots import grid

    page = Page("<title>", "a & b")
    page.table([{"name": "<b>", "ok": True, "bad": False}], left=("name",))
    fig, (ax,) = grid(1)
    ax.plot([0, 1], [0, 1])
    page.figure(fig, "line", "a line")
    paths = write_report(tmp_path, page, {"x": float("nan"), "y": [1, 2]}, figures=True)
    text = paths["html"].read_text()
    assert "&lt;title&gt;" in text and "&lt;b&gt;" in text and "&#10003;" in text and "&#10007;" in text
    assert json.loads(paths["json"].read_text()) == {"x": None, "y": [1, 2]}
    png = (paths["figures"] / "line.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"matplotlib.org" not in png
    assert_self_contained(paths["html"])


def test_cli_module_is_cheap_and_analysis_never_imports_torch() -> None:
    code = ("import sys, analysis.cli; heavy = ('polars', 'matplotlib', 'numpy', 'pyarrow');"
            "print([m for m in heavy if m in sys.modules]);"
            "import analysis.report, analysis.compare, analysis.stats_page;"
            "print([m for m in ('torch', 'streaming', 'composer') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]
