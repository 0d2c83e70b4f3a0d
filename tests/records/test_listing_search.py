"""ListDocuments filters and keyset pagination; SearchDocuments (FTS)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import grpc

from dmp.records.v1 import records_pb2
from tests.fixtures.records import RecordsCalls, patient, professional
from tests.records.cda_samples import for_patient
from tests.records.helpers import add_doc, expect_error, new_dossier

R = records_pb2
C = grpc.StatusCode


async def test_filters(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    now = datetime.now(UTC)
    a = await add_doc(records, name, professional("10000000071"), start=now - timedelta(days=30))
    b = await add_doc(
        records,
        name,
        professional("10000000072"),
        type_code="57833-6",
        start=now - timedelta(days=3),
    )
    pro = professional()

    async def listed(flt: str) -> list[str]:
        out = await records.call(
            "ListDocuments", R.ListDocumentsRequest(parent=name, filter=flt), pro
        )
        return [d.name for d in out.documents]

    def rfc3339(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    assert await listed("") == [b.name, a.name]  # newest service date first
    assert await listed('class_code = "42"') == [b.name]
    assert await listed('type_code = "11488-4"') == [a.name]
    assert await listed('author.rpps = "10000000071"') == [a.name]
    a_class = a.class_code
    assert await listed(f'class_code = "42" OR class_code = "{a_class}"') == [b.name, a.name]
    since = rfc3339(now - timedelta(days=10))
    assert await listed(f'service_stop_time >= "{since}"') == [b.name]
    assert await listed(f'service_start_time < "{since}"') == [a.name]
    assert await listed(f'service_start_time < "{since}" AND type_code = "57833-6"') == []
    assert await listed(f'create_time >= "{rfc3339(now - timedelta(hours=1))}"') == [b.name, a.name]
    assert await listed("status = DELETED") == []
    assert await listed("confidentiality_flags:MASQUE_PS") == []
    out = await records.call(
        "ListDocuments", R.ListDocumentsRequest(parent=name, order_by="create_time"), pro
    )
    assert [d.name for d in out.documents] == [a.name, b.name]
    await expect_error(
        records.call(
            "ListDocuments",
            R.ListDocumentsRequest(parent=name, filter='class_code = "77"'),
            pro,
        ),
        C.INVALID_ARGUMENT,
        "INVALID_FILTER",
    )
    for bad in ("class = 10", "status = GONE", 'create_time > "2024-01-01"', "title = x"):
        await expect_error(
            records.call("ListDocuments", R.ListDocumentsRequest(parent=name, filter=bad), pro),
            C.INVALID_ARGUMENT,
            "INVALID_FILTER",
        )
    await expect_error(
        records.call("ListDocuments", R.ListDocumentsRequest(parent=name, order_by="title"), pro),
        C.INVALID_ARGUMENT,
        "INVALID_ORDER_BY",
    )


async def test_pagination_is_stable_under_inserts(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    now = datetime.now(UTC)
    made = [
        await add_doc(records, name, start=now - timedelta(days=10 + i), title=f"CR {i}")
        for i in range(7)
    ]
    pro = professional()
    page = await records.call(
        "ListDocuments", R.ListDocumentsRequest(parent=name, page_size=3), pro
    )
    seen = [d.name for d in page.documents]
    assert page.total_size == 7
    assert page.next_page_token
    # Newer documents arrive while the client pages: no duplicate, no gap.
    await add_doc(records, name, start=now - timedelta(days=1))
    await add_doc(records, name, start=now - timedelta(days=12, hours=12))  # lands in a later page
    token = page.next_page_token
    while token:
        page = await records.call(
            "ListDocuments", R.ListDocumentsRequest(parent=name, page_size=3, page_token=token), pro
        )
        seen.extend(d.name for d in page.documents)
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == 8
    assert [m.name for m in made] == [n for n in seen if n in {m.name for m in made}]


async def test_tampered_page_token(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    for i in range(3):
        await add_doc(records, name, title=f"x{i}")
    pro = professional()
    page = await records.call(
        "ListDocuments", R.ListDocumentsRequest(parent=name, page_size=1), pro
    )
    body, _, mac = page.next_page_token.partition(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body).replace(b'"i": ', b'"i": 1')
    ).decode()
    for token in (f"{forged}.{mac}", "garbage", page.next_page_token + "x"):
        await expect_error(
            records.call(
                "ListDocuments",
                R.ListDocumentsRequest(parent=name, page_size=1, page_token=token),
                pro,
            ),
            C.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
    # A token from another query is refused too.
    await expect_error(
        records.call(
            "ListDocuments",
            R.ListDocumentsRequest(
                parent=name, page_size=1, page_token=page.next_page_token, order_by="create_time"
            ),
            pro,
        ),
        C.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_search_title_metadata_and_extracted_text(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    pro = professional()
    vac = await add_doc(  # a CDA enters its own patient's record, from its author (issue 15)
        records,
        name,
        professional("01234567897"),
        type_code="87273-9",
        title="Note de vaccination",
        content=for_patient("VAC-NOTE_2023.01.xml", ins),
        fmt=R.DOCUMENT_FORMAT_CDA_XML,
    )
    txt = await add_doc(
        records, name, title="Consultation", content=b"Le patient presente une bronchite aigue."
    )
    masked = await add_doc(
        records,
        name,
        professional("10000000081"),
        title="Consultation bronchite",
        flags=(R.CONFIDENTIALITY_FLAG_MASQUE_PS,),
    )

    async def hits(query: str, who: object = pro) -> list[str]:
        out = await records.call(
            "SearchDocuments", R.SearchDocumentsRequest(parent=name, query=query), who
        )
        return [r.document.name for r in out.results]

    assert await hits("vaccination") == [vac.name]  # title
    assert await hits("bronchite") == [txt.name]  # extracted text; masked one excluded
    assert set(await hits("bronchite", patient(ins))) == {txt.name, masked.name}
    assert await hits("MULLER") == [vac.name]  # text inside the CDA
    assert await hits("bronchite -aigue") == []
    assert await hits('"bronchite aigue"') == [txt.name]
    out = await records.call(
        "SearchDocuments", R.SearchDocumentsRequest(parent=name, query="vaccination"), pro
    )
    assert "«" in out.results[0].snippet
    for query, reason in (("", "QUERY_REQUIRED"), ("x" * 300, "QUERY_TOO_LONG")):
        await expect_error(
            records.call(
                "SearchDocuments", R.SearchDocumentsRequest(parent=name, query=query), pro
            ),
            C.INVALID_ARGUMENT,
            reason,
        )


async def test_search_pagination(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    for i in range(5):
        await add_doc(records, name, title=f"Radiographie {i}", content=b"radiographie thorax")
    pro = professional()
    seen: list[str] = []
    token = ""
    while True:
        out = await records.call(
            "SearchDocuments",
            R.SearchDocumentsRequest(
                parent=name, query="radiographie", page_size=2, page_token=token
            ),
            pro,
        )
        seen.extend(r.document.name for r in out.results)
        token = out.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
