"""Every profession row of the matrix, allow and deny, through Authorize; and its validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from kit import codes
from services.consent import matrix as matrix_mod
from services.consent.app import ConsentApp
from services.consent.matrix import MatrixError, default_matrix
from services.consent.settings import ConsentSettings
from tests.consent.helpers import A, C, grant, pro
from tests.fixtures.consent import ConsentHarness

MATRIX = default_matrix()
CLASSES = sorted(codes.table("document_classes"))
POLICY = Path(matrix_mod.__file__).parent / "policy" / "matrix.yaml"


def test_every_tre_g15_profession_has_an_explicit_row() -> None:
    assert set(MATRIX.professions) == set(codes.table("professions"))
    raw = yaml.safe_load(POLICY.read_text("utf-8"))
    for code, row in raw["professions"].items():
        assert "read" in row, code
        assert "write" in row, code
    assert MATRIX.sha256 == hashlib.sha256(POLICY.read_bytes()).hexdigest()


def test_required_policies() -> None:
    assert MATRIX.profession_rights("10", "SM38").read == frozenset(CLASSES)  # médecin: full
    assert MATRIX.profession_rights("10", "SM25") is None  # occupational medicine
    assert MATRIX.roles["medecin_du_travail"].excluded
    assert MATRIX.roles["medecin_conseil"].excluded
    amo = MATRIX.roles["alimentation_amo"].rights
    assert amo.write == {"60"}
    assert not amo.reads_anything
    for partial in ("28", "95"):  # opticien-lunetier, diététicien
        rights = MATRIX.profession_rights(partial)
        assert rights is not None
        assert rights.read < frozenset(CLASSES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["professions"].pop("95"), "no explicit row"),
        (
            lambda d: d["professions"].__setitem__("99", {"read": [], "write": []}),
            "unknown profession",
        ),
        (lambda d: d["professions"]["28"].__setitem__("read", ["77"]), "unknown document_classes"),
        (lambda d: d["professions"]["28"].__setitem__("read_types", ["X-1"]), "document_types"),
        (lambda d: d["professions"]["10"]["specialties"].__setitem__("ZZ1", {}), "specialty"),
        (lambda d: d["roles"].pop("medecin_conseil"), "missing required roles"),
        (lambda d: d["professions"]["28"].__setitem__("raed", []), "unknown keys"),
        (lambda d: d.__setitem__("version", ""), "version"),
    ],
)
def test_invalid_matrix_is_a_startup_error(tmp_path: Path, mutate: object, message: str) -> None:
    doc = yaml.safe_load(POLICY.read_text("utf-8"))
    mutate(doc)  # type: ignore[operator]
    bad = tmp_path / "matrix.yaml"
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    with pytest.raises(MatrixError, match=message):
        matrix_mod.load(bad)
    with pytest.raises(MatrixError):
        ConsentApp(ConsentSettings(policy_path=str(bad)))


def _rows() -> list[tuple[str, str]]:
    rows = [(code, "") for code in sorted(MATRIX.professions)]
    for code, row in sorted(MATRIX.professions.items()):
        rows.extend((code, spec) for spec in sorted(row.specialties))
    return rows


@pytest.mark.parametrize(("profession", "specialty"), _rows(), ids=lambda v: v or "-")
async def test_profession_row(consent: ConsentHarness, profession: str, specialty: str) -> None:
    """A granted professional of this row reads / writes exactly what the row says."""
    dossier, ins = await consent.create_record()
    principal = pro(profession, specialty)
    await grant(consent, dossier, ins, principal.rpps)
    rights = MATRIX.profession_rights(profession, specialty)
    outcomes = set()
    for cls in CLASSES:
        for action, may in (
            (A.ACTION_READ, rights is not None and rights.can_read(cls)),
            (A.ACTION_WRITE, rights is not None and rights.can_write(cls)),
        ):
            response = await consent.authorize(principal, action, dossier, document_class_code=cls)
            expected = C.DECISION_ALLOWED if may else C.DECISION_DENIED
            assert response.decision == expected, (profession, specialty, cls, action)
            outcomes.add(response.decision)
            if may:
                readable = set(response.scope.readable_class_codes)
                assert rights is not None
                assert readable == set(rights.read)
            elif rights is None:
                assert response.reason == "PROFESSION_EXCLUDED"
            else:
                assert response.reason in ("CLASS_NOT_READABLE", "CLASS_NOT_WRITABLE")
    # Every row has deny cases (nobody but the AMO writes class 60); allow cases unless empty.
    assert C.DECISION_DENIED in outcomes
    if rights is not None and rights.reads_anything:
        assert C.DECISION_ALLOWED in outcomes
    if rights is not None:
        for type_code in sorted(rights.read_types):
            response = await consent.authorize(
                principal, A.ACTION_READ, dossier, document_type_code=type_code
            )
            assert response.decision == C.DECISION_ALLOWED, type_code
