"""`dmp demo` against the launcher-started platform: every step ends as the journey says,
twice in a row on the same platform (a fresh patient per run)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from dmp_dev.testing.stack import LiveStack

DMP = str(Path(sys.executable).parent / "dmp")
REFUSED = "NOT_FOUND or PERMISSION_DENIED"

# (actor starts with, call starts with, expected outcome) for each step, in order.
JOURNEY: list[tuple[str, str, str]] = [
    ("Agent CPAM 75", "records.CreateDossier", "OK"),
    ("Agent CPAM 75", "identity.IssueCreationCode", "OK"),
    ("patient", "identity.RegisterPatientAccount", "OK"),
    ("patient", "identity.StartLogin", "OK"),
    ("patient", "identity.VerifyOneTimeCode", "OK"),
    ("patient", "notify.SetContactPreferences", "OK"),
    ("patient", "consent.GrantAccess to Dr Claire Martin", "OK"),
    ("patient", "consent.GrantAccess to Paul Durand", "OK"),
    ("patient", "consent.GrantAccess to Lea Petit", "OK"),
    ("Dr Claire Martin", "records.CreateDocument (Compte rendu", "OK"),
    ("Dr Claire Martin", "records.CreateDocument (Ordonnance", "OK"),
    ("patient", "notify.ListNotifications", "OK"),
    ("patient", "e-mail in the dev mail sink", "OK"),
    ("patient", "e-mails hold no medical content", "true"),
    ("Paul Durand", "records.ListDocuments", "OK"),
    ("Paul Durand", "the listing holds the prescription only", "true"),
    ("Paul Durand", "records.GetDocument (the prescription)", "OK"),
    ("Paul Durand", "records.GetDocument (the consultation report", REFUSED),
    ("Lea Petit", "records.GetDocument (the consultation report)", REFUSED),
    ("patient", "consent.BlockProfessional Paul Durand", "OK"),
    ("Paul Durand", "records.GetDocument (the prescription he read before)", REFUSED),
    ("Dr Samuel Roux", "consent.StartEmergencyAccess (mode centre_15)", "OK"),
    ("Dr Samuel Roux", "records.GetDocument (the consultation report, emergency", "OK"),
    ("patient", "consent.ListAccessHistory (centre_15", "OK"),
    ("patient", "notify.ListNotifications (emergency", "OK"),
]


async def run_demo(stack: LiveStack, report: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        DMP,
        "demo",
        "--var-dir",
        str(stack.var_dir),
        "--card-port",
        str(stack.cfg.gateway_port),
        "--patient-port",
        str(stack.cfg.patient_port),
        "--report",
        str(report),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def check_journey(steps: list[dict[str, Any]]) -> None:
    assert len(steps) == len(JOURNEY), [s["call"] for s in steps]
    for step, (actor, call, expected) in zip(steps, JOURNEY, strict=True):
        assert step["actor"].startswith(actor), step
        assert step["call"].startswith(call), step
        assert step["expected"] == expected, step
        assert step["ok"], step
        if expected == REFUSED:
            assert step["outcome"].split()[0] in ("NOT_FOUND", "PERMISSION_DENIED"), step


async def test_demo_twice_on_the_same_platform(stack: LiveStack, tmp_path: Path) -> None:
    patients = set()
    for run in (1, 2):
        report = tmp_path / f"demo-{run}.json"
        code, out = await run_demo(stack, report)
        assert code == 0, out
        result = json.loads(report.read_text("utf-8"))
        assert result["ok"], result
        assert result["error"] == ""
        check_journey(result["steps"])
        # Named on screen: where the one-time code and the e-mail were read.
        assert "dev SMS sink" in out, out
        assert "dev mail sink" in out, out
        assert f"demo passed: {len(JOURNEY)} steps" in out
        patients.add(result["steps"][0]["outcome"].split()[0])  # the new record's name
    assert len(patients) == 2

    # The régulateur's read was logged in centre_15 mode and the e-mails carried no content.
    steps = result["steps"]
    history = next(s for s in steps if s["call"].startswith("consent.ListAccessHistory"))
    assert "Roux" in history["outcome"] or "10000000041" in history["outcome"]
    assert "GetDocument DECISION_ALLOWED" in history["outcome"]


async def test_demo_fails_clearly_without_a_gateway(stack: LiveStack, tmp_path: Path) -> None:
    # The stack's PKI but a port nothing listens on: exit 1 before any step, and say why.
    report = tmp_path / "demo.json"
    code, out = await run_demo(stack, report, "--patient-port", "1")
    assert code == 1, out
    assert "does not answer" in out, out
    assert "make run" in out, out
    result = json.loads(report.read_text("utf-8"))
    assert result["ok"] is False
    assert result["steps"] == []


async def test_demo_fails_when_an_outcome_is_not_the_expected_one(
    stack: LiveStack, tmp_path: Path
) -> None:
    # A var dir whose "optician" card is in fact another médecin's (`doctor2`, registered by
    # the stack): the optician step that must be refused is allowed, so the demo stops
    # there with exit 1 and says so.
    var = tmp_path / "var"
    cards = var / "pki" / "cards"
    cards.mkdir(parents=True)
    shutil.copy(stack.pki_dir / "ca.crt", var / "pki" / "ca.crt")
    for path in stack.cards_dir.iterdir():
        shutil.copy(path, cards / path.name)
    for suffix in (".crt", ".key"):
        shutil.copy(stack.cards_dir / f"doctor2{suffix}", cards / f"optician{suffix}")
    (var / "sms").symlink_to(stack.sms_dir)
    (var / "mail").symlink_to(stack.mail_dir)
    report = tmp_path / "demo.json"
    code, out = await run_demo(stack, report, "--var-dir", str(var))
    assert code == 1, out
    result = json.loads(report.read_text("utf-8"))
    last = result["steps"][-1]
    assert not last["ok"]
    assert last["call"].startswith("records.GetDocument (the consultation report)")
    assert last["outcome"] == "OK (allowed!)"
    assert f"step {last['number']}" in result["error"]
    assert "demo failed" in out
