"""Every fixed activity's contract has exactly one implementation, with the declared types."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from core import contracts
from tests.conftest import make_settings
from workers.worker import activities_for, build_components


def definitions(tmp_path: Path) -> dict[str, Any]:
    parts = build_components(make_settings(tmp_path))
    try:
        registered = activities_for(None, parts)  # type: ignore[arg-type]  # no calls are made
    finally:
        parts.close()
    out: dict[str, list[Any]] = {}
    for fn in registered:
        out.setdefault(fn.__temporal_activity_definition.name, []).append(fn)
    return out


def test_every_contract_has_one_implementation_with_its_types(tmp_path: Path) -> None:
    registered = definitions(tmp_path)
    for contract in contracts.ALL:
        impls = registered.get(contract.name, [])
        assert len(impls) == 1, f"{contract.name}: {len(impls)} implementations"
        hints = typing.get_type_hints(impls[0])
        returns = hints.pop("return")
        assert tuple(hints.values()) == contract.inputs, contract.name
        assert returns is contract.output or (returns is None and contract.output is type(None))


def test_contract_names_follow_one_scheme() -> None:
    names = [c.name for c in contracts.ALL]
    assert len(set(names)) == len(names)
    for name in names:
        area, _, verb = name.partition(".")
        assert area and verb and area.isidentifier() and verb.isidentifier(), name
