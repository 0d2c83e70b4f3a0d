"""The gateway memoizes the record named by small READ requests only: a write's bytes may
carry medical content (an allergy, a blood group), which the edge must never keep in memory."""

from __future__ import annotations

import grpc

from dmp.consent.v1 import consent_pb2_grpc
from dmp.records.v1 import records_pb2
from gateway.authz import Decisions
from gateway.routing import build_routes
from kit.clients import InternalCredentials

KEY = b"k" * 32
SVC = "/dmp.records.v1.RecordsService/"


def decisions() -> Decisions:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # never called here
    return Decisions(
        consent_pb2_grpc.ConsentServiceStub(channel),
        InternalCredentials("gateway", "k1", {"k1": KEY}),
        "k1",
        KEY,
    )


async def test_reads_are_memoized_writes_are_not() -> None:
    # Async: a grpc.aio channel needs the running loop; in a plain test it took whatever loop
    # the thread had, and failed after a test that left none (seen once slow modules ran first).
    routes = build_routes()
    d = decisions()
    read = records_pb2.GetDocumentRequest(name="dossiers/d1/documents/x1").SerializeToString()
    target = d._target(routes[SVC + "GetDocument"], read)
    assert target.dossier == "dossiers/d1"
    assert d._target(routes[SVC + "GetDocument"], read) == target

    write = records_pb2.UpdateHealthProfileRequest(
        health_profile=records_pb2.HealthProfile(name="dossiers/d1/healthProfile")
    ).SerializeToString()
    written = d._target(routes[SVC + "UpdateHealthProfile"], write)
    assert written.dossier == "dossiers/d1"
    assert [key[1] for key in d._targets] == [read]
