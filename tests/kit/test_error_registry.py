"""docs/errors.md lists every public error reason the code can raise, each spelled one way.

The code is read, not run: an AST pass over kit/, services/ and gateway/ finds every reason
handed to something that becomes a `google.rpc.ErrorInfo` (`kit.errors.ServiceError` and its
helpers, consent's `Decision` public reason, `InvalidPrincipalError`) or a history line
rejection (`LineError`). A reason passed through a function parameter is followed to that
function's call sites (as many levels as it takes), a module constant to its value; a
reason read from an object at run time must be one of `PASS_THROUGH` (what it carries is
collected where it is made). Anything else fails the test: a reason the registry cannot see
is a reason clients cannot rely on.

Checked: each reason has a row in its section of docs/errors.md with the gRPC code(s) and
ErrorInfo domain(s) the code gives it; no row is stale; no two reasons are the same words
in another order or with a synonym (INVALID_PAGE_TOKEN / PAGE_TOKEN_INVALID,
MISSING_REQUEST_ID / REQUEST_ID_REQUIRED, RPPS_MALFORMED / INVALID_RPPS), except the pairs of
`DISTINCT`, which mean different things; and the reasons the protos' `Errors:` comments
name, which vendors read, are registered ones.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "docs" / "errors.md"
SOURCES = ("kit", "services", "gateway")
ERROR, LINE = "ErrorInfo reasons", "Line rejections"
REASON = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
Sink = tuple[str, int, str]
#: (callable, position, keyword) → (section, gRPC code). Helpers of kit.errors are found
#: through their `reason` parameter, which reaches ServiceError.
SINKS: dict[Sink, tuple[str, str | None]] = {
    ("ServiceError", 1, "reason"): (ERROR, None),
    ("Decision", 2, "public_reason"): (ERROR, None),
    ("InvalidPrincipalError", 0, "reason"): (ERROR, "INVALID_ARGUMENT"),
    ("LineError", 0, "reason"): (LINE, None),
    # IngestClaimsResponse.rejections.add(reason=...): a rejection made without a LineError.
    ("add", -1, "reason"): (LINE, None),
}
#: (enclosing function, expression): a reason made elsewhere, already collected there.
PASS_THROUGH = {
    # consent: a denied Decision's public reason (Decision is a sink).
    ("refusal", "decision.public_reason"),
    # consent: an InvalidPrincipalError's reason (a sink) answered as INVALID_ARGUMENT.
    ("validate", "exc.reason"),
    # gateway: consent.Authorize's public reason of a denial (the Decision sink).
    ("_denial", "response.reason"),
    # history_feed ingest: a LineError's reason (a sink) put in the response's rejections.
    ("_take", "exc.reason"),
}
CODES = {
    "invalid_argument": "INVALID_ARGUMENT",
    "unauthenticated": "UNAUTHENTICATED",
    "permission_denied": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "already_exists": "ALREADY_EXISTS",
    "failed_precondition": "FAILED_PRECONDITION",
    "resource_exhausted": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
}
#: `CODE (REASON, REASON)` in the protos' comments; enum values named there are no reasons.
PROTO_ERRORS = re.compile(
    r"(?:INVALID_ARGUMENT|NOT_FOUND|PERMISSION_DENIED|UNAUTHENTICATED|FAILED_PRECONDITION"
    r"|ALREADY_EXISTS|RESOURCE_EXHAUSTED|UNAVAILABLE|ABORTED|INTERNAL|DATA_LOSS)\s*\(([^)]*)\)"
)
PROTO_REASON = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
NOT_REASONS = ("MASQUE_PS",)
SYNONYMS = {"MISSING": "REQUIRED", "MALFORMED": "INVALID", "BAD": "INVALID"}
#: Reasons whose words are synonyms but whose meanings differ (the registry says how).
DISTINCT = {
    frozenset({"OTP_INVALID", "OTP_MALFORMED"}),
    frozenset({"CREATION_CODE_INVALID", "CREATION_CODE_MALFORMED"}),
}


@dataclass
class Found:
    codes: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    places: set[str] = field(default_factory=set)


class Scan:
    """Every reason of the code, by section, with the codes and domains it is raised with."""

    def __init__(self) -> None:
        self.trees = {
            path: ast.parse(path.read_text(), str(path))
            for root in SOURCES
            for path in sorted((ROOT / root).rglob("*.py"))
        }
        self.parents = {
            path: {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for path, tree in self.trees.items()
        }
        self.constants: dict[Path, dict[str, str]] = defaultdict(dict)
        for path, tree in self.trees.items():
            for node in tree.body:
                if isinstance(node, ast.Assign) and _text(node.value) is not None:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            self.constants[path][target.id] = str(_text(node.value))
        self.found: dict[str, dict[str, Found]] = {
            ERROR: defaultdict(Found),
            LINE: defaultdict(Found),
        }
        self.problems: list[str] = []
        self._run()

    def _run(self) -> None:
        sinks, done = dict(SINKS), set[Sink]()
        while pending := [s for s in sinks if s not in done]:
            for sink in pending:
                done.add(sink)
                section, code = sinks[sink]
                for path, node in self._calls(sink[0]):
                    if sink[0] == "Decision" and node.args and _is_true(node.args[0]):
                        continue  # an allowed decision: its reason is no error
                    expr = _argument(node, sink[1], sink[2])
                    if expr is not None:
                        self._resolve(path, node, expr, (section, _code(node) or code), sinks)

    def _calls(self, name: str) -> list[tuple[Path, ast.Call]]:
        return [
            (path, node)
            for path, tree in self.trees.items()
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _callee(node) == name
        ]

    def _function(self, path: Path, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents[path]:
            node = self.parents[path][node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    def _resolve(
        self,
        path: Path,
        call: ast.Call,
        expr: ast.expr,
        target: tuple[str, str | None],
        sinks: dict[Sink, tuple[str, str | None]],
    ) -> None:
        """Collect the reason(s) `expr` can be; `target`: section and code of the sink."""
        section, code = target
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        value = _text(expr)
        if value is not None:
            if not REASON.fullmatch(value):
                self.problems.append(f"{where}: {value!r} is not an UPPER_SNAKE reason")
                return
            found = self.found[section][value]
            found.places.add(where)
            found.domains.add(_domain(path.relative_to(ROOT)))
            if code:
                found.codes.add(code)
            return
        if isinstance(expr, ast.IfExp):
            for part in (expr.body, expr.orelse):
                self._resolve(path, call, part, target, sinks)
            return
        if isinstance(expr, ast.BoolOp):
            for part in expr.values:
                self._resolve(path, call, part, target, sinks)
            return
        function = self._function(path, call)
        text = ast.unparse(expr)
        if function is not None and (function.name, text) in PASS_THROUGH:
            return
        if isinstance(expr, ast.Name) and function is not None:
            arguments = function.args
            positional = [a.arg for a in arguments.posonlyargs + arguments.args]
            if expr.id in positional or expr.id in [a.arg for a in arguments.kwonlyargs]:
                index = positional.index(expr.id) if expr.id in positional else -1
                if positional and positional[0] in ("self", "cls") and index >= 0:
                    index -= 1
                sinks.setdefault((function.name, index, expr.id), target)
                return
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == expr.id for t in node.targets
                ):
                    self._resolve(path, call, node.value, target, sinks)
                    return
        if isinstance(expr, ast.Name) and expr.id in self.constants[path]:
            self._resolve(path, call, ast.Constant(self.constants[path][expr.id]), target, sinks)
            return
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            for other, constants in self.constants.items():
                if other.stem == expr.value.id and expr.attr in constants:
                    self._resolve(path, call, ast.Constant(constants[expr.attr]), target, sinks)
                    return
        self.problems.append(f"{where}: cannot tell which reason `{text}` carries")


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    for item in call.keywords:
        if item.arg == keyword:
            return item.value
    if 0 <= position < len(call.args) and not isinstance(call.args[position], ast.Starred):
        return call.args[position]
    return None


def _code(call: ast.Call) -> str | None:
    """The gRPC code a call raises its reason with, when the call says it."""
    name = _callee(call)
    if name in CODES:
        return CODES[name]
    if name == "ServiceError" and call.args and isinstance(call.args[0], ast.Attribute):
        return call.args[0].attr
    return None


def _domain(relative: Path) -> str:
    """The ErrorInfo domain: `<service>.dmp`, `gateway.dmp`, or `*.dmp` for the kit's."""
    if relative.parts[0] == "services":
        return f"{relative.parts[1]}.dmp"
    return "gateway.dmp" if relative.parts[0] == "gateway" else "*.dmp"


