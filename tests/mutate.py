"""A small mutation tester: do the tests of a module notice when its code is wrong?

Each mutant is the module's source with one deliberate fault: an element removed from a
module-level tuple or list (a secret word, a pattern), an alternative removed from a regular
expression, a call of the module's own function replaced by its argument (a recursion or a
redaction skipped) or without one of its keyword arguments, a branch's condition forced, a boolean
operand dropped, a comparison negated, a member dropped from an ``isinstance`` union, a return
that gives back the input unchanged. The test module runs against
each mutant in-process; a mutant that no test fails is a *survivor*: a hole in the tests.

    python -m tests.mutate core.redact tests.unit.test_redact      # or: make mutate

Test functions must be plain (no fixtures); ``pytest.mark.parametrize`` is expanded here.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mutant:
    line: int
    what: str
    tree: ast.Module


@dataclass
class Report:
    module: str
    tests: int
    mutants: list[Mutant] = field(default_factory=list)
    survivors: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        killed = len(self.mutants) - len(self.survivors)
        out = [
            f"{self.module}: {killed}/{len(self.mutants)} mutants killed by {self.tests} test "
            f"cases in {self.seconds:.1f}s"
        ]
        out += [f"  SURVIVED line {m.line}: {m.what}" for m in self.survivors]
        return out


# --- regular expressions: remove one alternative of a group at a time ------------------------


def regex_alternatives(pattern: str) -> Iterator[tuple[str, str]]:
    """(mutated pattern, description) for each alternative of each ``a|b|c`` in ``pattern``."""
    groups: list[list[int]] = [[0]]  # per open group: start of its first alternative, then bars
    spans: list[list[int]] = []  # per closed group: starts and bars and its end
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            start = i + 1
            if pattern[start : start + 1] == "?":
                if pattern[start + 1 : start + 2] == "P":
                    start = pattern.index(">", start) + 1
                elif pattern[start + 1 : start + 2] in ("<",) and pattern[start + 2] in "=!":
                    start += 3
                else:
                    start += 2
            groups.append([start])
        elif ch == "|":
            groups[-1].append(i)
        elif ch == ")":
            spans.append(groups.pop() + [i])
        i += 1
    spans.append(groups.pop() + [len(pattern)])
    for span in spans:
        if len(span) < 3:
            continue
        cuts = span[:-1]
        end = span[-1]
        bounds = [(cuts[0], cuts[1])] + [
            (cuts[k], cuts[k + 1] if k + 1 < len(cuts) else end) for k in range(1, len(cuts))
        ]
        for k, (lo, hi) in enumerate(bounds):
            if k == 0:  # the first alternative and the bar after it
                mutated = pattern[:lo] + pattern[hi + 1 :]
                removed = pattern[lo:hi]
            else:  # the bar before it and the alternative
                mutated = pattern[:lo] + pattern[hi:]
                removed = pattern[lo + 1 : hi]
            yield mutated, f"regex alternative {removed!r} removed"


# --- AST mutations -----------------------------------------------------------------------------

NEGATED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
}


def _is_compile(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compile"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
    )


def _function_of(tree: ast.Module, node: ast.AST) -> ast.FunctionDef | None:
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and any(n is node for n in ast.walk(fn)):
            return fn
    return None


def mutants(source: str, local_calls: set[str]) -> Iterator[Mutant]:
    """Every single-fault variant of ``source``; ``local_calls``: functions whose calls may be
    replaced by their first argument (the module's own helpers)."""
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    for index, node in enumerate(nodes):
        for what, change in _changes(tree, node, local_calls):
            mutated = copy.deepcopy(tree)
            target = list(ast.walk(mutated))[index]
            if change(target, mutated) is False:
                continue
            ast.fix_missing_locations(mutated)
            yield Mutant(getattr(node, "lineno", 0), what, mutated)


Change = Callable[[Any, ast.Module], Any]


def _changes(
    tree: ast.Module, node: ast.AST, local_calls: set[str]
) -> Iterator[tuple[str, Change]]:
    # module-level tuples and lists (word lists, the pattern table): drop one element
    if isinstance(node, ast.Assign | ast.AnnAssign) and node in tree.body:
        value = node.value
        if isinstance(value, ast.Tuple | ast.List):
            for k, element in enumerate(value.elts):
                text = ast.unparse(element)[:60]

                def drop(target: Any, _: ast.Module, k: int = k) -> None:
                    del target.value.elts[k]

                yield f"element {text!r} removed", drop
    # regular expressions: drop one alternative at a time, or the IGNORECASE flag
    if _is_compile(node):
        assert isinstance(node, ast.Call)
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            for mutated, what in regex_alternatives(first.value):

                def swap(target: Any, _: ast.Module, mutated: str = mutated) -> None:
                    target.args[0] = ast.Constant(mutated)

                yield what, swap
        for k, flag in enumerate(node.args[1:], start=1):
            if "IGNORECASE" in ast.unparse(flag):

                def no_flags(target: Any, _: ast.Module, k: int = k) -> None:
                    del target.args[k]

                yield "re.IGNORECASE removed", no_flags
    function = _function_of(tree, node)
    if function is None:
        return
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        own = node.func.id in local_calls  # another library's defaults are not ours to test
        for k, keyword in enumerate(node.keywords if own else []):

            def drop_keyword(target: Any, _: ast.Module, k: int = k) -> None:
                del target.keywords[k]

            yield f"{keyword.arg}= dropped from {ast.unparse(node)[:50]}", drop_keyword
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        if node.func.id in local_calls:

            def skip_call(target: Any, mutated: ast.Module) -> bool:
                return _replace(mutated, target, target.args[0])

            yield f"{ast.unparse(node)[:60]} replaced by its argument", skip_call
        if node.func.id == "isinstance" and isinstance(node.args[1], ast.BinOp):
            members = _union(node.args[1])
            for k in range(len(members)):

                def narrow(target: Any, _: ast.Module, k: int = k) -> None:
                    rest = _union(target.args[1])
                    del rest[k]
                    target.args[1] = _join(rest)

                yield f"{ast.unparse(members[k])} dropped from {ast.unparse(node)}", narrow
    if isinstance(node, ast.BoolOp):
        for k, operand in enumerate(node.values):

            def drop_operand(target: Any, _: ast.Module, k: int = k) -> None:
                del target.values[k]

            if len(node.values) > 2:
                yield f"operand {ast.unparse(operand)[:50]!r} dropped", drop_operand
            else:

                def keep_other(target: Any, mutated: ast.Module, k: int = k) -> bool:
                    return _replace(mutated, target, target.values[1 - k])

                yield f"operand {ast.unparse(operand)[:50]!r} dropped", keep_other

        def flip(target: Any, _: ast.Module) -> None:
            target.op = ast.Or() if isinstance(target.op, ast.And) else ast.And()

        yield f"{'and' if isinstance(node.op, ast.And) else 'or'} flipped", flip
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in NEGATED:

        def negate(target: Any, _: ast.Module) -> None:
            target.ops = [NEGATED[type(target.ops[0])]()]

        yield f"{ast.unparse(node)[:60]} negated", negate
    if isinstance(node, ast.If):
        for forced in (True, False):

            def force(target: Any, _: ast.Module, forced: bool = forced) -> None:
                target.test = ast.Constant(forced)

            yield f"if {ast.unparse(node.test)[:50]} forced {forced}", force
    if isinstance(node, ast.IfExp):
        for branch in ("body", "orelse"):

            def pick(target: Any, mutated: ast.Module, branch: str = branch) -> bool:
                return _replace(mutated, target, getattr(target, branch))

            yield f"{ast.unparse(node)[:50]} always its {branch}", pick
    if isinstance(node, ast.Return) and node.value is not None and function.args.args:
        param = function.args.args[0].arg
        if ast.unparse(node.value) != param:

            def identity(target: Any, _: ast.Module, param: str = param) -> None:
                target.value = ast.Name(param, ast.Load())

            yield f"return {ast.unparse(node.value)[:50]} → return {param}", identity


def _union(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(node.left) + _union(node.right)
    return [node]


def _join(members: list[ast.expr]) -> ast.expr:
    result = members[0]
    for member in members[1:]:
        result = ast.BinOp(result, ast.BitOr(), member)
    return result


def _replace(tree: ast.Module, old: ast.AST, new: ast.AST) -> bool:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return True
            if isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new
                        return True
    return False


# --- running the tests against a mutant ---------------------------------------------------------


def test_cases(module: types.ModuleType) -> list[tuple[str, Callable[[], Any]]]:
    """Every test of a module as a no-argument callable, parametrize expanded."""
    cases: list[tuple[str, Callable[[], Any]]] = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_") or fn.__module__ != module.__name__:
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            cases.append((name, fn))
            continue
        (mark,) = marks
        names = (
            [n.strip() for n in mark.args[0].split(",")]
            if isinstance(mark.args[0], str)
            else list(mark.args[0])
        )
        for k, values in enumerate(mark.args[1]):
            args = values if len(names) > 1 else (values,)
            cases.append((f"{name}[{k}]", _bind(fn, names, args)))
    return cases


def _bind(fn: Callable[..., Any], names: list[str], args: Any) -> Callable[[], Any]:
    return lambda: fn(**dict(zip(names, args, strict=True)))


def _load(module_name: str, tree: ast.Module, path: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    exec(compile(tree, path, "exec"), module.__dict__)
    return module


def rebind(tests: types.ModuleType, source: types.ModuleType, to: types.ModuleType) -> None:
    """Point the names a test module imported from ``source`` at ``to``'s objects (no reload:
    re-importing a test module under pytest's assertion rewriting is slow)."""
    names = {id(v): k for k, v in vars(source).items() if not k.startswith("__")}
    for name, value in list(vars(tests).items()):
        if id(value) in names and hasattr(to, names[id(value)]):
            setattr(tests, name, getattr(to, names[id(value)]))


def killed(tests: types.ModuleType) -> bool:
    return any(_fails(case) for _, case in test_cases(tests))


def run(module_name: str, tests_name: str) -> Report:
    started = time.monotonic()
    real = importlib.import_module(module_name)
    tests = importlib.import_module(tests_name)
    path = inspect.getfile(real)
    source = inspect.getsource(real)
    local = {
        n for n, f in inspect.getmembers(real, inspect.isfunction) if f.__module__ == real.__name__
    }
    report = Report(module_name, len(test_cases(tests)))
    current = real
    try:
        unmutated = _load(module_name, ast.parse(source), path)
        rebind(tests, current, unmutated)
        current = unmutated
        failing = [name for name, case in test_cases(tests) if _fails(case)]
        if failing:
            raise AssertionError(f"the tests fail on the unmutated module: {failing}")
        for mutant in mutants(source, local):
            report.mutants.append(mutant)
            try:
                loaded = _load(module_name, mutant.tree, path)
            except Exception:  # a mutant that does not even import is killed
                continue
            rebind(tests, current, loaded)
            current = loaded
            if not killed(tests):
                report.survivors.append(mutant)
    finally:
        sys.modules[module_name] = real
        rebind(tests, current, real)
    report.seconds = time.monotonic() - started
    return report


def _fails(case: Callable[[], Any]) -> bool:
    try:
        case()
    except BaseException:  # any failure, even a crash, kills the mutant
        return True
    return False


def main(argv: list[str]) -> int:
    pairs = list(zip(argv[::2], argv[1::2], strict=True)) or [
        ("core.redact", "tests.unit.test_redact")
    ]
    survivors = 0
    for module_name, tests_name in pairs:
        report = run(module_name, tests_name)
        print("\n".join(report.lines()))
        survivors += len(report.survivors)
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
