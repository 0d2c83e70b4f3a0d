"""Unit tests of the identifier and password rules (no server)."""

from __future__ import annotations

import grpc
import pytest

from kit import ins, rpps
from kit.errors import ServiceError
from services.identity import passwords


def reason(exc: pytest.ExceptionInfo[ServiceError]) -> tuple[grpc.StatusCode, str]:
    return exc.value.code, exc.value.reason


# --- INS -----------------------------------------------------------------

# INSEE's published example: 2 55 08 14 168 025, key 38.
VALID = ["255081416802538", "185057800608491", "2 55 08 14 168 025 38"]


@pytest.mark.parametrize("value", VALID)
def test_valid_ins(value: str) -> None:
    assert ins.validate(value) == value.replace(" ", "")


def test_key_is_97_minus_nir_mod_97() -> None:
    assert ins.control_key("2550814168025") == 97 - 2550814168025 % 97 == 38
    assert ins.with_key("2550814168025") == "255081416802538"
    assert ins.with_key("1800575000001") == ins.validate(ins.with_key("1800575000001"))


@pytest.mark.parametrize("value", ["255081416802539", "255081416802500", "185057800608490"])
def test_wrong_key(value: str) -> None:
    with pytest.raises(ServiceError) as exc:
        ins.validate(value)
    assert reason(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "INS_KEY_MISMATCH")


def test_corsica_2a_counts_as_19() -> None:
    nir = "189032A123456"
    key = 97 - (1890319123456 % 97)
    assert ins.control_key(nir) == key
    assert ins.validate(f"{nir}{key:02d}") == f"{nir}{key:02d}"
    # Lower case is accepted and normalized.
    assert ins.validate(f"{nir.lower()}{key:02d}") == f"{nir}{key:02d}"
    # The key of the same number read as "20" is refused.
    wrong = 97 - (1890320123456 % 97)
    assert wrong != key
    with pytest.raises(ServiceError) as exc:
        ins.validate(f"{nir}{wrong:02d}")
    assert exc.value.reason == "INS_KEY_MISMATCH"


def test_corsica_2b_counts_as_18() -> None:
    nir = "275012B050001"
    expected = 97 - 2750118050001 % 97
    assert ins.control_key(nir) == expected
    assert ins.validate(f"{nir}{expected:02d}") == f"{nir}{expected:02d}"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "25508141680253",  # 14 characters
        "2550814168025380",  # 16 characters
        "555081416802538",  # sex digit 5
        "255131416802538",  # month 13
        "255001416802538",  # month 00
        "255082C16802538",  # department 2C
        "25508141680253X",  # letter in the key
        "２55081416802538",  # full-width digit
    ],
)
def test_malformed_ins(value: str) -> None:
    with pytest.raises(ServiceError) as exc:
        ins.validate(value)
    assert reason(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "INS_MALFORMED")


@pytest.mark.parametrize("month", ["20", "42", "50", "99"])
def test_special_months_accepted(month: str) -> None:
    nir = f"185{month}78006084"
    assert ins.validate(f"{nir}{ins.control_key(nir):02d}")


@pytest.mark.parametrize("sex", "347 8".replace(" ", ""))
def test_temporary_and_special_sex_digits(sex: str) -> None:
    nir = f"{sex}850578006084"
    assert ins.validate(f"{nir}{ins.control_key(nir):02d}")


# --- RPPS ----------------------------------------------------------------


def luhn_reference(number: str) -> bool:
    """Independent formulation: double every second digit from the right."""
    digits = [int(c) for c in number]
    odd = digits[-1::-2]
    even = [sum(divmod(2 * d, 10)) for d in digits[-2::-2]]
    return (sum(odd) + sum(even)) % 10 == 0


@pytest.mark.parametrize("prefix", ["1000000000", "1010140645", "1000355499", "8000000000"])
def test_rpps_check_digit(prefix: str) -> None:
    number = prefix + rpps.check_digit(prefix)
    assert luhn_reference(number)
    assert rpps.validate_issued(number) == number
    bad = prefix + str((int(number[-1]) + 1) % 10)
    with pytest.raises(ServiceError) as exc:
        rpps.validate_issued(bad)
    assert reason(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "RPPS_CHECK_DIGIT")


@pytest.mark.parametrize("number", ["10000000009", "10101406451", "10003554994"])
def test_rpps_known_values(number: str) -> None:
    assert rpps.validate_issued(number) == number


@pytest.mark.parametrize("value", ["", "1000000000", "100000000060", "1000000000a", "１0000000006"])
def test_rpps_malformed(value: str) -> None:
    with pytest.raises(ServiceError) as exc:
        rpps.validate_issued(value)
    assert reason(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RPPS")


# --- password policy -------------------------------------------------------

IDENT = "255081416802538"


@pytest.mark.parametrize(
    "password",
    [
        "Correct-Horse-42",
        "correcthorse42!",
        "CORRECT HORSE 42",
        "Abcdefghijk1",
        "é" * 5 + "Ab1!xyzw",
    ],
)
def test_policy_accepts(password: str) -> None:
    passwords.check_policy(password, IDENT)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Short-1a", "length"),
        ("A" * 100 + "a1!" + "x" * 26, "length"),
        ("alllowercaseletters", "classes"),
        ("lowercase123456", "classes"),
        ("UPPER-AND-SYMBOLS!", "classes"),
        ("Pass-255081416802538", "identifier"),
        ("Pass-2550814168025-x", "identifier"),
    ],
)
def test_policy_refuses(password: str, rule: str) -> None:
    with pytest.raises(ServiceError) as exc:
        passwords.check_policy(password, IDENT)
    assert reason(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "PASSWORD_POLICY")
    assert exc.value.metadata["rule"] == rule


async def test_argon2_hash_verify_and_rehash() -> None:
    weak = passwords.PasswordService(
        passwords.Argon2Params(time_cost=1, memory_cost=1024, parallelism=1)
    )
    strong = passwords.PasswordService(
        passwords.Argon2Params(time_cost=2, memory_cost=2048, parallelism=1)
    )
    stored = await weak.hash("Correct-Horse-42")
    assert stored.startswith("$argon2id$")
    assert await weak.verify(stored, "Correct-Horse-42")
    assert not await weak.verify(stored, "Correct-Horse-43")
    assert not await weak.verify(None, "Correct-Horse-42")  # no account: dummy hash, False
    assert not weak.needs_rehash(stored)
    assert strong.needs_rehash(stored)  # parameters were raised: rehash on next login
    assert await strong.verify(stored, "Correct-Horse-42")  # old hashes still verify