def _registry() -> dict[str, dict[str, tuple[set[str], set[str]]]]:
    """Section → reason → (codes, domains) from the tables of docs/errors.md."""
    sections: dict[str, dict[str, tuple[set[str], set[str]]]] = {ERROR: {}, LINE: {}}
    current: dict[str, tuple[set[str], set[str]]] | None = None
    for line in REGISTRY.read_text().splitlines():
        if line.startswith("## "):
            current = sections.get(line[3:].strip())
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if current is None or not line.startswith("|") or len(cells) < 4:
            continue
        reason = cells[0].strip("`")
        if not REASON.fullmatch(reason):
            continue  # header and separator rows
        assert reason not in current, f"{reason} has two rows in docs/errors.md"
        codes = {c.strip("` ") for c in cells[1].split(",")}
        domains = {d.strip("` ") for d in cells[2].split(",")}
        current[reason] = (codes, domains)
    return sections


@pytest.fixture(scope="module")
def scan() -> Scan:
    return Scan()


def test_every_reason_expression_is_understood(scan: Scan) -> None:
    if scan.problems:
        pytest.fail("\n".join(scan.problems))


@pytest.mark.parametrize("section", [ERROR, LINE])
def test_every_reason_is_registered_with_its_codes_and_domains(scan: Scan, section: str) -> None:
    registry = _registry()[section]
    missing = []
    for reason, found in sorted(scan.found[section].items()):
        if reason not in registry:
            missing.append(f"{reason} (raised at {min(found.places)})")
            continue
        codes, domains = registry[reason]
        if not found.codes <= codes:
            missing.append(f"{reason}: code(s) {sorted(found.codes - codes)} not in its row")
        if section == ERROR and not (found.domains <= domains or "*.dmp" in domains):
            missing.append(f"{reason}: domain(s) {sorted(found.domains - domains)} not in its row")
    if missing:
        pytest.fail(f"docs/errors.md, section {section!r}:\n" + "\n".join(missing))


