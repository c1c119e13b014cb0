"""The tool and runbook reference: rendered from the catalog, and the committed docs never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from activities.runbooks import load_runbooks
from activities.toolsets import default_catalog
from core.models import Condition, Expectation
from tests.unit.test_cli import cli
from workers.reference import expectation, parameters, runbooks_markdown, tools_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_docs_match_the_catalog_and_runbooks() -> None:
    catalog = default_catalog()
    assert (DOCS / "tools.md").read_text() == tools_markdown(catalog), (
        "docs/tools.md is stale: run `homelab-agents tools docs`"
    )
    assert (DOCS / "runbooks.md").read_text() == runbooks_markdown(load_runbooks(catalog)), (
        "docs/runbooks.md is stale: run `homelab-agents tools docs`"
    )


def test_every_tool_and_runbook_is_in_the_reference() -> None:
    catalog = default_catalog()
    tools = tools_markdown(catalog)
    for spec in catalog:
        row = next(line for line in tools.splitlines() if line.startswith(f"| `{spec.name}` |"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1] == spec.kind.value
        assert cells[2] == (spec.level.value if spec.is_write else "–")
    books = load_runbooks(catalog)
    text = runbooks_markdown(books)
    for book in books:
        assert f"### {book.name}" in text
        for alert in book.alerts:
            assert f"`{alert}`" in text


def test_parameters_show_types_defaults_required_and_escape_pipes() -> None:
    class Params(BaseModel):
        size: str = Field(description="new size (12G) | growth (+2G) of <disk>")
        keep: int = 3
        mode: str | None = None
        kind: Literal["lxc", "qemu"] = "lxc"

    text = parameters(Params.model_json_schema())
    assert text.split("<br>") == [
        "`size` (string, required): new size (12G) \\| growth (+2G) of &lt;disk&gt;",
        "`keep` (integer, default `3`)",
        "`mode` (string, default `None`)",
        "`kind` (`lxc` \\| `qemu`, default `'lxc'`)",
    ]


def test_expectations_read_like_the_yaml_they_come_from() -> None:
    assert expectation(Expectation(path="state.running", equals=True)) == "state.running = true"
    assert expectation(Expectation(path="state.health", equals=None)) == "state.health = null"
    assert expectation(Expectation(path="free_percent", gt=10)) == "free_percent > 10"
    assert expectation(Expectation(path="ratio", le=0.25)) == "ratio ≤ 0.25"
    assert expectation(Expectation(path="restart_count", stable=True)) == "restart_count stable"
    assert (
        expectation(Condition(evidence="disk", path="largest_log.size", gt=52428800))
        == "disk.largest_log.size > 52428800"
    )
    assert expectation(Expectation(path="state", **{"in": ["a", "b"]})) == 'state in ["a", "b"]'


def test_docs_check_fails_on_stale_files_and_passes_once_written(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    stale = cli("tools", "docs", "--check", "--output", str(out))
    assert stale.returncode == 1 and "out of date" in stale.stderr
    assert not out.exists()  # --check writes nothing
    written = cli("tools", "docs", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert (out / "tools.md").read_text() == (DOCS / "tools.md").read_text()
    assert cli("tools", "docs", "--check", "--output", str(out)).returncode == 0


def test_readme_tool_table_is_generated_from_the_catalog() -> None:
    """The README once said "Docker (16)" while the catalog had 17: its table is generated now."""
    from workers.reference import README_BEGIN, README_END, readme_tools

    catalog = default_catalog()
    readme = (DOCS.parent / "README.md").read_text()
    block = readme[readme.index(README_BEGIN) : readme.index(README_END) + len(README_END)]
    assert block == readme_tools(catalog), (
        "README tool table is stale: run `homelab-agents tools docs`"
    )
    for toolset in catalog.toolsets:
        count = len(catalog.for_service(toolset.service))
        assert f"| {toolset.service} | {count} |" in block
    assert "disk_usage" in block
