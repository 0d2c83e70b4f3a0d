"""Establishments without a CPS card, through the launcher-started gateway: attacks on the user
assertion, each refused with its reason, next to the call that works.

The demo `hospital` (registered by the launcher with its staff) and the test stack's
`clinic` and `closed_lab` (tests/fixtures/stack.py) connect with their own certificates from
the dev PKI; assertions are signed with those certificates' keys (dmp_dev.assertions), as a
hospital information system would.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import jwt
import nats
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.utils import base64url_decode, base64url_encode

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev import assertions, pki
from dmp_dev.testing.stack import LiveStack
from gateway import replay
from kit import pki as kit_pki
from tests.e2e.helpers import expect, new_record, records
from tests.fixtures.stack import EXTRA_CARDS, OCCUPATIONAL_RPPS, test_card
from tests.gateway.replica import replica

I = identity_pb2  # noqa: E741 - the generated module
R = records_pb2
S = grpc.StatusCode
DAVID = "01234567897"  # on the demo hospital's staff, no CPS card of his own
MARTIN = pki.DEMO_CARDS["doctor"].rpps  # the demo doctor, also on the hospital's staff


def establishment(stack: LiveStack, stem: str) -> tuple[bytes, bytes]:
    directory = stack.pki_dir / pki.ESTABLISHMENTS_DIR
    return (directory / f"{stem}.crt").read_bytes(), (directory / f"{stem}.key").read_bytes()


def directory(channel: grpc.aio.Channel) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(channel)


def signed(
    pair: tuple[bytes, bytes],
    rpps: str = DAVID,
    profession: str = "10",
    specialty: str = "SM27",
    **kw: object,
) -> tuple[tuple[str, str], ...]:
    return assertions.metadata(
        assertions.user_assertion(
            *pair,
            rpps=rpps,
            profession=profession,
            specialty=specialty,
            **kw,  # type: ignore[arg-type]
        )
    )


async def listing(stack: LiveStack, pair: tuple[bytes, bytes], md: object) -> object:
    stub = directory(stack.card_channel(pair))
    return await stub.ListProfessionals(
        I.ListProfessionalsRequest(page_size=1),
        metadata=md,
        timeout=10,  # type: ignore[arg-type]
    )


async def test_a_hospital_acts_for_its_doctor_with_a_fresh_assertion_each_call(
    stack: LiveStack,
) -> None:
    hospital = establishment(stack, "hospital")
    for _ in range(2):  # a new assertion per call
        await listing(stack, hospital, signed(hospital))
    martin = signed(hospital, MARTIN, "10", "SM53", amr=["sc"])
    await listing(stack, hospital, martin)


async def test_forged_signature_is_refused(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    forged = signed((hospital[0], stranger))  # right claims, right cnf, wrong key
    await expect(listing(stack, hospital, forged), S.UNAUTHENTICATED, "ASSERTION_BAD_SIGNATURE")
    # A genuine assertion whose payload was edited afterwards (another doctor).
    token = signed(hospital)[0][1]
    head, payload, signature = token.split(".")
    edited = base64url_encode(
        base64url_decode(payload).replace(DAVID.encode(), MARTIN.encode())
    ).decode()
    await expect(
        listing(stack, hospital, assertions.metadata(f"{head}.{edited}.{signature}")),
        S.UNAUTHENTICATED,
        "ASSERTION_BAD_SIGNATURE",
    )
    # alg "none": never accepted.
    unsigned = jwt.encode(
        {"sub": DAVID}, None, algorithm="none", headers={"typ": assertions.TOKEN_TYPE}
    )
    await expect(
        listing(stack, hospital, assertions.metadata(unsigned)),
        S.UNAUTHENTICATED,
        "ASSERTION_BAD_SIGNATURE",
    )


async def test_expired_future_and_too_long_assertions_are_refused(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    now = stack.clock.now()
    await expect(
        listing(stack, hospital, signed(hospital, now=now - timedelta(minutes=3))),
        S.UNAUTHENTICATED,
        "ASSERTION_EXPIRED",
    )
    await expect(
        listing(stack, hospital, signed(hospital, now=now + timedelta(minutes=2))),
        S.UNAUTHENTICATED,
        "ASSERTION_NOT_YET_VALID",
    )
    await expect(
        listing(stack, hospital, signed(hospital, lifetime=timedelta(hours=8))),
        S.UNAUTHENTICATED,
        "ASSERTION_LIFETIME_TOO_LONG",
    )


async def test_a_replayed_assertion_is_refused(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    once = signed(hospital)
    await listing(stack, hospital, once)
    await expect(listing(stack, hospital, once), S.UNAUTHENTICATED, "ASSERTION_REPLAYED")
    # Same id, new signature: the id is what counts.
    jti = uuid.uuid4().hex
    await listing(stack, hospital, signed(hospital, jti=jti))
    await expect(
        listing(stack, hospital, signed(hospital, jti=jti)), S.UNAUTHENTICATED, "ASSERTION_REPLAYED"
    )


async def test_unbound_assertions_are_refused(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    clinic = establishment(stack, "clinic")
    # Signed by another establishment's key, naming this connection's certificate and FINESS.
    hospital_cnf = {"x5t#S256": _thumbprint(hospital[0])}
    by_clinic = signed((clinic[0], clinic[1]), cnf=hospital_cnf, iss="750803447")
    await expect(listing(stack, hospital, by_clinic), S.UNAUTHENTICATED, "ASSERTION_BAD_SIGNATURE")
    # Signed by this establishment's key but bound to another certificate, or to none.
    await expect(
        listing(stack, hospital, signed(hospital, cnf={"x5t#S256": _thumbprint(clinic[0])})),
        S.UNAUTHENTICATED,
        "ASSERTION_UNBOUND",
    )
    await expect(
        listing(stack, hospital, signed(hospital, cnf={"x5t": "abc"})),
        S.UNAUTHENTICATED,
        "ASSERTION_UNBOUND",
    )
    # Another establishment's FINESS as issuer.
    await expect(
        listing(stack, hospital, signed(hospital, iss="920008059")),
        S.UNAUTHENTICATED,
        "ASSERTION_ISSUER_MISMATCH",
    )
    await expect(
        listing(stack, hospital, signed(hospital, aud="another-service")),
        S.UNAUTHENTICATED,
        "ASSERTION_AUDIENCE_MISMATCH",
    )


async def test_only_the_establishments_own_staff_with_their_directory_profession(
    stack: LiveStack,
) -> None:
    hospital = establishment(stack, "hospital")
    clinic = establishment(stack, "clinic")
    doctor2 = EXTRA_CARDS["doctor2"]
    # Dr Morel works at the clinic: the clinic may assert her, the hospital may not.
    await listing(stack, clinic, signed(clinic, doctor2.rpps, "10", "SM53"))
    await expect(
        listing(stack, hospital, signed(hospital, doctor2.rpps, "10", "SM53")),
        S.PERMISSION_DENIED,
        "ASSERTION_USER_NOT_STAFF",
    )
    await expect(
        listing(stack, hospital, signed(hospital, "10000000009", "10")),
        S.PERMISSION_DENIED,
        "ASSERTION_USER_NOT_STAFF",
    )
    # The hospital's own doctor, asserted as a pharmacist: not what the directory says.
    await expect(
        listing(stack, hospital, signed(hospital, DAVID, "21", "")),
        S.PERMISSION_DENIED,
        "ASSERTION_PROFESSION_MISMATCH",
    )


async def test_an_excluded_profession_asserted_is_refused(stack: LiveStack) -> None:
    clinic = establishment(stack, "clinic")
    occupational = signed(clinic, OCCUPATIONAL_RPPS, "10", "SM25")
    await expect(listing(stack, clinic, occupational), S.PERMISSION_DENIED, "PROFESSION_EXCLUDED")
    dossier, _ = await new_record(stack)
    stub = records(stack.card_channel(clinic))
    await expect(
        stub.GetDossier(
            R.GetDossierRequest(name=dossier),
            metadata=signed(clinic, OCCUPATIONAL_RPPS, "10", "SM25"),
            timeout=10,
        ),
        S.PERMISSION_DENIED,
        "PROFESSION_EXCLUDED",
    )


async def test_assertion_and_connection_must_go_together(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    await expect(listing(stack, hospital, ()), S.UNAUTHENTICATED, "ASSERTION_REQUIRED")
    two = (*signed(hospital), *signed(hospital))
    await expect(listing(stack, hospital, two), S.UNAUTHENTICATED, "CREDENTIALS_AMBIGUOUS")
    # On a personal CPS connection (or the patient port) an assertion is never ignored.
    token = signed(hospital)
    await expect(
        listing(stack, stack.card("doctor"), token), S.UNAUTHENTICATED, "ASSERTION_UNEXPECTED"
    )
    patient = directory(stack.patient_channel())
    await expect(
        patient.ListProfessionals(I.ListProfessionalsRequest(), metadata=token, timeout=10),
        S.UNAUTHENTICATED,
        "ASSERTION_UNEXPECTED",
    )


async def test_revoked_and_unregistered_establishments_are_refused(stack: LiveStack) -> None:
    closed = establishment(stack, "closed_lab")
    await expect(
        listing(stack, closed, signed(closed, MARTIN, "10", "SM53")),
        S.UNAUTHENTICATED,
        "CERTIFICATE_REVOKED",
    )
    unknown = test_card(stack, "unregistered_clinic")
    await expect(
        listing(stack, unknown, signed(unknown, MARTIN, "10", "SM53")),
        S.UNAUTHENTICATED,
        "CERTIFICATE_UNKNOWN",
    )


def _thumbprint(cert_pem: bytes) -> str:
    return kit_pki.x5t_s256(x509.load_pem_x509_certificate(cert_pem))


def _replica_channel(stack: LiveStack, port: int, pair: tuple[bytes, bytes]) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        stack.ca_pem, private_key=pair[1], certificate_chain=pair[0]
    )
    return grpc.aio.secure_channel(f"localhost:{port}", creds)


async def test_an_assertion_is_accepted_once_across_gateway_replicas(stack: LiveStack) -> None:
    hospital = establishment(stack, "hospital")
    async with replica(stack) as second:
        assert second.replay is not None
        await asyncio.wait_for(second.replay.ready.wait(), 10)
        async with _replica_channel(stack, second.port, hospital) as channel:
            other = directory(channel)
            once = signed(hospital)
            await listing(stack, hospital, once)  # the launcher's gateway accepts it
            await expect(
                other.ListProfessionals(
                    I.ListProfessionalsRequest(page_size=1), metadata=once, timeout=10
                ),
                S.UNAUTHENTICATED,
                "ASSERTION_REPLAYED",
            )
            fresh = signed(hospital)
            await other.ListProfessionals(
                I.ListProfessionalsRequest(page_size=1), metadata=fresh, timeout=10
            )
            await expect(listing(stack, hospital, fresh), S.UNAUTHENTICATED, "ASSERTION_REPLAYED")


async def test_without_the_shared_id_store_establishment_calls_fail_closed(
    stack: LiveStack,
) -> None:
    hospital = establishment(stack, "hospital")
    dead_nats = "nats://127.0.0.1:9"  # nothing listens: the bucket never opens
    async with replica(
        stack, nats_url=dead_nats, revocation_start_wait_s=0, invalidate_on_events=False
    ) as second:
        async with _replica_channel(stack, second.port, hospital) as channel:
            await expect(
                directory(channel).ListProfessionals(
                    I.ListProfessionalsRequest(page_size=1), metadata=signed(hospital), timeout=10
                ),
                S.UNAVAILABLE,
                "ASSERTION_REPLAY_UNCHECKED",
            )
        # A personal CPS card does not depend on it.
        async with _replica_channel(stack, second.port, stack.card("doctor")) as channel:
            await directory(channel).ListProfessionals(
                I.ListProfessionalsRequest(page_size=1), timeout=10
            )


async def test_a_lost_replay_bucket_is_bound_again_not_refused_forever(stack: LiveStack) -> None:
    """NATS lost the bucket (a purge, a node that lost its store): the next claim creates it
    again and still refuses a replay, instead of ASSERTION_REPLAY_UNCHECKED until a restart."""
    hospital = establishment(stack, "hospital")
    await listing(stack, hospital, signed(hospital))  # the gateway holds the bucket open
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().delete_key_value(replay.BUCKET)
    finally:
        await nc.close()
    once = signed(hospital)
    await listing(stack, hospital, once)
    await expect(listing(stack, hospital, once), S.UNAUTHENTICATED, "ASSERTION_REPLAYED")
