"""Mutation testing of the policy and the verification expectations: every single-fault variant
of approval/policy.py must fail tests/unit/test_policy, every one of core/expectations.py must fail
tests/unit/test_expectations (``make mutate`` prints the same reports).

A HARD override that lowers a FORBIDDEN tool, a risk that no longer makes a write HARD, a
verification that passes when any check holds, a path that indexes into a string: each is a
mutant here, and a mutant the tests let through fails this test.

The accepted equivalents below change no observable behaviour; each is listed by its mutant's
``what`` text, with why, and must still be among the survivors (a stale entry fails too).
"""

from __future__ import annotations

from tests.mutate import Report, run

POLICY_EQUIVALENTS = {
    # line ~105, under `if learned.restriction`: inside the block the level is never FORBIDDEN,
    # so setting HARD when it is already HARD changes nothing (the reason is appended either way).
    # The same text at line ~95 (the risks) is NOT equivalent: the reason differs, and it is killed.
    "if level.rank < RiskLevel.HARD.rank forced True": "restriction: HARD is already HARD",
}

EXPECTATIONS_EQUIVALENTS = {
    # _number(None) falls through the isinstance(int | float) test to the final `return None`.
    "operand 'value is None' dropped": "None is no int or float: the last return gives None",
    # Python compares an int with a float bound exactly; float(value) only differs beyond 2**53,
    # where the mutant is the more exact one (2**53 + 1 <= 2**53.0 is False, as a float True).
    "return float(value) → return value": "int and float compare alike below 2**53",
}


def unexplained(report: Report, equivalents: dict[str, str]) -> list[str]:
    """The survivors that are not accepted equivalents; each equivalent excuses one survivor and
    must be one (an entry that no longer survives is stale)."""
    survived = [m.what for m in report.survivors]
    for what in equivalents:
        assert what in survived, f"accepted equivalent {what!r} no longer survives: drop it"
        survived.remove(what)
    return survived


def test_every_mutant_of_the_policy_is_killed() -> None:
    report = run("approval.policy", "tests.unit.test_policy")
    assert len(report.mutants) >= 85, report.lines()
    assert not unexplained(report, POLICY_EQUIVALENTS), "\n".join(report.lines())


def test_every_mutant_of_the_verification_expectations_is_killed() -> None:
    report = run("core.expectations", "tests.unit.test_expectations")
    assert len(report.mutants) >= 90, report.lines()
    assert not unexplained(report, EXPECTATIONS_EQUIVALENTS), "\n".join(report.lines())
