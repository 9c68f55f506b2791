"""One self-contained HTML page per report: inline CSS, plots as inline PNG, no script, no network.

A :class:`Page` collects headings, short explanations, tables and matplotlib figures in order;
:func:`write_report` writes ``report.html``, ``report.json`` (every number the page shows) and, on request,
each figure as its own PNG (for documentation). Numbers are formatted by :func:`fmt`, which the terminal
summaries use too, so the page and the terminal agree digit for digit. Large amounts are short (``3.44T``);
the page shows every digit on hover (a cell's title) and ``report.json`` holds the exact values. Wide
tables scroll sideways inside the page instead of overflowing it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;margin:0;background:#f5f6f8}
main{max-width:1120px;margin:0 auto;padding:24px 32px 64px;background:#fff;box-shadow:0 0 12px #0001}
h1{font-size:26px;margin:8px 0 4px}
h2{font-size:20px;margin:34px 0 6px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 4px}.sub{color:#5b6470;margin:0 0 18px}.what{color:#3c4550;margin:4px 0 10px}
.scroll{overflow-x:auto;max-width:100%;margin:8px 0 16px}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid #e6e9ed;text-align:right}th{background:#f0f2f5;font-weight:600}
td.l,th.l{text-align:left}tr:hover td{background:#fafbfc}
figure{margin:10px 0 22px}figure img{max-width:100%;border:1px solid #e6e9ed}
figcaption{font-size:13px;color:#5b6470;margin-top:4px}
.notes{background:#fff7e0;border-left:4px solid #e0a800;padding:8px 14px;margin:12px 0}
.ok{color:#18794e;font-weight:600}.bad{color:#c62828;font-weight:600}
"""


def fmt(value: Any) -> str:  # noqa: ANN401 - any cell value
    """A table cell: ints with separators below 10M, amounts from 10M up (and floats from 10k up) with an SI
    suffix to 4 significant digits (``3.44T``), other floats to 4 significant digits, None as a dash."""
    from mixture.progress import human

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 10_000_000 else human(value, 4)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1000:
            return f"{value:.4g}"
        if 1000 <= abs(value) < 10_000:
            return f"{value:,.1f}"
        return human(value, 4) if 1e4 <= abs(value) < 1e15 else f"{value:.3e}"
    return str(value)


def exact(value: Any) -> str:  # noqa: ANN401 - any cell value
    """Every digit of a number (the hover text of a shortened cell); "" when :func:`fmt` already shows all."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or fmt(value) == f"{value:,}":
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}" if abs(value) < 1e4 else f"{value:,.1f}"


@dataclass
class Figure:
    """A rendered figure: its file name (for ``--figures``), PNG bytes and caption."""

    name: str
    png: bytes
    caption: str


@dataclass
class Page:
    """An HTML report under construction (parts are appended in reading order)."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading."""
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        """A short explanation ("what this shows")."""
        self.parts.append(f'<p class="what">{html.escape(text)}</p>')

    def notes(self, notes: list[str]) -> None:
        """Warnings worth reading first (nothing is shown when there are none)."""
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            self.parts.append(f'<div class="notes"><ul>{items}</ul></div>')

    def table(self, rows: list[dict[str, Any]], columns: list[str] | None = None,
              left: tuple[str, ...] = ()) -> None:
        """A table of ``rows`` (dicts); ``columns`` picks and orders them, ``left`` aligns text columns."""
        if not rows:
            return
        columns = columns or list(rows[0])
        cls = {c: ' class="l"' if c in left else "" for c in columns}
        head = "".join(f"<th{cls[c]}>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td{cls[c]}>{_cell(r.get(c))}</td>" for c in columns) + "</tr>"
                       for r in rows)
        self.parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                          "</table></div>")

    def figure(self, fig: Any, name: str, caption: str) -> None:  # noqa: ANN401 - a matplotlib Figure
        """Embed a matplotlib figure as an inline PNG (and close it)."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        # No "Software" text chunk: it would carry matplotlib's URL into the page.
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        png = buffer.getvalue()
        self.figures.append(Figure(name, png, caption))
        data = base64.b64encode(png).decode()
        self.parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def render(self) -> str:
        """The whole page."""
        sub = f'<p class="sub">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title><style>{_CSS}</style></head><body><main><h1>{html.escape(self.title)}</h1>{sub}"
                + "\n".join(self.parts) + "</main></body></html>\n")


def _cell(value: Any) -> str:  # noqa: ANN401 - any cell value
    if value is True:
        return '<span class="ok">&#10003;</span>'
    if value is False:
        return '<span class="bad">&#10007;</span>'
    title = exact(value)
    shown = html.escape(fmt(value))
    return f'<span title="{html.escape(title)}">{shown}</span>' if title else shown


def _jsonable(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    """Plain JSON: NaN and infinities become null (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return _jsonable(value.item())
    return value


def write_report(out_dir: str | Path, page: Page, data: dict[str, Any], figures: bool = False) -> dict[str, Path]:
    """Write ``report.html`` and ``report.json`` (and ``figures/NAME.png`` with ``figures``) into ``out_dir``.

    Returns:
        The paths written, by role: ``html``, ``json`` and ``figures`` (a directory) when asked for.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "report.json"}
    paths["html"].write_text(page.render(), encoding="utf-8")
    paths["json"].write_text(json.dumps(_jsonable(data), indent=1) + "\n", encoding="utf-8")
    if figures:
        paths["figures"] = out / "figures"
        paths["figures"].mkdir(exist_ok=True)
        for fig in page.figures:
            (paths["figures"] / f"{fig.name}.png").write_bytes(fig.png)
    return paths
