"""HTML tables for the site and federation reports: one builder, escaped cells, numbers right."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["html_table", "td"]


def td(text: object, *, numeric: bool = False, css: str = "", title: str = "") -> str:
    """One escaped `<td>`; `numeric` right-aligns it (class "num")."""
    classes = " ".join(part for part in ("num" if numeric else "", css) if part)
    attributes = (f' class="{classes}"' if classes else "") + (
        f' title="{escape(title)}"' if title else ""
    )
    return f"<td{attributes}>{escape(str(text))}</td>"


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, scroll: bool = False
) -> str:
    """`rows` hold ready-made cells (`td(...)` or `<th>`); `header` plain text, empty for none.

    >>> html_table(["a"], [[td("x<y")]])
    '<table>\\n<tr><th>a</th></tr>\\n<tr><td>x&lt;y</td></tr>\\n</table>'
    """
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "\n".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    head_row = f"<tr>{head}</tr>\n" if header else ""
    table = f"<table>\n{head_row}{body}\n</table>"
    return f'<div class="scroll">{table}</div>' if scroll else table
