"""Records at scale: ListDocuments / SearchDocuments latency for one patient when
the database holds a small and a large number of documents (PostgreSQL), and
CreateDocument throughput for 100 KiB documents.

    .venv/bin/python bench/records_scale.py --quick   # 1k then 100k documents
    .venv/bin/python bench/records_scale.py           # 10k then 1M documents

Documents are bulk-loaded with asyncpg COPY (100 per patient, encrypted small
contents, French tsvectors computed by PostgreSQL for a set of bodies), then
the measured patient's calls go through the real gRPC server. The goal is a
p99 ratio large/small ≤ 1.3: per-record indexes, not scans. Writes
bench/results/records_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing import principals
from dmp_dev.testing.databases import PG_ADMIN_DSN
from dmp_dev.testing.nats_server import NatsServer
from kit import migrations
from kit.logs import configure_logging
from kit.server import start_app
from services.records import crypto
from services.records.app import RecordsApp
from services.records.settings import RecordsSettings
from tests.fixtures.records import make_ins, professional

R = records_pb2
DOCS_PER_PATIENT = 100
WORDS = [
    "radiographie thorax face profil normale",
    "consultation cardiologie hypertension arterielle",
    "bilan biologique hemoglobine glycemie",
    "compte rendu operatoire appendicectomie",
    "lettre de liaison sortie hospitalisation",
    "ordonnance antibiotique amoxicilline",
    "echographie abdominale foie vesicule",
    "vaccination grippe saisonniere",
]
TYPES = [("11488-4", "10"), ("57833-6", "42"), ("11369-6", "52"), ("11490-0", "10")]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Loader:
    """Bulk-loads records and documents with COPY, ids assigned here."""

    def __init__(self, dsn: str, settings: RecordsSettings) -> None:
        self.dsn = dsn
        self.settings = settings
        self.keks = settings.kek_bytes()
        self.next_dossier = 1
        self.next_doc = 1
        self.tsv: list[str] = []

    async def prepare(self, conn: asyncpg.Connection) -> None:
        for body in WORDS:
            self.tsv.append(
                await conn.fetchval(
                    "SELECT (setweight(to_tsvector('french', $1), 'A')"
                    " || to_tsvector('french', $1))::text",
                    body,
                )
            )

    async def load(self, conn: asyncpg.Connection, patients: int) -> list[int]:
        now = datetime.now(UTC)
        dossier_rows, doc_rows, content_rows, search_rows = [], [], [], []
        pks = []
        author = R.Author(kind=R.AUTHOR_KIND_PROFESSIONAL, rpps="10000000001").SerializeToString()
        identity = R.PatientIdentity(
            birth_family_name="X", birth_given_names=["Y"]
        ).SerializeToString()
        for _ in range(patients):
            pk = self.next_dossier
            self.next_dossier += 1
            dossier_id = uuid.uuid4().hex
            dek = crypto.new_data_key()
            wrapped = crypto.wrap(dek, dossier_id, self.settings.records_kek_id, self.keks)
            dossier_rows.append(
                (
                    pk,
                    dossier_id,
                    f"B{pk:014d}",
                    identity,
                    b"",
                    "1980-01-01",
                    1,
                    2,
                    "bench",
                    "2024-01",
                    now,
                    now,
                    now,
                    0,
                    "",
                    wrapped.kek_id,
                    wrapped.blob,
                    1,
                    0,
                )
            )
            pks.append(pk)
            for j in range(DOCS_PER_PATIENT):
                doc_pk = self.next_doc
                self.next_doc += 1
                document_id = uuid.uuid4().hex
                body = WORDS[(doc_pk + j) % len(WORDS)]
                type_code, class_code = TYPES[j % len(TYPES)]
                when = now - timedelta(days=j, minutes=doc_pk % 997)
                plain = f"{body} document {doc_pk}".encode()
                doc_rows.append(
                    (
                        doc_pk,
                        document_id,
                        pk,
                        type_code,
                        class_code,
                        body[:60],
                        author,
                        "10000000001",
                        "10000000001",
                        "10000000001",
                        when,
                        when,
                        "",
                        "",
                        R.DOCUMENT_FORMAT_TEXT_PLAIN,
                        len(plain),
                        hashlib.sha256(plain).hexdigest(),
                        False,
                        False,
                        False,
                        1,
                        1,
                        now,
                        now,
                        "",
                        1,
                    )
                )
                content_rows.append((doc_pk, crypto.seal(dek, plain, document_id)))
                search_rows.append((doc_pk, pk, self.tsv[(doc_pk + j) % len(WORDS)]))
        await conn.copy_records_to_table(
            "dossiers",
            records=dossier_rows,
            columns=[
                "id",
                "dossier_id",
                "patient_ins",
                "identity",
                "contact",
                "birth_date",
                "state",
                "creation_channel",
                "creator",
                "accepted_terms_version",
                "terms_accept_time",
                "create_time",
                "update_time",
                "close_reason",
                "close_comment",
                "kek_id",
                "wrapped_dek",
                "revision",
                "profile_revision",
            ],
        )
        await conn.copy_records_to_table(
            "documents",
            records=doc_rows,
            columns=[
                "id",
                "document_id",
                "dossier_pk",
                "type_code",
                "class_code",
                "title",
                "author",
                "author_rpps",
                "author_subject",
                "submitter",
                "service_start_time",
                "sort_time",
                "practice_setting_code",
                "facility_type_code",
                "format",
                "size_bytes",
                "sha256",
                "masque_ps",
                "invisible_patient",
                "invisible_representants",
                "status",
                "version",
                "create_time",
                "update_time",
                "delete_reason",
                "revision",
            ],
        )
        await conn.copy_records_to_table(
            "document_contents", records=content_rows, columns=["document_pk", "sealed"]
        )
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS s_in (p bigint, d bigint, t text)")
        await conn.execute("TRUNCATE s_in")
        await conn.copy_records_to_table("s_in", records=search_rows, columns=["p", "d", "t"])
        await conn.execute(
            "INSERT INTO document_search (document_pk, dossier_pk, tsv)"
            " SELECT p, d, t::tsvector FROM s_in"
        )
        return pks

    async def grow(self, total_docs: int, batch_patients: int = 500) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while (self.next_doc - 1) < total_docs:
                left = (total_docs - (self.next_doc - 1)) // DOCS_PER_PATIENT
                await self.load(conn, max(1, min(batch_patients, left)))
            await conn.execute(f"SELECT setval('dossiers_id_seq', {self.next_dossier})")
            await conn.execute(f"SELECT setval('documents_id_seq', {self.next_doc})")
            await conn.execute("ANALYZE")
        finally:
            await conn.close()


async def measure(stub: Any, parent: str, rounds: int) -> dict[str, float]:
    pro = professional()
    path = "/dmp.records.v1.RecordsService/"
    lists, searches = [], []
    for i in range(rounds):
        md = principals.metadata(pro, path + "ListDocuments")
        t0 = time.perf_counter()
        out = await stub.ListDocuments(
            R.ListDocumentsRequest(parent=parent, page_size=50), metadata=md
        )
        if i == 0 and out.next_page_token:  # a second page is part of the workload
            md = principals.metadata(pro, path + "ListDocuments")
            await stub.ListDocuments(
                R.ListDocumentsRequest(parent=parent, page_size=50, page_token=out.next_page_token),
                metadata=md,
            )
        lists.append((time.perf_counter() - t0) * 1000)
        md = principals.metadata(pro, path + "SearchDocuments")
        t0 = time.perf_counter()
        await stub.SearchDocuments(
            R.SearchDocumentsRequest(parent=parent, query="radiographie thorax"), metadata=md
        )
        searches.append((time.perf_counter() - t0) * 1000)
    return {
        "list_p50_ms": round(statistics.median(lists), 3),
        "list_p99_ms": round(pct(lists, 0.99), 3),
        "search_p50_ms": round(statistics.median(searches), 3),
        "search_p99_ms": round(pct(searches, 0.99), 3),
    }


async def create_throughput(stub: Any, parent: str, count: int, concurrency: int) -> float:
    pro = professional()
    content = b"%PDF-1.7\n" + os.urandom(100 * 1024 - 9)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            doc = R.Document(
                title="CR 100 KiB",
                type_code="11488-4",
                format=R.DOCUMENT_FORMAT_PDF,
                content=content,
            )
            md = principals.metadata(pro, "/dmp.records.v1.RecordsService/CreateDocument")
            await stub.CreateDocument(
                R.CreateDocumentRequest(parent=parent, document=doc, request_id=str(uuid.uuid4())),
                metadata=md,
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    small, large = (1_000, 100_000) if args.quick else (10_000, 1_000_000)
    db = f"dmp_bench_records_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    dsn = f"{base}/{db}"
    nats_dir = tempfile.mkdtemp(prefix="bench-nats-")
    nats_server = NatsServer(Path(nats_dir)).start()
    started = time.perf_counter()
    try:
        settings = RecordsSettings(
            database_url=dsn.replace("postgresql://", "postgresql+asyncpg://"),
            nats_url=nats_server.url,
            log_level="WARNING",
        )
        await migrations.upgrade("records", settings.database_url)  # never at start
        running = await start_app(RecordsApp(settings))
        channel = grpc.aio.insecure_channel(
            running.target, options=[("grpc.max_send_message_length", 32 * 1024 * 1024)]
        )
        stub = records_pb2_grpc.RecordsServiceStub(channel)
        loader = Loader(dsn, settings)
        conn = await asyncpg.connect(dsn)
        await loader.prepare(conn)
        await conn.close()
        t0 = time.perf_counter()
        await loader.grow(small)
        load_small_s = time.perf_counter() - t0
        parent = "dossiers/" + (
            await (await asyncpg.connect(dsn)).fetchval(
                "SELECT dossier_id FROM dossiers WHERE id = 1"
            )
        )
        await measure(stub, parent, 20)  # warm-up
        at_small = await measure(stub, parent, args.rounds)
        print(f"{small} docs (load {load_small_s:.1f}s): {at_small}", flush=True)
        t0 = time.perf_counter()
        await loader.grow(large)
        load_large_s = time.perf_counter() - t0
        await measure(stub, parent, 20)
        at_large = await measure(stub, parent, args.rounds)
        print(f"{large} docs (load {load_large_s:.1f}s): {at_large}", flush=True)
        # Creates go to a fresh record so the measured patient's list stays fixed.
        ins = make_ins(999_999)
        req = R.CreateDossierRequest(
            dossier=R.Dossier(
                patient_ins=ins,
                identity=R.PatientIdentity(
                    birth_family_name="B",
                    birth_given_names=["C"],
                    birth_date=R.Date(year=1970, month=1, day=1),
                    sex=R.SEX_MALE,
                ),
            ),
            professional=R.ProfessionalCreation(
                consent=R.ConsentAttestation(consent_obtained=True, information_given=True)
            ),
            request_id=str(uuid.uuid4()),
        )
        md = principals.metadata(professional(), "/dmp.records.v1.RecordsService/CreateDossier")
        dossier = await stub.CreateDossier(req, metadata=md)
        await create_throughput(stub, dossier.name, 10, 4)  # warm-up
        create_per_s = await create_throughput(stub, dossier.name, args.creates, args.concurrency)
        print(f"CreateDocument 100 KiB: {create_per_s:.1f}/s", flush=True)
        await channel.close()
        await running.stop(0.5)
    finally:
        nats_server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return {
        "sizes": [small, large],
        "docs_per_patient": DOCS_PER_PATIENT,
        "small": at_small,
        "large": at_large,
        "list_p99_ratio": round(at_large["list_p99_ms"] / at_small["list_p99_ms"], 3),
        "search_p99_ratio": round(at_large["search_p99_ms"] / at_small["search_p99_ms"], 3),
        "list_p50_ratio": round(at_large["list_p50_ms"] / at_small["list_p50_ms"], 3),
        "search_p50_ratio": round(at_large["search_p50_ms"] / at_small["search_p50_ms"], 3),
        "create_per_s": round(create_per_s, 1),
        "create_count": args.creates,
        "create_concurrency": args.concurrency,
        "load_s": [round(load_small_s, 1), round(load_large_s, 1)],
        "total_s": round(time.perf_counter() - started, 1),
        "quick": args.quick,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k/100k instead of 10k/1M documents")
    parser.add_argument("--rounds", type=int, default=300, help="measured calls per operation")
    parser.add_argument("--creates", type=int, default=200, help="100 KiB documents to create")
    parser.add_argument("--concurrency", type=int, default=8)
    ns = parser.parse_args()
    configure_logging("records", "WARNING", False)
    out = asyncio.run(main(ns))
    print(json.dumps(out, indent=2))
    target = Path(__file__).parent / "results" / "records_scale.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
