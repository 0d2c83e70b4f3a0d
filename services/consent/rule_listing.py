"""ListAccessRules: a record's rules, newest first, for the patient and the platform.

A rule past its `expire_time` reads EXPIRED: it is filtered out here (not by
the query) unless inactive rules are asked for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit import filtering, pagination
from kit.db import utcnow
from services.consent import guard, repository
from services.consent.parse import dossier_of
from services.consent.protos import effective_state, rule_proto
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2

#: ListAccessRules' AIP-160 `filter` (kit.filtering); see ListAccessRulesRequest.filter.
RULE_FILTER = {
    "kind": filtering.Field("enum", filtering.EQUALITY, C.AccessRuleKind.DESCRIPTOR),
}


async def list_rules(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.ListAccessRulesRequest,
) -> consent_pb2.ListAccessRulesResponse:
    """The record's rules, newest first; rules past their expiry read as inactive."""
    dossier = dossier_of(request.parent, "parent")
    size = pagination.page_size(request.page_size, 50, 200)
    conditions = filtering.parse(request.filter, RULE_FILTER)
    kinds = sorted({k for k in filtering.one_of(conditions, "kind") if isinstance(k, int)})
    # A token continues one caller's listing of one filter.
    bound = pagination.fingerprint(dossier, kinds, request.show_inactive, principal.subject)
    position = rt.page_tokens.read(request.page_token, bound)
    after = None if position is None else position.integer("id")
    now = utcnow()
    await guard.permit(
        rt, principal, "ListAccessRules", A.ACTION_READ_ACCESS_RULES, dossier, now=now
    )
    rows: list[Row[Any]] = []
    last_id: int | None = None
    more = False
    async with rt.sessions() as session:
        # Expired rules are filtered here; keep reading until the page is full.
        while len(rows) < size:
            batch = await repository.rules_batch(
                session,
                dossier,
                kinds=kinds,
                active_only=not request.show_inactive,
                before=after if last_id is None else last_id,
                limit=size + 1,
            )
            if not batch:
                break
            for row in batch:
                last_id = row.id
                if request.show_inactive or effective_state(row, now) == (
                    C.ACCESS_RULE_STATE_ACTIVE
                ):
                    if len(rows) == size:
                        more = True
                        break
                    rows.append(row)
            if more or len(batch) <= size:
                break
    response = C.ListAccessRulesResponse(access_rules=[rule_proto(r, now) for r in rows])
    if more and rows:
        response.next_page_token = rt.page_tokens.issue({"id": int(rows[-1].id)}, bound)
    return response
