"""Calling an activity through its contract: the name and the result type come from one place."""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import Contract

Out = TypeVar("Out")


async def call(contract: Contract[Out], *args: Any, summary: str, **options: Any) -> Out:
    """Run the activity ``contract`` names with ``args``, decoded as its declared output."""
    output: Any = None if contract.output is type(None) else contract.output
    result: Out = await workflow.execute_activity(
        contract.name,
        args=list(args),
        result_type=output,
        summary=summary,
        **options,
    )
    return result
