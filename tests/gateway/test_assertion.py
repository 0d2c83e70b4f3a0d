"""gateway.assertion without a platform: the replay cache's bounds (fail closed, ids forgotten
only once expired) and the verifier's checks on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from dmp_dev import assertions, pki
from gateway.assertion import AssertionVerifier, ReplayCache, algorithm_for
from kit.errors import ServiceError

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
HOSPITAL = pki.EstablishmentFields("750803447", "Hôpital Test")


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    issued = pki.issue_establishment(pki.create_authority(), HOSPITAL)
    return issued.cert_pem, issued.key_pem


def reason(exc: pytest.ExceptionInfo[ServiceError]) -> str:
    return exc.value.reason


def test_replay_cache_refuses_a_seen_id_and_forgets_it_once_expired() -> None:
    now = [1000.0]
    cache = ReplayCache(2, clock=lambda: now[0])
    cache.remember("750803447", "a" * 16, 1010.0)
    with pytest.raises(ServiceError) as seen:
        cache.remember("750803447", "a" * 16, 1010.0)
    assert reason(seen) == "ASSERTION_REPLAYED"
    cache.remember("920008059", "a" * 16, 1010.0)  # ids are per establishment
    with pytest.raises(ServiceError) as full:
        cache.remember("750803447", "b" * 16, 1020.0)
    assert reason(full) == "ASSERTION_REPLAY_CACHE_FULL"  # fail closed, nothing evicted
    assert len(cache) == 2
    now[0] = 1010.0  # both expired: room again
    cache.remember("750803447", "b" * 16, 1020.0)
    assert len(cache) == 1


def test_verifier_checks_time_on_its_clock_with_leeway(pair: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0])
    assert algorithm_for(cert) == "ES256"
    verifier = AssertionVerifier(
        ReplayCache(100, clock=NOW.timestamp), max_lifetime_s=300, leeway_s=5
    )

    def token(**kw: object) -> str:
        return assertions.user_assertion(
            *pair,
            rpps="01234567897",
            profession="10",
            specialty="SM27",
            **kw,  # type: ignore[arg-type]
        )

    claims = verifier.verify(token(now=NOW), cert, "750803447", now=NOW)
    assert (claims.rpps, claims.amr) == ("01234567897", ("pwd", "otp"))
    # Expired 4 s ago: inside the leeway; 6 s ago: refused.
    late = token(now=NOW - timedelta(seconds=124))
    assert verifier.verify(late, cert, "750803447", now=NOW).rpps == "01234567897"
    with pytest.raises(ServiceError) as expired:
        verifier.verify(token(now=NOW - timedelta(seconds=126)), cert, "750803447", now=NOW)
    assert reason(expired) == "ASSERTION_EXPIRED"
    with pytest.raises(ServiceError) as long:
        verifier.verify(token(now=NOW, lifetime=timedelta(seconds=301)), cert, "750803447", now=NOW)
    assert reason(long) == "ASSERTION_LIFETIME_TOO_LONG"
    for bad in ({"amr": []}, {"sub": "123"}, {"jti": "short"}, {"iat": True}, {"cnf": None}):
        with pytest.raises(ServiceError) as malformed:
            verifier.verify(token(now=NOW, **bad), cert, "750803447", now=NOW)
        assert reason(malformed) in ("INVALID_ASSERTION", "ASSERTION_UNBOUND"), bad
    with pytest.raises(ServiceError) as wrong_type:
        verifier.verify("a.b.c", cert, "750803447", now=NOW)
    assert reason(wrong_type) == "INVALID_ASSERTION"
