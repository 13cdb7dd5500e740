"""Locating keys in a TOML source: the line of every table header and key, by path.

``tomllib`` gives no positions, so :func:`key_lines` finds them in the source text itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["key_lines", "line_of", "dotted"]

_KEY = r'(?:[A-Za-z0-9_\-]+|"[^"]*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(_KEY, text))


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def key_lines(text: str) -> dict[tuple, int]:
    """The line (1-based) of every table header and key, by path: ``("methods", 0, "preset")``.

    Arrays of tables get their index in the path. Keys of inline tables (``params = {a = 1}``)
    get the line of their ``{``-line.
    """
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()

    def indexed(path: tuple[str, ...]) -> tuple:
        out: tuple = ()
        for part in path:
            out = out + (part,)
            if out in counts:
                out = out + (counts[out],)
        return out

    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        m = re.match(rf"^\[\[\s*({_DOTTED})\s*\]\]", line)
        if m:
            path = _split_dotted(m.group(1))
            parent = indexed(path[:-1])
            key = parent + (path[-1],)
            counts[key] = counts.get(key, -1) + 1
            current = key + (counts[key],)
            lines.setdefault(key, no)
            lines[current] = no
            continue
        m = re.match(rf"^\[\s*({_DOTTED})\s*\]", line)
        if m:
            current = indexed(_split_dotted(m.group(1)))
            lines.setdefault(current, no)
            continue
        m = re.match(rf"^({_DOTTED})\s*=(.*)$", line)
        if m:
            key = current + _split_dotted(m.group(1))
            lines.setdefault(key, no)
            rest = m.group(2)
            if "{" in rest:  # inline table: its keys (one level) on this line
                for k in re.findall(rf"[{{,]\s*({_KEY})\s*=", rest):
                    lines.setdefault(key + _split_dotted(k), no)
    return lines


def line_of(lines: Mapping[tuple, int], path: tuple) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
