"""Full patient logins per second: StartLogin → code from the SMS sink → VerifyOneTimeCode.

Starts nats-server, notify (file SMS sink) and identity in this process on a
temporary SQLite database (`--database postgresql` for a throw-away PostgreSQL
database on 127.0.0.1:5432), with identity's production argon2 parameters.
Registers `--accounts` patients, then runs logins from `--concurrency` workers
until `--logins` are done or `--seconds` have passed. The baseline is raw
argon2id verifications per second with the same parameters and the same number
of threads, measured in the same run: a login costs one verification, so
`ratio` shows how much of the argon2 budget the rest of the path costs.
Loopback only; writes bench/results/identity_login.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from argon2 import PasswordHasher, Type

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing import principals
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import NatsServer
from kit import ins as ins_rules
from kit.logs import configure_logging
from kit.server import RunningServer, start_app
from services.identity.app import IdentityApp
from services.identity.settings import IdentitySettings
from services.notify.app import NotifyApp
from services.notify.settings import NotifySettings

RESULTS = Path(__file__).parent / "results" / "identity_login.json"
SERVICE = "/dmp.identity.v1.IdentityService/"
PASSWORD = "Bench-Password-2024!"
_CODE = re.compile(r"(?<![0-9])([0-9]{6})(?![0-9])")


class SmsSink:
    """Reads codes from notify's dev SMS file, keeping a read offset (the file only grows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.codes: dict[str, list[str]] = {}

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            message = json.loads(line)
            found = _CODE.findall(message["text"])
            if found:
                self.codes.setdefault(message["to"], []).append(found[-1])

    async def code_after(self, phone: str, count: int, timeout_s: float = 10.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            sent = self.codes.get(phone, [])
            if len(sent) > count:
                return sent[count]
            await asyncio.sleep(0.002)
        raise TimeoutError(f"no code for {phone}")


def new_ins(n: int) -> str:
    nir = f"1{n % 100:02d}05{(n // 100) % 95 + 1:02d}{n:06d}"[:13]
    return nir + f"{ins_rules.control_key(nir):02d}"


async def register(stub: Any, count: int) -> list[tuple[str, str]]:
    desk = principals.staff("bench-desk", ("guichet_amo",))
    accounts = []
    for n in range(count):
        patient_ins = new_ins(n)
        phone = f"+3361{n:07d}"
        issued = await stub.IssueCreationCode(
            identity_pb2.IssueCreationCodeRequest(request_id=str(uuid.uuid4()), ins=patient_ins),
            metadata=principals.metadata(desk, SERVICE + "IssueCreationCode"),
        )
        await stub.RegisterPatientAccount(
            identity_pb2.RegisterPatientAccountRequest(
                request_id=str(uuid.uuid4()),
                ins=patient_ins,
                creation_code=issued.creation_code,
                password=PASSWORD,
                mobile_phone=phone,
            )
        )
        accounts.append((patient_ins, phone))
    return accounts


async def run_logins(
    stub: Any,
    sink: SmsSink,
    accounts: list[tuple[str, str]],
    *,
    concurrency: int,
    max_logins: int,
    max_seconds: float,
) -> tuple[int, float, list[float]]:
    done = 0
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker(mine: list[tuple[str, str]]) -> None:
        nonlocal done
        i = 0
        while done < max_logins and time.perf_counter() < deadline:
            patient_ins, phone = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            sink.poll()
            before = len(sink.codes.get(phone, []))
            challenge = await stub.StartLogin(
                identity_pb2.StartLoginRequest(
                    request_id=str(uuid.uuid4()), identifier=patient_ins, password=PASSWORD
                )
            )
            code = await sink.code_after(phone, before)
            await stub.VerifyOneTimeCode(
                identity_pb2.VerifyOneTimeCodeRequest(
                    request_id=str(uuid.uuid4()), challenge=challenge.challenge, code=code
                )
            )
            latencies.append(time.perf_counter() - t0)
            done += 1

    # Each worker owns its accounts, so no two logins of one account overlap.
    await asyncio.gather(*(worker(accounts[w::concurrency]) for w in range(concurrency)))
    return done, time.perf_counter() - started, latencies


def argon2_baseline(params: dict[str, int], threads: int, seconds: float) -> float:
    hasher = PasswordHasher(type=Type.ID, **params)
    stored = hasher.hash(PASSWORD)
    stop = time.perf_counter() + seconds

    def loop() -> int:
        n = 0
        while time.perf_counter() < stop:
            hasher.verify(stored, PASSWORD)
            n += 1
        return n

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("bench", "WARNING", json_output=False)
    with tempfile.TemporaryDirectory(prefix="dmp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        nats = NatsServer(tmp / "nats").start()
        databases = DatabaseFactory(args.database, tmp)
        running: list[RunningServer] = []
        try:
            sms_path = tmp / "sms.ndjson"
            notify = await start_app(
                NotifyApp(
                    NotifySettings(
                        database_url=await databases.migrated("notify"),
                        sms_provider="file",
                        sms_sink_path=str(sms_path),
                        log_json=False,
                        shutdown_grace_s=0.5,
                    )
                )
            )
            running.append(notify)
            identity_app = IdentityApp(
                IdentitySettings(
                    database_url=await databases.migrated("identity"),
                    nats_url=nats.url,
                    notify_target=notify.target,
                    token_signing_key_file=str(tmp / "signing.pem"),
                    token_signing_key_create=True,
                    log_json=False,
                    shutdown_grace_s=0.5,
                )
            )
            identity = await start_app(identity_app)
            running.append(identity)
            params = identity_app.argon2_params.as_dict()
            async with grpc.aio.insecure_channel(identity.target) as channel:
                stub = identity_pb2_grpc.IdentityServiceStub(channel)
                accounts = await register(stub, args.accounts)
                done, elapsed, latencies = await run_logins(
                    stub,
                    SmsSink(sms_path),
                    accounts,
                    concurrency=args.concurrency,
                    max_logins=args.logins,
                    max_seconds=args.seconds,
                )
        finally:
            for server in reversed(running):
                await server.stop(0.5)
            await databases.drop_all()
            nats.stop()
    baseline = argon2_baseline(params, args.concurrency, args.baseline_seconds)
    logins_per_s = done / elapsed
    latencies.sort()
    return {
        "logins_per_s": round(logins_per_s, 2),
        "logins": done,
        "seconds": round(elapsed, 3),
        "concurrency": args.concurrency,
        "accounts": args.accounts,
        "database": args.database,
        "latency_ms": {
            "p50": round(latencies[len(latencies) // 2] * 1000, 1),
            "p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
        "argon2": params,
        "baseline_argon2_verify_per_s": round(baseline, 2),
        "ratio": round(logins_per_s / baseline, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--logins", type=int, default=200, help="stop after this many logins")
    parser.add_argument("--seconds", type=float, default=30.0, help="or after this long")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    arguments = parser.parse_args()
    if arguments.accounts < arguments.concurrency:
        parser.error("--accounts must be >= --concurrency")
    result = asyncio.run(main(arguments))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"identity logins: {result['logins_per_s']} logins/s "
        f"({result['logins']} in {result['seconds']} s, concurrency {result['concurrency']}, "
        f"{result['database']}); latency p50 {result['latency_ms']['p50']} ms, "
        f"p95 {result['latency_ms']['p95']} ms"
    )
    print(f"argon2id parameters: {result['argon2']}")
    print(
        f"baseline: {result['baseline_argon2_verify_per_s']} raw argon2 verifications/s "
        f"with {result['concurrency']} threads; ratio logins/verifications = {result['ratio']}"
    )
    print(f"written to {RESULTS}")
