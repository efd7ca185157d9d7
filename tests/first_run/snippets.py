"""Shell commands in the README and docs/: every fenced ``bash`` block, one command a line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks(path: Path) -> list[str]:
    return [block.strip() for block in _BLOCK.findall(path.read_text())]


def commands(path: Path) -> list[str]:
    """Each command of each bash block (continuation lines joined, comments dropped)."""
    found = []
    for block in bash_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def first_command() -> str:
    return commands(ROOT / "README.md")[0]