@pytest.mark.parametrize("section", [ERROR, LINE])
def test_no_registered_reason_is_stale(scan: Scan, section: str) -> None:
    stale = sorted(set(_registry()[section]) - set(scan.found[section]))
    if stale:
        pytest.fail("rows of reasons the code no longer raises: " + ", ".join(stale))


def test_protos_name_only_registered_reasons() -> None:
    """The `Errors: CODE (REASON, ...)` comments vendors read in protos/ name real reasons."""
    registered = set(_registry()[ERROR])
    unknown = []
    for proto in sorted((ROOT / "protos" / "dmp").rglob("*.proto")):
        comments = "\n".join(
            line.strip().removeprefix("//")
            for line in proto.read_text().splitlines()
            if line.strip().startswith("//")
        )
        for group in PROTO_ERRORS.finditer(comments):
            for word in PROTO_REASON.findall(group.group(1)):
                if word not in registered and not word.startswith(NOT_REASONS):
                    unknown.append(f"{proto.relative_to(ROOT)}: {word}")
    if unknown:
        pytest.fail("reasons in proto comments that the code does not raise: " + str(unknown))


def test_each_reason_is_spelled_one_way(scan: Scan) -> None:
    for section in (ERROR, LINE):
        by_words: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for reason in scan.found[section]:
            words = tuple(sorted(SYNONYMS.get(w, w) for w in reason.split("_")))
            by_words[words].add(reason)
        twins = [
            sorted(group)
            for group in by_words.values()
            if len(group) > 1 and frozenset(group) not in DISTINCT
        ]
        if twins:
            pytest.fail(f"{section}: one meaning, several spellings: {twins}")
