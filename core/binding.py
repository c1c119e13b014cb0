"""The binding of a write: a hash of exactly what a human is asked to approve.

The call (tool, target, parameters) and the facts its preview shows (by default the preview text
itself; a tool whose preview counts seconds declares the stable facts instead). A decision is
signed over it, so an approval never carries over to a change that is not the one that was shown.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def binding(tool: str, target: str, params: dict[str, Any], facts: Any) -> str:
    canonical = json.dumps(
        {"tool": tool, "target": target, "params": params, "facts": facts},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
