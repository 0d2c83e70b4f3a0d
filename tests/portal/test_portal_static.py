"""The portal's files, without a browser: the HTTP route of every RPC it calls is the one
the protos' `google.api.http` annotations give (a moved route fails here, not in front of a
patient), and nothing in it could break the door's Content Security Policy or parse text as
HTML (no inline script or style, no event attribute, no innerHTML, no eval, no other origin)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import annotations_pb2

from dmp.authz.v1 import authz_pb2
from dmp.consent.v1 import consent_pb2
from dmp.history.v1 import history_pb2
from dmp.identity.v1 import identity_pb2
from dmp.notify.v1 import notify_pb2
from dmp.records.v1 import records_pb2

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "portal" / "static"
SERVICES = [
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    records_pb2.DESCRIPTOR.services_by_name["RecordsService"],
    consent_pb2.DESCRIPTOR.services_by_name["ConsentService"],
    history_pb2.DESCRIPTOR.services_by_name["HistoryFeedService"],
    notify_pb2.DESCRIPTOR.services_by_name["NotifyService"],
]
_ROUTE = re.compile(r'^  (\w+): \{\s*verb: "(\w+)", path: "([^"]+)"(?:, body: "([^"]+)")?', re.M)


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def portal_routes() -> dict[str, tuple[str, str, str]]:
    text = (STATIC / "js" / "routes.js").read_text(encoding="utf-8")
    return {m[1]: (m[2], m[3], m[4] or "") for m in _ROUTE.finditer(text)}


def annotated(method_name: str) -> tuple[str, str, str]:
    for service in SERVICES:
        method = service.methods_by_name.get(method_name)
        if method is None:
            continue
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        assert verb, f"{method_name} has no google.api.http annotation"
        template = getattr(rule, verb)
        # `{health_profile.name=dossiers/*/healthProfile}` → `{healthProfile.name}`.
        path = re.sub(
            r"\{([\w.]+)(=[^}]*)?\}",
            lambda m: "{" + ".".join(camel(p) for p in m[1].split(".")) + "}",
            template,
        )
        body = "*" if rule.body == "*" else camel(rule.body)
        return verb.upper(), path, body
    raise AssertionError(f"no RPC named {method_name}")


def test_the_portal_calls_each_rpc_on_its_annotated_route() -> None:
    routes = portal_routes()
    assert len(routes) >= 25, routes
    for name, route in routes.items():
        assert route == annotated(name), name


SOURCES = sorted(p for p in STATIC.rglob("*") if p.suffix in (".html", ".js", ".css"))

FORBIDDEN = {
    ".html": [r"<script(?![^>]*\bsrc=)", r"<style", r"\sstyle=", r"\son\w+="],
    ".js": [
        r"innerHTML",
        r"outerHTML",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\(",
        r"new Function",
        r"\.style\b",
        r"setAttribute\(\s*[\"']style",
        r"localStorage",
    ],
    ".css": [r"@import", r"url\(\s*[\"']?(https?:)?//"],
}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_inline_code_no_html_parsing_no_other_origin(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern in FORBIDDEN[path.suffix]:
        assert not re.search(pattern, text), (path.name, pattern)
    assert not re.search(r"https?://", text), (path.name, "an absolute URL")


def access_sentences(entries: list[dict[str, str]]) -> list[str]:
    """`accessWhat` of labels.js run by node on each entry (the function the history page uses)."""
    node = shutil.which("node")
    assert node, "node is needed (CI installs it for the portal's tooling)"
    script = (
        f"import {{ accessWhat }} from {json.dumps((STATIC / 'js' / 'labels.js').as_uri())};"
        "let s = ''; process.stdin.on('data', (c) => (s += c));"
        "process.stdin.on('end', () => console.log(JSON.stringify(JSON.parse(s).map(accessWhat))));"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=json.dumps(entries),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    sentences: list[str] = json.loads(done.stdout)
    return sentences


def test_the_access_history_names_what_was_accessed_once() -> None:
    """An action whose label already names its object ("a consulté l'historique des accès")
    is not followed by the resource's label too; a bare verb is."""
    pairs = [
        (action, kind)
        for action in [v.name for v in authz_pb2.Action.DESCRIPTOR.values]
        for kind in [v.name for v in authz_pb2.ResourceKind.DESCRIPTOR.values]
        if not action.endswith("UNSPECIFIED") and not kind.endswith("UNSPECIFIED")
    ]
    sentences = access_sentences([{"action": a, "resourceKind": k} for a, k in pairs])
    named = dict(zip(pairs, sentences, strict=True))
    assert named["ACTION_READ_ACCESS_LOG", "RESOURCE_KIND_ACCESS_LOG"] == (
        "a consulté l'historique des accès"
    )
    assert named["ACTION_MANAGE_CONSENT", "RESOURCE_KIND_ACCESS_RULE"] == (
        "a modifié les autorisations"
    )
    assert named["ACTION_READ_ACCESS_RULES", "RESOURCE_KIND_ACCESS_RULE"] == (
        "a consulté les autorisations"
    )
    assert named["ACTION_READ", "RESOURCE_KIND_HEALTH_PROFILE"] == "a consulté le profil médical"
    for (action, kind), sentence in named.items():
        words = sentence.split()
        doubled = any(
            words[i : i + n] == words[i + n : i + 2 * n]
            for n in range(1, len(words) // 2 + 1)
            for i in range(len(words) - 2 * n + 1)
        )
        assert not doubled, (action, kind, sentence)
        for phrase in ("l'historique des accès", "les autorisations", "le dossier"):
            assert sentence.count(phrase) <= 1, (action, kind, sentence)
