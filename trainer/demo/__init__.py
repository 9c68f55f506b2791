"""The demo (`mixture demo`, `make demo`): the paper's introduction-point study in miniature, end to end.

Modules: :mod:`~trainer.demo.scenes` (shape scenes, captions, questions), :mod:`~trainer.demo.corpus`
(the stdlib's docstrings as text), :mod:`~trainer.demo.data` (raw data + ``mixture ingest``),
:mod:`~trainer.demo.study` (data -> sweep -> training -> measurement -> report),
:mod:`~trainer.demo.measure` (answer prior, per-question VQA, grounding control, text loss before and
after fine-tuning), :mod:`~trainer.demo.summary` (``summary.json``, the printed summary, the figure) and
:mod:`~trainer.demo.cli`. The mixture file and base run config templates are package data
(``templates/``), read with :mod:`importlib.resources`, so the demo runs from an installed wheel;
``examples/demo/`` holds copies of them for the README's tour (a test keeps them identical).
"""

from __future__ import annotations

from importlib import resources

TEMPLATES = ("intro_point.yaml", "run.yaml")


def template(name: str) -> str:
    """The text of a packaged template (``intro_point.yaml`` or ``run.yaml``)."""
    if name not in TEMPLATES:
        raise ValueError(f"no demo template {name!r}; the templates are {', '.join(TEMPLATES)}")
    return resources.files(__name__).joinpath("templates", name).read_text(encoding="utf-8")


def clock(seconds: float) -> str:
    """``m:ss`` for a number of seconds."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
