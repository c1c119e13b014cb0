"""Mutation testing of activities/llm/validate.py: every single-fault variant of plan validation
must fail tests/unit/test_plan_validation.

A validator that lets any target through, skips the redaction of the model's free text, forgets
that the target must be configured or counts actions wrong: each is a mutant here, and a mutant the
tests let through fails this test (``python -m tests.mutate activities.llm.validate
tests.unit.test_plan_validation`` prints the same report).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.mutate import run

# Mutants no test can kill: no observable behaviour differs. Excluded by their exact ``what``.
EQUIVALENT = {
    # `not text` implies `not text.strip()` for every str (the answer's text is a str).
    "operand 'not text' dropped",
    # a Draft validated from a dict (checked just before) only has field errors: loc is never empty.
    "operand \"'answer'\" dropped",
}

MUTANTS_SEEN = 78  # when these tests were written; more code means more mutants, not fewer

# Tests of the kind plan validation had before: a valid plan and an unknown tool. They pass on a
# validator that never redacts the model's text nor checks that the target is configured.
WEAK_TESTS = """
from activities.llm.validate import Draft, validate_draft
from tests.unit.test_plan_validation import CATALOG, SETTINGS, request

def test_valid() -> None:
    draft = Draft.model_validate({"actions": [{"tool": "docker.start", "rationale": "r"}]})
    plan, errors = validate_draft(draft, request(), CATALOG, SETTINGS, "llm:test")
    assert errors == [] and plan is not None and plan.actions[0].rationale == "r"

def test_unknown_tool() -> None:
    draft = Draft.model_validate({"actions": [{"tool": "docker.explode"}]})
    plan, errors = validate_draft(draft, request(), CATALOG, SETTINGS, "llm:test")
    assert plan is None and errors
"""


def test_every_mutant_of_plan_validation_is_killed() -> None:
    report = run("activities.llm.validate", "tests.unit.test_plan_validation")
    assert len(report.mutants) >= MUTANTS_SEEN, report.lines()
    survivors = [m.what for m in report.survivors]
    assert not [w for w in survivors if w not in EQUIVALENT], "\n".join(report.lines())
    # an equivalent that is no longer generated (the code changed) is dropped from the list
    assert set(survivors) == EQUIVALENT, survivors


def test_the_mutation_run_finds_the_holes_of_weak_tests(tmp_path: Path) -> None:
    (tmp_path / "weak_plan_validation_tests.py").write_text(textwrap.dedent(WEAK_TESTS))
    sys.path.insert(0, str(tmp_path))
    try:
        report = run("activities.llm.validate", "weak_plan_validation_tests")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("weak_plan_validation_tests", None)
    survived = [m.what for m in report.survivors]
    assert "_text(proposed.rationale) replaced by its argument" in survived, survived
    assert any(w.startswith("if settings.find_target(") for w in survived), survived
