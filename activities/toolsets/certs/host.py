"""Reading files on a certificate target's host: locally, or over SSH with the host key checked.

Always through the one command runner, with ``tail`` (bounded output, never a shell): several
files in one run come back split on ``tail -v``'s ``==> path <==`` headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from activities.catalog import ToolFailure
from activities.toolsets.commands import run_on
from core.models import ToolErrorKind
from core.targets import CertsTarget

READ_LIMIT = 256 * 1024
_HEADER = re.compile(r"^==> (.*) <==$")


async def read_files(target: CertsTarget, paths: Sequence[str]) -> dict[str, str | None]:
    """Each path's text (its last 256 KiB), or None when it cannot be read."""
    if not paths:
        return {}
    result = await run_on(
        target.ssh,
        ["tail", "-v", "-c", str(READ_LIMIT), "--", *paths],
        limit=30,
    )
    found: dict[str, str | None] = dict.fromkeys(paths)
    current: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if current is not None and current in found:
            found[current] = "\n".join(lines).rstrip("\n") + "\n"

    for line in result.stdout.splitlines():
        header = _HEADER.match(line)
        if header and header.group(1) in found:
            flush()
            current, lines = header.group(1), []
            continue
        lines.append(line)
    flush()
    if all(v is None for v in found.values()) and not result.ok:
        text = result.tail(300)
        kind = ToolErrorKind.NOT_FOUND if "No such file" in text else ToolErrorKind.FAILED
        raise ToolFailure(kind, f"cannot read {', '.join(paths)} on {result.where}: {text}")
    return found


async def read_file(target: CertsTarget, path: str) -> str:
    text = (await read_files(target, [path]))[path]
    if text is None:
        raise ToolFailure(ToolErrorKind.NOT_FOUND, f"cannot read {path} on the {target.name} host")
    return text


async def list_files(target: CertsTarget, directory: str, pattern: str) -> list[str]:
    """Regular files directly in ``directory`` whose names match the glob ``pattern``."""
    result = await run_on(
        target.ssh,
        ["find", directory, "-maxdepth", "1", "-type", "f", "-name", pattern],
        limit=30,
    )
    if not result.ok:
        text = result.tail(300)
        kind = ToolErrorKind.NOT_FOUND if "No such file" in text else ToolErrorKind.FAILED
        raise ToolFailure(kind, f"cannot list {directory} on {result.where}: {text}")
    return sorted(line for line in result.stdout.splitlines() if line.strip())
