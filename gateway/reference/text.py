"""Plain text for the generated pages: help texts and descriptions without rich markup,
escaped for Markdown tables."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.errors import StyleSyntaxError
from rich.style import Style

_RICH_TAG = re.compile(r"(?<!\\)\[(/?[^\[\]]*)\]")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _is_rich_style(tag: str) -> bool:
    if not tag.strip():
        return False  # "[]" is text: an empty list in an example
    if tag.startswith("/"):
        return True
    try:
        Style.parse(tag)
    except StyleSyntaxError:
        return False
    return True


def _strip_markup(text: str) -> str:
    """Typer renders help texts as rich markup: a style tag such as ``[bold]`` is not part
    of what the text says. Any other bracket (``[console] listen``) is the author's and
    stays, and a bracket the author escaped for rich (``\\[default: …]``) is shown as one."""
    plain = _RICH_TAG.sub(lambda m: "" if _is_rich_style(m.group(1)) else m.group(0), text)
    return plain.replace("\\[", "[")


def _escape(text: str) -> str:
    """Prose for a Markdown page or table cell: characters Markdown would take for markup
    are escaped outside code spans (``report.<agency>.<month>.html`` would otherwise
    vanish as an HTML tag)."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_escape_prose(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_escape_prose(text[pos:]))
    return "".join(out).replace("|", "\\|").replace("\n", " ")


def _escape_prose(text: str) -> str:
    return re.sub(r"([*<])", r"\\\1", text)


def _code(text: str) -> str:
    """*text* as one Markdown code span, however many backticks it holds."""
    ticks = "`" * (max((len(t) for t in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _page(lines: list[str]) -> str:
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
