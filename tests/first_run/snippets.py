"""Shell commands in the README and docs/: every fenced ``bash`` block, one command a line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# A fenced block, and the `<!-- needs: ... -->` comment right before it, if any.
_BLOCK = re.compile(r"(<!-- needs: [^>]*-->\n\s*)?^ *```(bash|python)\n(.*?)^ *```", re.S | re.M)


def blocks(path: Path, language: str, *, skipped: bool = False) -> list[str]:
    """The blocks of ``language``; those marked ``<!-- needs: ... -->`` only when ``skipped``."""
    found = []
    for needs, kind, body in _BLOCK.findall(path.read_text()):
        if kind == language and bool(needs) == skipped:
            found.append(textwrap.dedent(body).strip())
    return found


def bash_blocks(path: Path) -> list[str]:
    return blocks(path, "bash")


def commands(path: Path) -> list[str]:
    """Each command of each bash block not marked ``needs`` (continuation lines joined,
    comments dropped)."""
    found = []
    for block in bash_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def first_command() -> str:
    return commands(ROOT / "README.md")[0]
