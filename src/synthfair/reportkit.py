"""One kit for synthfair's reports: the HTML ones (soundness, study) get a page, tables with intervals folded
in and inline images (self-contained: data URIs, no external assets); the demo's Markdown report gets its
tables here too.

    parts = [heading("Results"), table(frame), image(png_bytes, "auroc")]
    write_page(path, "SynthFair study", parts)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from synthfair.fileio import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; } .cell { text-align: center; font-size: 0.75em; }
img { max-width: 100%; } img.pixels { image-rendering: pixelated; } .note { color: #a60; }
"""


def write_page(path: Path, title: str, parts: Sequence[str]) -> None:
    """The page ``title`` with the HTML ``parts`` in order, written atomically to ``path``."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    text = f"<!doctype html><html><head>{head}</head><body>{''.join(parts)}</body></html>"
    atomic_write(path, lambda f: f.write(text.encode()))


def note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table, intervals folded in (`compact`), columns empty everywhere dropped."""
    if frame.empty:
        return note("nothing to show")
    frame = compact(frame)
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, escape=True)


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """``x``, ``x_lo``, ``x_hi`` -> one column ``x [lo, hi]`` as text; columns empty in every row dropped."""
    frame = frame.dropna(axis=1, how="all").copy()
    for column in [c for c in frame.columns if f"{c}_lo" in frame and f"{c}_hi" in frame]:
        lo, hi = frame.pop(f"{column}_lo"), frame.pop(f"{column}_hi")
        frame[column] = [
            "" if pd.isna(v) else f"{v:.4g} [{a:.4g}, {b:.4g}]"
            for v, a, b in zip(frame[column], lo, hi, strict=True)
        ]
    return frame


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image(png: bytes, alt: str) -> str:
    """A PNG (a plot) inline."""
    return f"<img alt='{html.escape(alt)}' src='{data_uri(png)}'>"


def pixels(array: np.ndarray, scale: int = 2) -> str:
    """A grey image in [0, 1] as a data URI, each pixel ``scale`` x ``scale`` (no smoothing)."""
    picture = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return data_uri(buf.getvalue())


def markdown_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A numeric ``frame`` as Markdown lines: its index first, values in ``%g``."""
    head = [str(frame.index.name or ""), *map(str, frame.columns)]
    rows = [[str(i), *(f"{v:g}" for v in row)] for i, row in zip(frame.index, frame.to_numpy(), strict=True)]
    return [markdown_row(r) for r in [head, ["---"] * len(head), *rows]]
