"""Mutation testing of core/redact.py: every single-fault variant must fail tests/unit/test_redact.

A redact() that skips nested values, a dropped pattern or secret word, a forgotten tuple branch:
each is a mutant here, and a mutant the tests let through fails this test (``make mutate`` prints
the same report).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.mutate import run

# The tests this project had before mutation testing: they pass on a redact() that skips nested
# strings, which is what the mutation run must catch.
WEAK_TESTS = """
from core.redact import redact, redact_text

def test_text() -> None:
    assert "hunter2" not in redact_text("postgresql://app:hunter2@db/x password=s3cret")

def test_keys() -> None:
    data = {"params": {"api_key": "k", "nested": [{"password": "p", "name": "web"}]}}
    assert redact(data) == {"params": {"api_key": "***", "nested": [{"password": "***", "name": "web"}]}}
"""


def test_every_mutant_of_redact_is_killed() -> None:
    report = run("core.redact", "tests.unit.test_redact")
    assert len(report.mutants) >= 100, report.lines()
    assert not report.survivors, "\n".join(report.lines())


def test_the_mutation_run_finds_the_holes_of_weak_tests(tmp_path: Path) -> None:
    (tmp_path / "weak_redact_tests.py").write_text(textwrap.dedent(WEAK_TESTS))
    sys.path.insert(0, str(tmp_path))
    try:
        report = run("core.redact", "weak_redact_tests")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("weak_redact_tests", None)
    survived = [m.what for m in report.survivors]
    assert "return redact_text(value) → return value" in survived, survived  # nested strings
    assert any(w.startswith("tuple dropped from isinstance") for w in survived), survived
    assert any("'token'" in w for w in survived), survived
