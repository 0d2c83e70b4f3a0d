"""Stored rows as the API shows them: access rules and access-log entries.

A rule's state is evaluated at read time (an active rule past its
`expire_time` reads EXPIRED); its etag changes with its state and update time.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

from google.protobuf import timestamp_pb2
from sqlalchemy import Row

from dmp.consent.v1 import consent_pb2
from kit.directory import ProfessionalInfo, profession_label, specialty_label

C = consent_pb2


def timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def etag(row: Row[Any]) -> str:
    raw = f"{row.rule_id}:{row.state}:{row.update_time.isoformat()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def effective_state(row: Row[Any], now: datetime) -> int:
    if (
        row.state == C.ACCESS_RULE_STATE_ACTIVE
        and row.expire_time is not None
        and row.expire_time <= now
    ):
        return int(C.ACCESS_RULE_STATE_EXPIRED)
    return int(row.state)


def rule_proto(row: Row[Any], now: datetime) -> consent_pb2.AccessRule:
    rule = C.AccessRule(
        name=f"{row.dossier}/accessRules/{row.rule_id}",
        kind=row.kind,
        state=cast(Any, effective_state(row, now)),
        professional_rpps=row.professional_rpps,
        professional_display_name=row.display_name,
        professional_profession_code=row.profession_code,
        creator=row.creator,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        expire_time=timestamp(row.expire_time),
        revoke_time=timestamp(row.revoke_time),
        revoker=row.revoker,
        etag=etag(row),
    )
    if row.kind == C.ACCESS_RULE_KIND_GRANT:
        rule.grant.ParseFromString(row.details)
    elif row.kind == C.ACCESS_RULE_KIND_EMERGENCY_ACCESS:
        rule.emergency_access.ParseFromString(row.details)
    elif row.kind == C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES:
        rule.emergency_preferences.ParseFromString(row.details)
    return rule


def entry_proto(row: Row[Any], person: ProfessionalInfo | None) -> consent_pb2.AccessLogEntry:
    """An access-log entry; `person`: the directory's entry of its RPPS, when it knows it."""
    specialty = row.specialty_code or (person.specialty_code if person else "")
    return C.AccessLogEntry(
        name=f"{row.dossier}/accessLog/{row.entry_id}",
        sequence=row.sequence,
        principal=C.LoggedPrincipal(
            kind=row.principal_kind,
            subject=row.principal_subject,
            rpps=row.rpps,
            display_name=(person.display_name if person else row.rpps) if row.rpps else "",
            profession_code=row.profession_code,
            specialty_code=row.specialty_code,
            roles=[r for r in row.roles.split(",") if r],
            establishment_finess=row.establishment_finess,
            establishment_name=row.establishment_name,
            profession_display=profession_label(row.profession_code),
            specialty_display=specialty_label(specialty) if row.rpps else "",
        ),
        mode=row.mode,
        action=row.action,
        resource_kind=row.resource_kind,
        resource=row.resource,
        method=row.method,
        decision=row.decision,
        reason=row.reason,
        policy_version=row.policy_version,
        justification=row.justification,
        request_id=row.request_id,
        trace_id=row.trace_id,
        time=timestamp(row.time),
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
        emergency_access_rule=(
            f"{row.dossier}/accessRules/{row.emergency_access_rule}"
            if row.emergency_access_rule
            else ""
        ),
    )
