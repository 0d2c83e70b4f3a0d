"""Line checks: every malformed field is refused with its reason; real codes pass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest

from dmp.history.v1 import history_pb2
from services.history_feed import codes, validation
from services.history_feed.synthetic import Generator, cip13
from services.history_feed.validation import LineChecker, LineError, check_line
from tests.history.cda_sample import sample_lines
from tests.history.lines import act, drug, new_ins, pdate

TODAY = date.today()
INS = new_ins(4242)

Mutation = Callable[[history_pb2.ClaimLine], None]


def _set(path: str, value: object) -> Mutation:
    def apply(line: history_pb2.ClaimLine) -> None:
        *parents, leaf = path.split(".")
        target = line
        for name in parents:
            target = getattr(target, name)
        setattr(target, leaf, value)

    return apply


def test_sample_history_lines_all_pass() -> None:
    lines = sample_lines()
    assert len(lines) == 25
    kinds = {check_line(line, TODAY).kind for line in lines}
    assert kinds == set(range(1, 7))


def test_sample_nabm_without_leading_zero_is_normalized() -> None:
    line = next(ln for ln in sample_lines() if ln.biology.nabm_code in ("552", "0552"))
    check_line(line, TODAY)
    assert line.biology.nabm_code == "0552"


def test_synthetic_lines_all_pass() -> None:
    for line in Generator(seed=3, patients=50).lines(2000):
        check_line(line, TODAY)


def test_ean13_key() -> None:
    assert codes.ean13_ok("3400939169002")  # CRESTOR 5MG, from the CNAM-HR sample
    assert not codes.ean13_ok("3400939169003")
    assert codes.ean13_ok(cip13("340093006491"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set("line_id", ""), "MISSING_LINE_ID"),
        (_set("line_id", "bad id with spaces"), "INVALID_LINE_ID"),
        (_set("line_id", "x" * 65), "INVALID_LINE_ID"),
        (_set("patient_ins", "123"), "INVALID_INS"),
        (_set("patient_ins", "185057000001199"), "INVALID_INS"),  # key mismatch
        (_set("patient_ins", "985057000001102"), "INVALID_INS"),  # unknown shape
        (lambda ln: ln.ClearField("care_date"), "INVALID_CARE_DATE"),
        (lambda ln: ln.care_date.CopyFrom(pdate(TODAY + timedelta(days=1))), "INVALID_CARE_DATE"),
        (
            lambda ln: ln.care_date.CopyFrom(history_pb2.Date(year=2024, month=2, day=30)),
            "INVALID_CARE_DATE",
        ),
        (_set("billed_amount_cents", -1), "INVALID_AMOUNT"),
        (_set("reimbursed_amount_cents", -500), "INVALID_AMOUNT"),
        (lambda ln: ln.ClearField("drug"), "MISSING_DETAILS"),
        (_set("drug.cip13", "3400939169003"), "INVALID_CODE"),  # bad EAN-13 key
        (_set("drug.cip13", "34009391690"), "INVALID_CODE"),
        (_set("drug.atc_code", "C9AA05"), "INVALID_CODE"),
        (_set("drug.atc_code", "X09AA05"), "INVALID_CODE"),
        (_set("drug.atc_code", ""), "INVALID_CODE"),
        (_set("drug.quantity", 0), "INVALID_QUANTITY"),
        (_set("drug.quantity", -2), "INVALID_QUANTITY"),
        (_set("prescriber.id", "123"), "INVALID_ACTOR_ID"),
    ],
)
def test_bad_drug_line_is_refused(mutate: Mutation, reason: str) -> None:
    line = drug("L-1", INS, TODAY - timedelta(days=3))
    mutate(line)
    with pytest.raises(LineError) as caught:
        check_line(line, TODAY)
    assert caught.value.reason == reason


def test_ucd_codes_seven_or_thirteen_digits() -> None:
    line = drug("L-1", INS, TODAY)
    line.drug.cip13 = ""
    for good in ("9064295", "3400890000000"):
        line.drug.ucd = good
        check_line(line, TODAY)
    line.drug.ucd = "906429"
    with pytest.raises(LineError, match="INVALID_CODE"):
        check_line(line, TODAY)


@pytest.mark.parametrize(("code", "ok"), [("YYYY010", True), ("HBMD053", True), ("AMI", True),
                                           ("G", True), ("YYY010", False), ("YYYY01", False),
                                           ("QQQ", False), ("g", False)])  # fmt: skip
def test_ccam_and_ngap_codes(code: str, ok: bool) -> None:
    line = act("L-2", INS, TODAY, code=code)
    if ok:
        check_line(line, TODAY)
    else:
        with pytest.raises(LineError, match="INVALID_CODE"):
            check_line(line, TODAY)


def test_other_kinds_codes() -> None:
    base = history_pb2.ClaimLine(line_id="L-3", patient_ins=INS)
    base.care_date.CopyFrom(pdate(TODAY))
    cases: list[tuple[Mutation, str | None]] = [
        (_set("biology.nabm_code", "1104"), None),
        (_set("biology.nabm_code", "11045"), "INVALID_CODE"),
        (_set("medical_device.lpp_code", "1136640"), None),
        (_set("medical_device.lpp_code", "113664"), "INVALID_CODE"),
        (_set("vaccine.cip13", "3400932857241"), None),
    ]
    for mutate, reason in cases:
        line = history_pb2.ClaimLine()
        line.CopyFrom(base)
        mutate(line)
        kind = line.WhichOneof("details")
        assert kind is not None
        getattr(line, kind).quantity = 1
        if kind == "vaccine":
            line.vaccine.atc_code = "J07AM01"
        if reason is None:
            check_line(line, TODAY)
        else:
            with pytest.raises(LineError, match=reason):
                check_line(line, TODAY)


def _stay(**changes: object) -> history_pb2.ClaimLine:
    line = history_pb2.ClaimLine(line_id="S-1", patient_ins=INS)
    admission = TODAY - timedelta(days=10)
    line.care_date.CopyFrom(pdate(admission))
    stay = line.hospital_stay
    stay.ghs_code = "1940"
    stay.institution_finess = "750300550"
    stay.admission_date.CopyFrom(pdate(admission))
    stay.discharge_date.CopyFrom(pdate(admission + timedelta(days=5)))
    for path, value in changes.items():
        _set(path, value)(line)
    return line


def test_hospital_stays() -> None:
    check_line(_stay(), TODAY)
    check_line(_stay(**{"hospital_stay.institution_finess": "2A0000017"}), TODAY)
    for changes, reason in [
        ({"hospital_stay.ghs_code": "194"}, "INVALID_CODE"),
        ({"hospital_stay.institution_finess": "75030055"}, "INVALID_CODE"),
    ]:
        with pytest.raises(LineError, match=reason):
            check_line(_stay(**changes), TODAY)
    backwards = _stay()
    backwards.hospital_stay.discharge_date.CopyFrom(pdate(TODAY - timedelta(days=20)))
    future = _stay()
    future.hospital_stay.discharge_date.CopyFrom(pdate(TODAY + timedelta(days=2)))
    for line in (backwards, future):
        with pytest.raises(LineError, match="INVALID_STAY_DATES"):
            check_line(line, TODAY)


def test_vaccine_must_be_j07() -> None:
    line = history_pb2.ClaimLine(line_id="V-1", patient_ins=INS)
    line.care_date.CopyFrom(pdate(TODAY))
    line.vaccine.cip13 = "3400932857241"
    line.vaccine.atc_code = "C09AA05"
    line.vaccine.quantity = 1
    with pytest.raises(LineError, match="INVALID_CODE"):
        check_line(line, TODAY)


def test_a_checker_remembers_good_values_only() -> None:
    """A run's checker caches verdicts: a bad value seen after good ones is still refused."""
    checker = LineChecker(TODAY)
    good = drug("L-1", INS, TODAY - timedelta(days=3))
    assert checker.check(good)[3] == history_pb2.CLAIM_KIND_DRUG
    cases: list[tuple[Mutation, str]] = [
        (_set("drug.cip13", "3400939169003"), "INVALID_CODE"),
        (_set("drug.atc_code", "C9AA05"), "INVALID_CODE"),
        (_set("patient_ins", INS[:-2] + "00"), "INVALID_INS"),
        (_set("prescriber.id", "1010099724"), "INVALID_ACTOR_ID"),
        (lambda ln: setattr(ln.prescriber, "system", 0), "INVALID_ACTOR_ID"),
        (lambda ln: setattr(ln.performer, "id", "750300550"), "INVALID_ACTOR_ID"),
        (_set("drug.quantity", 0), "INVALID_QUANTITY"),
    ]
    for mutate, reason in cases:
        line = history_pb2.ClaimLine()
        line.CopyFrom(good)
        mutate(line)
        with pytest.raises(LineError) as caught:
            checker.check(line)
        assert caught.value.reason == reason
    assert checker.check(good)[0] == "L-1"


def test_cached_dates_are_exact() -> None:
    """Every valid date of two years is cached; a malformed one that would alias one is not."""
    checker = LineChecker(TODAY)
    line = drug("L-1", INS, TODAY)
    day = TODAY - timedelta(days=730)
    while day <= TODAY:
        line.care_date.CopyFrom(pdate(day))
        assert checker.check(line)[2] == day
        day += timedelta(days=1)
    year = TODAY.year - 1
    for month, mday in [(0, 215), (1, 131), (2, 30), (13, 1), (-1, 301)]:
        line.care_date.CopyFrom(history_pb2.Date(year=year, month=month, day=mday))
        with pytest.raises(LineError, match="INVALID_CARE_DATE"):
            checker.check(line)


def test_checker_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "CACHE_ENTRIES", 5)
    checker = LineChecker(TODAY)
    for index, line in enumerate(Generator(seed=5, patients=40).lines(400)):
        checker.check(line)
        assert max(checker.cache_sizes().values()) <= 5, index
    assert min(checker.cache_sizes().values()) >= 1
