"""Login and code entry spend one per-address bucket, whichever door they come through.

A gateway replica of this test's own (tests/gateway/replica.py) with a small anonymous
burst, on 127.0.0.1 only, so both clients are the same address: calls without a credential
through the JSON door exhaust the bucket, then gRPC's StartLogin is refused RATE_LIMITED
too, and the door answers 429 with the reason and a RetryInfo.
"""

from __future__ import annotations

import grpc
import pytest

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.door.helpers import http_client, send
from tests.e2e.helpers import rid
from tests.fixtures.records import make_ins
from tests.gateway.replica import replica

BURST = 4


async def test_the_anonymous_bucket_is_shared_by_both_doors(stack: LiveStack) -> None:
    async with replica(
        stack,
        grpc_host="127.0.0.1",
        anonymous_rate_limit_per_s=0.01,
        anonymous_rate_limit_burst=BURST,
    ) as gateway:
        base = f"https://127.0.0.1:{gateway.http_port}"
        async with http_client(stack) as app:
            for _ in range(BURST):
                wrong = await send(
                    app,
                    "POST",
                    f"{base}/v1/accounts:startLogin",
                    json={"identifier": make_ins(), "password": "x" * 12, "requestId": rid()},
                    server_hostname="localhost",
                )
                assert wrong.status == 401, wrong
                assert wrong.reason == "INVALID_CREDENTIALS"
            credentials = grpc.ssl_channel_credentials(stack.ca_pem)
            options = [("grpc.ssl_target_name_override", "localhost")]
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{gateway.patient_port}", credentials, options=options
            ) as channel:
                identity = identity_pb2_grpc.IdentityServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await identity.StartLogin(
                        identity_pb2.StartLoginRequest(
                            identifier=make_ins(), password="x" * 12, request_id=rid()
                        ),
                        timeout=10,
                    )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            info = error_info(caught.value)
            assert info is not None
            assert info.reason == "RATE_LIMITED"
            limited = await send(
                app,
                "POST",
                f"{base}/v1/session",
                json={"challenge": "challenges/x", "code": "123456", "requestId": rid()},
                server_hostname="localhost",
            )
            assert limited.status == 429, limited
            assert limited.reason == "RATE_LIMITED"
            assert any(d["@type"].endswith("RetryInfo") for d in limited.body["details"])
