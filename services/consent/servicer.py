"""ConsentService: Authorize, the patient's choices, emergency access, the access log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from kit import codes
from kit import ins as kit_ins
from kit.authz import method_authz
from kit.context import require_principal
from kit.db import utcnow
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
    status_code,
)
from kit.idempotency import Key, Ledger
from kit.logs import get_logger
from services.consent import accesslog, published
from services.consent.cache import SnapshotCache
from services.consent.decision import (
    BRIS_DE_GLACE,
    CENTRE_15,
    Decision,
    InvalidPrincipalError,
    Request,
    Resource,
    decide,
    validate_principal,
)
from services.consent.directory_client import DirectoryClient, ProfessionalNotFoundError
from services.consent.log_writer import LogAppender, LogWriter
from services.consent.matrix import Matrix
from services.consent.models import access_log, access_rules, processed_requests
from services.consent.state import EMPTY_RULES, RecordRules, RecordState

if TYPE_CHECKING:
    from services.consent.app import ConsentApp

log = get_logger(__name__)

C = consent_pb2
P = principal_pb2
A = authz_pb2
M = TypeVar("M", bound=Message)
T = TypeVar("T")

SERVICE = "/dmp.consent.v1.ConsentService/"
EMERGENCY_PREFERENCES_ID = "emergencyPreferences"
_PATIENT_DOSSIER_RE = re.compile(r"patients/([0-9A-Za-z]{15})/dossier")
_DOSSIER_RE = re.compile(r"^(dossiers/[A-Za-z0-9._~-]{1,64})(?:/.*)?$")
_RULE_RE = re.compile(r"^(dossiers/[A-Za-z0-9._~-]{1,64})/accessRules/([A-Za-z0-9-]{1,64})$")
_RPPS_RE = re.compile(r"^\d{11}$")
_JUSTIFICATION_MIN, _JUSTIFICATION_MAX = 10, 1000
_PATIENT_KINDS = (P.PRINCIPAL_KIND_PATIENT,)
# Consent requests hold no password or code: a plain hash is enough.
REQUESTS = Ledger(processed_requests)


def _ts(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def dossier_of(value: str, field: str) -> str:
    match = _DOSSIER_RE.match(value or "")
    if match is None:
        raise invalid_argument("INVALID_DOSSIER_NAME", "Expected `dossiers/{dossier}`.", field)
    return match.group(1)


def _rule_of(value: str) -> tuple[str, str]:
    match = _RULE_RE.match(value or "")
    if match is None:
        raise invalid_argument(
            "INVALID_RULE_NAME", "Expected `dossiers/{dossier}/accessRules/{rule}`.", "name"
        )
    return match.group(1), match.group(2)


def _check_rpps(value: str, field: str = "professional_rpps") -> str:
    if not _RPPS_RE.match(value or ""):
        raise invalid_argument("INVALID_RPPS", "An RPPS number has 11 digits.", field)
    return value


def service_decides(method: str) -> bool:
    """Whether `method`'s own handler decides and records the decision (authz option)."""
    option = method_authz(method)
    return option is not None and option.service_decides


def refusal(decision: Decision) -> ServiceError:
    """The RPC error of a denied decision (AIP-211: NOT_FOUND carries the folded reason)."""
    code = status_code(decision.status_code, grpc.StatusCode.PERMISSION_DENIED)
    return ServiceError(code, decision.public_reason, "Access refused.")


def _page_token(key: int, signature: str) -> str:
    raw = json.dumps({"k": key, "f": signature}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_page_token(token: str, signature: str) -> int | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = int(data["k"])
        same = data["f"] == signature
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_argument("INVALID_PAGE_TOKEN", "Malformed page token.", "page_token") from exc
    if not same:
        raise invalid_argument(
            "INVALID_PAGE_TOKEN", "The page token belongs to another query.", "page_token"
        )
    return key


def _signature(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _etag(row: Row[Any]) -> str:
    raw = f"{row.rule_id}:{row.state}:{row.update_time.isoformat()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _effective_state(row: Row[Any], now: datetime) -> int:
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
        state=cast(Any, _effective_state(row, now)),
        professional_rpps=row.professional_rpps,
        professional_display_name=row.display_name,
        professional_profession_code=row.profession_code,
        creator=row.creator,
        create_time=_ts(row.create_time),
        update_time=_ts(row.update_time),
        expire_time=_ts(row.expire_time),
        revoke_time=_ts(row.revoke_time),
        revoker=row.revoker,
        etag=_etag(row),
    )
    if row.kind == C.ACCESS_RULE_KIND_GRANT:
        rule.grant.ParseFromString(row.details)
    elif row.kind == C.ACCESS_RULE_KIND_EMERGENCY_ACCESS:
        rule.emergency_access.ParseFromString(row.details)
    elif row.kind == C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES:
        rule.emergency_preferences.ParseFromString(row.details)
    return rule


def log_values(
    matrix: Matrix,
    principal: principal_pb2.Principal,
    req: Request,
    decision: Decision,
    now: datetime,
    *,
    resource: str,
    request_id: str = "",
    trace_id: str = "",
    justification: str = "",
) -> dict[str, Any]:
    """Stored columns of an access-log entry (the chain fields are added on append)."""
    return {
        "entry_id": uuid.uuid4().hex,
        "principal_kind": int(principal.kind),
        "principal_subject": principal.subject[:128],
        "rpps": principal.rpps[:16],
        "profession_code": principal.profession_code[:8],
        "specialty_code": principal.specialty_code[:16],
        "roles": ",".join(principal.roles)[:400],
        "mode": int(decision.mode),
        "action": int(req.action),
        "resource_kind": int(req.resource_kind),
        "resource": resource[:400],
        "method": req.method[:200],
        "decision": int(C.DECISION_ALLOWED if decision.allowed else C.DECISION_DENIED),
        "reason": decision.reason[:64],
        "policy_version": matrix.version[:64],
        "policy_hash": matrix.sha256,
        "justification": justification,
        "request_id": request_id[:64],
        "trace_id": trace_id[:64],
        "time": now,
    }


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    def __init__(self, app: ConsentApp) -> None:
        self.app = app
        self.matrix: Matrix = app.matrix
        self.cache: SnapshotCache = app.cache
        self.log_writer: LogWriter = app.log_writer
        self.sessions = app.db
        self.directory: DirectoryClient = app.directory

    # ------------------------------------------------------------------ helpers

    def _validate(self, principal: principal_pb2.Principal) -> None:
        try:
            validate_principal(self.matrix, principal)
        except InvalidPrincipalError as exc:
            raise invalid_argument(exc.reason, str(exc), "principal") from exc

    async def _snapshot(self, dossier: str, now: datetime) -> tuple[RecordState, RecordRules]:
        record = await self.cache.record(dossier)
        if record is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND, "NO_GRANT", "Access refused.")
        return record, await self.cache.rules(dossier, now)

    async def _permit(
        self,
        principal: principal_pb2.Principal,
        method: str,
        action: int,
        dossier: str,
        now: datetime,
        **extra: Any,
    ) -> tuple[RecordState, RecordRules, Decision]:
        """Decide whether the caller may run this consent method; raise when refused."""
        self._validate(principal)
        record, rules = await self._snapshot(dossier, now)
        kind = (
            A.RESOURCE_KIND_ACCESS_LOG
            if action == A.ACTION_READ_ACCESS_LOG
            else (A.RESOURCE_KIND_ACCESS_RULE)
        )
        req = Request(principal, action, kind, SERVICE + method, **extra)
        decision = decide(self.matrix, req, record, rules, now)
        if not decision.allowed:
            raise refusal(decision)
        return record, rules, decision

    async def _replay(
        self,
        principal: principal_pb2.Principal,
        method: str,
        key: Key,
        response_type: type[M],
    ) -> M | None:
        """The stored answer of a retried request, or None for a new one."""
        async with self.sessions() as session:
            return await REQUESTS.replay(
                session, key, scope=principal.subject, method=method, response_type=response_type
            )

    async def _remember(
        self,
        session: Any,
        *,
        principal: principal_pb2.Principal,
        method: str,
        key: Key,
        response: Message,
        now: datetime,
    ) -> None:
        await REQUESTS.remember(
            session, key, scope=principal.subject, method=method, response=response, now=now
        )

    async def _changed_by_patient(
        self,
        session: Any,
        *,
        dossier: str,
        rule: consent_pb2.AccessRule,
        principal: principal_pb2.Principal,
        method: str,
        key: Key,
        now: datetime,
    ) -> consent_pb2.AccessRule:
        """Announce a patient's rule change and remember the answer for retries, in one step."""
        await published.consent_changed(
            session, dossier, rule.name, principal.subject, by_patient=True, when=now
        )
        await self._remember(
            session, principal=principal, method=method, key=key, response=rule, now=now
        )
        return rule

    async def _with_log(
        self,
        dossier: str,
        work: Callable[[LogAppender], Awaitable[T]],
        *,
        invalidate: bool = True,
    ) -> T:
        """Run `work` in one transaction that may append to `dossier`'s log (retried on races)."""
        for attempt in range(5):
            try:
                async with self.log_writer.appending(dossier) as appender:
                    result = await work(appender)
            except IntegrityError:
                if attempt == 4:
                    raise
                continue
            if invalidate:
                self.cache.invalidate(dossier)
            if invalidate or appender.emitted:
                # Only when an event was queued: a relay poll competes for SQLite's write lock.
                self.app.wake_relay()
            return result
        raise AssertionError("unreachable")

    async def _rule_row(self, dossier: str, rule_id: str) -> Row[Any]:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(access_rules).where(
                        access_rules.c.dossier == dossier, access_rules.c.rule_id == rule_id
                    )
                )
            ).first()
        if row is None:
            raise not_found("RULE_NOT_FOUND", "No such access rule.")
        return row

    async def _dossier_named(self, value: str, field: str) -> str:
        """`dossiers/{dossier}`, or the record of `patients/{ins}/dossier`: a professional in
        front of the patient knows the INS. No such record is NOT_FOUND, as for a dossier id."""
        match = _PATIENT_DOSSIER_RE.fullmatch(value or "")
        if match is None:
            return dossier_of(value, field)
        record = await self.cache.record_by_ins(kit_ins.validate(match.group(1), field))
        if record is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND, "NO_GRANT", "Access refused.")
        return record.dossier

    async def _grantee(
        self, rpps: str, by_professional: bool, caller_profession: str
    ) -> tuple[str, str]:
        """The grantee's name and profession; a profession, specialty or role the platform
        excludes can never use a grant, so granting it is refused rather than listed."""
        try:
            info = await self.directory.lookup(rpps)
        except ProfessionalNotFoundError as exc:
            raise not_found("PROFESSIONAL_NOT_FOUND", "No professional with this RPPS.") from exc
        if info is None:  # directory not configured or unreachable: the card decides at use
            return "", caller_profession if by_professional else ""
        excluded_role = any(
            (row := self.matrix.roles.get(role)) is not None and row.excluded for role in info.roles
        )
        rights = self.matrix.profession_rights(info.profession_code, info.specialty_code)
        if excluded_role or (info.profession_code in self.matrix.professions and rights is None):
            raise failed_precondition(
                "GRANTEE_EXCLUDED",
                "This professional's profession or role never accesses a record.",
            )
        return info.display_name, info.profession_code

    async def _professional_info(self, rpps: str) -> tuple[str, str]:
        try:
            info = await self.directory.lookup(rpps)
        except ProfessionalNotFoundError as exc:
            raise not_found("PROFESSIONAL_NOT_FOUND", "No professional with this RPPS.") from exc
        return (info.display_name, info.profession_code) if info else ("", "")

    @staticmethod
    def _is_patient_side(decision: Decision) -> bool:
        return decision.reason in ("PATIENT_SELF", "LEGAL_REPRESENTATIVE")

    # ------------------------------------------------------------------ Authorize

    async def Authorize(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AuthorizeResponse:
        if not request.HasField("principal"):
            raise invalid_argument("MISSING_PRINCIPAL", "principal is required.", "principal")
        if request.action == A.ACTION_UNSPECIFIED:
            raise invalid_argument("MISSING_ACTION", "action is required.", "action")
        if len(request.request_id) > 64 or len(request.trace_id) > 64:
            raise invalid_argument("FIELD_TOO_LONG", "request_id or trace_id is too long.")
        principal = request.principal
        self._validate(principal)
        return await self.authorize(request)

    async def authorize(
        self, request: consent_pb2.AuthorizeRequest
    ) -> consent_pb2.AuthorizeResponse:
        """Authorize after transport checks (also used in-process by the benchmark)."""
        principal = request.principal
        now = utcnow()
        record: RecordState | None
        if request.dossier:
            record = await self.cache.record(dossier_of(request.dossier, "dossier"))
        elif request.patient_ins:
            record = await self.cache.record_by_ins(request.patient_ins)
        else:
            record = None
        rules = await self.cache.rules(record.dossier, now) if record else EMPTY_RULES
        res = request.resource
        req = Request(
            principal=principal,
            action=request.action,
            resource_kind=request.resource_kind,
            method=request.method,
            resource=Resource(
                name=res.name,
                class_code=res.document_class_code,
                type_code=res.document_type_code,
                confidentiality=frozenset(res.confidentiality_codes),
                author_rpps=res.author_rpps,
                author_subject=res.author_subject,
                absent=res.absent,
                deleted=res.deleted,
            ),
            patient_ins=request.patient_ins,
            names_record=bool(request.dossier or request.patient_ins),
        )
        decision = decide(self.matrix, req, record, rules, now)
        response = C.AuthorizeResponse(
            decision=C.DECISION_ALLOWED if decision.allowed else C.DECISION_DENIED,
            reason=decision.public_reason,
            status_code=decision.status_code,
            obligations=cast(Any, decision.obligations),
            policy_version=self.matrix.version,
            policy_hash=self.matrix.sha256,
        )
        if decision.allowed and decision.scope is not None:
            response.scope.CopyFrom(decision.scope)
            until = now + timedelta(seconds=self.app.consent_settings.decision_cache_ttl_s)
            if decision.cache_until is not None:
                until = min(until, decision.cache_until)
            response.cache_expire_time.FromDatetime(until)
        if record is None:
            return response
        response.dossier = record.dossier
        if decision.allowed and service_decides(request.method):
            # A pre-check: the method's own handler decides on the whole request and records
            # that decision, so the call is logged once and alerted once, as it happened. A
            # refusal here is final (the call stops at the edge): it is logged below.
            return response
        response.access_log_entry = await self.record_decision(
            record.dossier,
            principal,
            req,
            decision,
            now,
            resource=res.name or record.dossier,
            request_id=request.request_id,
            trace_id=request.trace_id,
        )
        return response

    async def record_decision(
        self,
        dossier: str,
        principal: principal_pb2.Principal,
        req: Request,
        decision: Decision,
        now: datetime,
        *,
        resource: str,
        request_id: str = "",
        trace_id: str = "",
        justification: str = "",
        extra: Callable[[LogAppender, str], Awaitable[None]] | None = None,
    ) -> str:
        """Append the decision to the log (+ first-access / emergency events); its entry name."""
        rpps = principal.rpps or principal.subject
        professional = principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL
        marked: list[bool] = []

        async def work(appender: LogAppender) -> str:
            marked.clear()
            if request_id:
                existing = (
                    await appender.session.execute(
                        select(access_log.c.entry_id).where(
                            access_log.c.dossier == dossier,
                            access_log.c.request_id == request_id,
                            access_log.c.principal_subject == principal.subject,
                        )
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    return f"{dossier}/accessLog/{existing}"
            values = log_values(
                self.matrix,
                principal,
                req,
                decision,
                now,
                resource=resource,
                request_id=request_id,
                trace_id=trace_id,
                justification=justification,
            )
            row = await appender.append(values)
            name = f"{dossier}/accessLog/{row['entry_id']}"
            if decision.allowed and professional:
                # The cache said "first": confirm against the table (another replica may
                # have recorded it), so the notification goes out once.
                first = await appender.first_access(rpps, now) if decision.first_access else False
                marked.append(first)
                if first or decision.emergency:
                    appender.emitted = True
                    await published.access_recorded(
                        appender.session,
                        dossier,
                        entry_name=name,
                        principal_kind=principal.kind,
                        subject=rpps,
                        mode=decision.mode,
                        first_access=first,
                        emergency=decision.emergency,
                        when=now,
                    )
            if extra is not None:
                await extra(appender, name)
            return name

        name = await self._with_log(dossier, work, invalidate=extra is not None)
        if marked:
            self.cache.mark_accessed(dossier, rpps)
        return name

    # ------------------------------------------------------------------ grants

    def _check_grant_caller(
        self,
        principal: principal_pb2.Principal,
        request: consent_pb2.GrantAccessRequest,
        rpps: str,
    ) -> None:
        """Bad-input checks of GrantAccess that depend on who calls (nothing is written)."""
        if principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL:
            self._validate(principal)
            if not request.HasField("care_context"):
                raise invalid_argument(
                    "CARE_CONTEXT_REQUIRED",
                    "A professional grants only with a care context.",
                    "care_context",
                )
            care = request.care_context
            if not care.consent_attested:
                raise invalid_argument(
                    "CONSENT_NOT_ATTESTED",
                    "The patient's consent must be attested.",
                    "care_context.consent_attested",
                )
            if care.practice_setting_code and not codes.is_valid(
                "practice_settings", care.practice_setting_code
            ):
                raise invalid_argument(
                    "PRACTICE_SETTING_UNKNOWN",
                    "Unknown practice setting code.",
                    "care_context.practice_setting_code",
                )
            if len(care.note) > 500 or len(care.institution_id) > 32:
                raise invalid_argument("FIELD_TOO_LONG", "care_context field too long.")
            if rpps != (principal.rpps or principal.subject):
                raise invalid_argument(
                    "GRANTEE_NOT_CALLER",
                    "A professional attests consent for themself only.",
                    "professional_rpps",
                )
        elif principal.kind in _PATIENT_KINDS:
            if request.HasField("care_context"):
                raise invalid_argument(
                    "CARE_CONTEXT_NOT_ALLOWED",
                    "Only a professional attests a care context.",
                    "care_context",
                )
        else:
            raise permission_denied("PRINCIPAL_KIND_NOT_ALLOWED", "This caller may not grant.")

    async def GrantAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.GrantAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        method = "GrantAccess"
        principal = require_principal()
        dossier = await self._dossier_named(request.parent, "parent")
        rpps = _check_rpps(request.professional_rpps)
        key = REQUESTS.key(request)
        now = utcnow()
        expire = (
            request.expire_time.ToDatetime(tzinfo=UTC) if request.HasField("expire_time") else None
        )
        if expire is not None and expire <= now:
            raise invalid_argument(
                "EXPIRE_TIME_IN_PAST", "expire_time is in the past.", "expire_time"
            )
        by_professional = principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL
        self._check_grant_caller(principal, request, rpps)
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        _, rules, decision = await self._permit(
            principal,
            method,
            A.ACTION_MANAGE_CONSENT,
            dossier,
            now,
            care_context=by_professional,
        )
        if rpps in rules.blocks:
            raise failed_precondition("PROFESSIONAL_BLOCKED", "This professional is blocked.")
        active = await self._active_rules(dossier, C.ACCESS_RULE_KIND_GRANT, rpps, now)
        if active:
            raise ServiceError(
                grpc.StatusCode.ALREADY_EXISTS,
                "GRANT_ALREADY_ACTIVE",
                "This professional already has access.",
                metadata={"access_rule": f"{dossier}/accessRules/{active[0].rule_id}"},
            )
        display, profession = await self._grantee(rpps, by_professional, principal.profession_code)
        details = C.GrantDetails(
            source=(
                C.GRANT_SOURCE_CARE_CONTEXT
                if by_professional
                else C.GRANT_SOURCE_LEGAL_REPRESENTATIVE
                if decision.reason == "LEGAL_REPRESENTATIVE"
                else C.GRANT_SOURCE_PATIENT
            )
        )
        if by_professional:
            details.care_context.CopyFrom(request.care_context)
            details.care_context.attest_time.FromDatetime(now)
        rule_id = uuid.uuid4().hex
        req = Request(
            principal,
            A.ACTION_MANAGE_CONSENT,
            A.RESOURCE_KIND_ACCESS_RULE,
            SERVICE + method,
            care_context=by_professional,
        )

        async def write(appender: LogAppender, entry: str) -> None:
            session = appender.session
            await session.execute(
                access_rules.insert().values(
                    rule_id=rule_id,
                    dossier=dossier,
                    kind=C.ACCESS_RULE_KIND_GRANT,
                    state=C.ACCESS_RULE_STATE_ACTIVE,
                    professional_rpps=rpps,
                    display_name=display,
                    profession_code=profession,
                    details=details.SerializeToString(deterministic=True),
                    creator=principal.subject,
                    create_time=now,
                    update_time=now,
                    expire_time=expire,
                    revoker="",
                )
            )
            await published.consent_changed(
                session,
                dossier,
                f"{dossier}/accessRules/{rule_id}",
                principal.subject,
                by_patient=not by_professional,
                when=now,
            )
            row = (
                await session.execute(
                    select(access_rules).where(
                        access_rules.c.dossier == dossier, access_rules.c.rule_id == rule_id
                    )
                )
            ).one()
            result.append(rule_proto(row, now))
            await self._remember(
                session,
                principal=principal,
                method=method,
                key=key,
                response=result[-1],
                now=now,
            )

        result: list[consent_pb2.AccessRule] = []
        # The grant is the decision the gateway only pre-checked: logged once here (a
        # professional's attestation also notifies a first access).
        await self.record_decision(
            dossier,
            principal,
            req,
            decision,
            now,
            resource=f"{dossier}/accessRules/{rule_id}",
            request_id=request.request_id,
            extra=write,
        )
        return result[-1]

    async def _active_rules(
        self, dossier: str, kind: int, rpps: str, now: datetime
    ) -> list[Row[Any]]:
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(access_rules).where(
                        access_rules.c.dossier == dossier,
                        access_rules.c.kind == kind,
                        access_rules.c.professional_rpps == rpps,
                        access_rules.c.state == C.ACCESS_RULE_STATE_ACTIVE,
                    )
                )
            ).all()
        return [r for r in rows if r.expire_time is None or r.expire_time > now]

    async def _end_rule(
        self,
        request: consent_pb2.RevokeAccessRequest | consent_pb2.UnblockProfessionalRequest,
        method: str,
        kinds: tuple[int, ...],
        wrong_kind_reason: str,
    ) -> consent_pb2.AccessRule:
        principal = require_principal()
        dossier, rule_id = _rule_of(request.name)
        key = REQUESTS.key(request)
        now = utcnow()
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        await self._permit(principal, method, A.ACTION_MANAGE_CONSENT, dossier, now)
        row = await self._rule_row(dossier, rule_id)
        if row.kind not in kinds:
            raise failed_precondition(wrong_kind_reason, "This rule has its own method.")
        if _effective_state(row, now) != C.ACCESS_RULE_STATE_ACTIVE:
            raise failed_precondition("RULE_NOT_ACTIVE", "This rule is no longer in force.")
        if request.etag and request.etag != _etag(row):
            raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The rule changed.")

        async def write(appender: LogAppender) -> consent_pb2.AccessRule:
            session = appender.session
            await session.execute(
                update(access_rules)
                .where(access_rules.c.id == row.id)
                .values(
                    state=C.ACCESS_RULE_STATE_REVOKED,
                    revoke_time=now,
                    revoker=principal.subject,
                    update_time=now,
                )
            )
            await published.consent_changed(
                session, dossier, request.name, principal.subject, by_patient=True, when=now
            )
            fresh = (
                await session.execute(select(access_rules).where(access_rules.c.id == row.id))
            ).one()
            out = rule_proto(fresh, now)
            await self._remember(
                session, principal=principal, method=method, key=key, response=out, now=now
            )
            return out

        return await self._with_log(dossier, write)

    async def RevokeAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.RevokeAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await self._end_rule(
            request,
            "RevokeAccess",
            (C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_EMERGENCY_ACCESS),
            "RULE_NOT_REVOCABLE",
        )

    async def UnblockProfessional(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.UnblockProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await self._end_rule(
            request, "UnblockProfessional", (C.ACCESS_RULE_KIND_BLOCK,), "NOT_A_BLOCK"
        )

    async def _new_rule(
        self,
        appender: LogAppender,
        principal: principal_pb2.Principal,
        dossier: str,
        *,
        kind: int,
        rpps: str,
        details: bytes,
        now: datetime,
        display: str = "",
        profession: str = "",
        expire: datetime | None = None,
        rule_id: str = "",
    ) -> consent_pb2.AccessRule:
        rule_id = rule_id or uuid.uuid4().hex
        session = appender.session
        await session.execute(
            access_rules.insert().values(
                rule_id=rule_id,
                dossier=dossier,
                kind=kind,
                state=C.ACCESS_RULE_STATE_ACTIVE,
                professional_rpps=rpps,
                display_name=display,
                profession_code=profession,
                details=details,
                creator=principal.subject,
                create_time=now,
                update_time=now,
                expire_time=expire,
                revoker="",
            )
        )
        row = (
            await session.execute(
                select(access_rules).where(
                    access_rules.c.dossier == dossier, access_rules.c.rule_id == rule_id
                )
            )
        ).one()
        return rule_proto(row, now)

    async def _revoke_where(
        self, appender: LogAppender, principal: principal_pb2.Principal, now: datetime, *conds: Any
    ) -> list[str]:
        session = appender.session
        rows = (
            await session.execute(
                select(access_rules.c.id, access_rules.c.rule_id).where(
                    access_rules.c.state == C.ACCESS_RULE_STATE_ACTIVE, *conds
                )
            )
        ).all()
        if rows:
            await session.execute(
                update(access_rules)
                .where(access_rules.c.id.in_([r.id for r in rows]))
                .values(
                    state=C.ACCESS_RULE_STATE_REVOKED,
                    revoke_time=now,
                    revoker=principal.subject,
                    update_time=now,
                )
            )
        return [r.rule_id for r in rows]

    async def BlockProfessional(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.BlockProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        method = "BlockProfessional"
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        rpps = _check_rpps(request.professional_rpps)
        key = REQUESTS.key(request)
        now = utcnow()
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        _, rules, _ = await self._permit(principal, method, A.ACTION_MANAGE_CONSENT, dossier, now)
        if rules.attending == rpps:
            raise failed_precondition(
                "CANNOT_BLOCK_ATTENDING_PHYSICIAN", "The médecin traitant cannot be blocked."
            )
        if rpps in rules.blocks:
            raise already_exists("ALREADY_BLOCKED", "This professional is already blocked.")
        display, profession = await self._professional_info(rpps)

        async def write(appender: LogAppender) -> consent_pb2.AccessRule:
            await self._revoke_where(
                appender,
                principal,
                now,
                access_rules.c.dossier == dossier,
                access_rules.c.professional_rpps == rpps,
                access_rules.c.kind.in_(
                    [C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_EMERGENCY_ACCESS]
                ),
            )
            out = await self._new_rule(
                appender,
                principal,
                dossier,
                kind=C.ACCESS_RULE_KIND_BLOCK,
                rpps=rpps,
                details=b"",
                now=now,
                display=display,
                profession=profession,
            )
            return await self._changed_by_patient(
                appender.session,
                dossier=dossier,
                rule=out,
                principal=principal,
                method=method,
                key=key,
                now=now,
            )

        return await self._with_log(dossier, write)

    async def SetAttendingPhysician(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.SetAttendingPhysicianRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        method = "SetAttendingPhysician"
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        rpps = _check_rpps(request.professional_rpps) if request.professional_rpps else ""
        key = REQUESTS.key(request)
        now = utcnow()
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        _, rules, _ = await self._permit(principal, method, A.ACTION_MANAGE_CONSENT, dossier, now)
        current = (
            await self._active_rules(
                dossier, C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN, rules.attending, now
            )
            if rules.attending
            else []
        )
        if not rpps:
            if not current:
                raise failed_precondition(
                    "RULE_NOT_ACTIVE", "There is no médecin traitant to clear."
                )
        elif rpps in rules.blocks:
            raise failed_precondition("PROFESSIONAL_BLOCKED", "Unblock this professional first.")
        elif current and rules.attending == rpps:
            return rule_proto(current[0], now)
        display = profession = ""
        if rpps:
            display, profession = await self._professional_info(rpps)
            if profession and profession != "10":
                raise invalid_argument(
                    "NOT_A_PHYSICIAN",
                    "The médecin traitant must be a physician.",
                    "professional_rpps",
                )

        async def write(appender: LogAppender) -> consent_pb2.AccessRule:
            session = appender.session
            revoked = await self._revoke_where(
                appender,
                principal,
                now,
                access_rules.c.dossier == dossier,
                access_rules.c.kind == C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN,
            )
            if rpps:
                out = await self._new_rule(
                    appender,
                    principal,
                    dossier,
                    kind=C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN,
                    rpps=rpps,
                    details=b"",
                    now=now,
                    display=display,
                    profession=profession or "10",
                )
            else:
                row = (
                    await session.execute(
                        select(access_rules).where(
                            access_rules.c.dossier == dossier,
                            access_rules.c.rule_id == revoked[0],
                        )
                    )
                ).one()
                out = rule_proto(row, now)
            return await self._changed_by_patient(
                session,
                dossier=dossier,
                rule=out,
                principal=principal,
                method=method,
                key=key,
                now=now,
            )

        return await self._with_log(dossier, write)

    async def SetEmergencyPreferences(  # noqa: N802 - gRPC method name
        self,
        request: consent_pb2.SetEmergencyPreferencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> consent_pb2.AccessRule:
        method = "SetEmergencyPreferences"
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        key = REQUESTS.key(request)
        if not request.HasField("preferences"):
            raise invalid_argument(
                "PREFERENCES_REQUIRED", "Both emergency choices are required.", "preferences"
            )
        now = utcnow()
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        await self._permit(principal, method, A.ACTION_MANAGE_CONSENT, dossier, now)
        details = request.preferences.SerializeToString(deterministic=True)

        async def write(appender: LogAppender) -> consent_pb2.AccessRule:
            session = appender.session
            existing = (
                await session.execute(
                    select(access_rules.c.id).where(
                        access_rules.c.dossier == dossier,
                        access_rules.c.rule_id == EMERGENCY_PREFERENCES_ID,
                    )
                )
            ).scalar_one_or_none()
            if existing is None:
                out = await self._new_rule(
                    appender,
                    principal,
                    dossier,
                    kind=C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES,
                    rpps="",
                    details=details,
                    now=now,
                    rule_id=EMERGENCY_PREFERENCES_ID,
                )
            else:
                await session.execute(
                    update(access_rules)
                    .where(access_rules.c.id == existing)
                    .values(details=details, update_time=now)
                )
                row = (
                    await session.execute(select(access_rules).where(access_rules.c.id == existing))
                ).one()
                out = rule_proto(row, now)
            return await self._changed_by_patient(
                session,
                dossier=dossier,
                rule=out,
                principal=principal,
                method=method,
                key=key,
                now=now,
            )

        return await self._with_log(dossier, write)

    # ------------------------------------------------------------------ emergency

    async def StartEmergencyAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.StartEmergencyAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        method = "StartEmergencyAccess"
        principal = require_principal()
        key = REQUESTS.key(request)
        if principal.kind != P.PRINCIPAL_KIND_PROFESSIONAL:
            raise permission_denied(
                "PRINCIPAL_KIND_NOT_ALLOWED", "Only a professional opens an emergency access."
            )
        self._validate(principal)
        if request.mode not in (BRIS_DE_GLACE, CENTRE_15):
            raise invalid_argument(
                "INVALID_MODE", "mode must be bris_de_glace or centre_15.", "mode"
            )
        if request.reason == C.EMERGENCY_REASON_UNSPECIFIED:
            raise invalid_argument("REASON_REQUIRED", "A coded reason is required.", "reason")
        if request.reason not in C.EmergencyReason.values():
            raise invalid_argument("REASON_UNKNOWN", "Unknown emergency reason.", "reason")
        justification = request.justification.strip()
        if len(justification) < _JUSTIFICATION_MIN:
            raise invalid_argument(
                "JUSTIFICATION_REQUIRED",
                f"A justification of at least {_JUSTIFICATION_MIN} characters is required.",
                "justification",
            )
        if len(justification) > _JUSTIFICATION_MAX:
            raise invalid_argument(
                "JUSTIFICATION_TOO_LONG", "The justification is too long.", "justification"
            )
        settings = self.app.consent_settings
        seconds = request.requested_duration_seconds or settings.emergency_default_s
        if seconds < 0:
            raise invalid_argument(
                "INVALID_DURATION", "The duration must be positive.", "requested_duration_seconds"
            )
        if seconds > settings.emergency_max_s:
            raise invalid_argument(
                "DURATION_TOO_LONG",
                "The duration exceeds the maximum.",
                "requested_duration_seconds",
            )
        dossier = await self._dossier_named(request.parent, "parent")
        now = utcnow()
        replay = await self._replay(principal, method, key, C.AccessRule)
        if replay is not None:
            return replay
        record, rules = await self._snapshot(dossier, now)
        req = Request(
            principal,
            A.ACTION_EMERGENCY_ACCESS,
            A.RESOURCE_KIND_ACCESS_RULE,
            SERVICE + method,
            emergency_mode=request.mode,
        )
        decision = decide(self.matrix, req, record, rules, now)
        rpps = principal.rpps or principal.subject
        if not decision.allowed:
            # A refused emergency attempt is a decision too: logged, then refused.
            await self.record_decision(
                dossier,
                principal,
                req,
                decision,
                now,
                resource=dossier,
                request_id=request.request_id,
                justification=justification,
            )
            if decision.reason == "PROFESSIONAL_BLOCKED":
                raise permission_denied("PROFESSIONAL_BLOCKED", "Access refused.")
            raise refusal(decision)
        expire = now + timedelta(seconds=seconds)
        details = C.EmergencyAccessDetails(
            mode=request.mode, reason=request.reason, justification=justification
        )
        result: list[consent_pb2.AccessRule] = []

        async def write(appender: LogAppender, entry: str) -> None:
            out = await self._new_rule(
                appender,
                principal,
                dossier,
                kind=C.ACCESS_RULE_KIND_EMERGENCY_ACCESS,
                rpps=rpps,
                details=details.SerializeToString(deterministic=True),
                now=now,
                profession=principal.profession_code,
                expire=expire,
            )
            await published.consent_changed(
                appender.session, dossier, out.name, principal.subject, by_patient=False, when=now
            )
            await self._remember(
                appender.session,
                principal=principal,
                method=method,
                key=key,
                response=out,
                now=now,
            )
            result.append(out)

        await self.record_decision(
            dossier,
            principal,
            req,
            decision,
            now,
            resource=dossier,
            request_id=request.request_id,
            justification=justification,
            extra=write,
        )
        return result[-1]

    # ------------------------------------------------------------------ reads

    async def ListAccessRules(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.ListAccessRulesRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ListAccessRulesResponse:
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        if request.page_size < 0:
            raise invalid_argument("INVALID_PAGE_SIZE", "page_size must be positive.", "page_size")
        size = min(request.page_size or 50, 200)
        kinds = sorted(set(request.kinds))
        signature = _signature(dossier, kinds, request.show_inactive)
        after = _read_page_token(request.page_token, signature)
        now = utcnow()
        await self._permit(principal, "ListAccessRules", A.ACTION_READ_ACCESS_RULES, dossier, now)
        query = select(access_rules).where(access_rules.c.dossier == dossier)
        if kinds:
            query = query.where(access_rules.c.kind.in_(kinds))
        if not request.show_inactive:
            query = query.where(access_rules.c.state == C.ACCESS_RULE_STATE_ACTIVE)
        if after is not None:
            query = query.where(access_rules.c.id < after)
        rows: list[Row[Any]] = []
        last_id: int | None = None
        more = False
        async with self.sessions() as session:
            # Expired rules are filtered in Python; keep reading until the page is full.
            while len(rows) < size:
                batch_query = query if last_id is None else query.where(access_rules.c.id < last_id)
                batch = (
                    await session.execute(
                        batch_query.order_by(access_rules.c.id.desc()).limit(size + 1)
                    )
                ).all()
                if not batch:
                    break
                for row in batch:
                    last_id = row.id
                    if request.show_inactive or _effective_state(row, now) == (
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
            response.next_page_token = _page_token(rows[-1].id, signature)
        return response

    async def _log_reader(
        self, principal: principal_pb2.Principal, dossier: str, method: str
    ) -> None:
        """The patient (or representative) reads and verifies the log; so does the platform."""
        if principal.kind == P.PRINCIPAL_KIND_INTERNAL:
            if await self.cache.record(dossier) is None:
                raise ServiceError(grpc.StatusCode.NOT_FOUND, "NO_GRANT", "Access refused.")
            return
        await self._permit(principal, method, A.ACTION_READ_ACCESS_LOG, dossier, utcnow())

    async def ListAccessHistory(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.ListAccessHistoryRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ListAccessHistoryResponse:
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        if request.page_size < 0:
            raise invalid_argument("INVALID_PAGE_SIZE", "page_size must be positive.", "page_size")
        size = min(request.page_size or 50, 500)
        start = end = None
        if request.HasField("time_range"):
            tr = request.time_range
            start = tr.start_time.ToDatetime(tzinfo=UTC) if tr.HasField("start_time") else None
            end = tr.end_time.ToDatetime(tzinfo=UTC) if tr.HasField("end_time") else None
            if start is not None and end is not None and start >= end:
                raise invalid_argument(
                    "INVALID_TIME_RANGE", "start_time must precede end_time.", "time_range"
                )
        if request.professional_rpps:
            _check_rpps(request.professional_rpps)
        modes = sorted(set(request.modes))
        signature = _signature(
            dossier, start, end, request.professional_rpps, modes, int(request.decision)
        )
        after = _read_page_token(request.page_token, signature)
        await self._log_reader(principal, dossier, "ListAccessHistory")
        query = select(access_log).where(access_log.c.dossier == dossier)
        if start is not None:
            query = query.where(access_log.c.time >= start)
        if end is not None:
            query = query.where(access_log.c.time < end)
        if request.professional_rpps:
            query = query.where(access_log.c.rpps == request.professional_rpps)
        if modes:
            query = query.where(access_log.c.mode.in_(modes))
        if request.decision:
            query = query.where(access_log.c.decision == int(request.decision))
        if after is not None:
            query = query.where(access_log.c.sequence < after)
        async with self.sessions() as session:
            rows = (
                await session.execute(query.order_by(access_log.c.sequence.desc()).limit(size + 1))
            ).all()
        more = len(rows) > size
        rows = rows[:size]
        rpps_set = sorted({r.rpps for r in rows if r.rpps})
        names = dict(
            zip(
                rpps_set,
                await asyncio.gather(*(self.directory.display_name(r) for r in rpps_set)),
                strict=True,
            )
        )
        response = C.ListAccessHistoryResponse(
            entries=[entry_proto(r, names.get(r.rpps, r.rpps)) for r in rows]
        )
        if more:
            response.next_page_token = _page_token(int(rows[-1].sequence), signature)
        return response

    async def VerifyAccessLog(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.VerifyAccessLogRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.VerifyAccessLogResponse:
        principal = require_principal()
        dossier = dossier_of(request.parent, "parent")
        if request.anchor_hash and (len(request.anchor_hash) != 64 or request.anchor_sequence <= 0):
            raise invalid_argument("INVALID_ANCHOR", "Malformed anchor.", "anchor_hash")
        await self._log_reader(principal, dossier, "VerifyAccessLog")
        report, anchor_row = await verify_chain(self.sessions, dossier, request.anchor_sequence)
        response = C.VerifyAccessLogResponse(
            ok=report.ok,
            verified_entry_count=report.verified,
            head_hash=report.head_hash,
            head_sequence=report.head_sequence,
            verify_time=_ts(utcnow()),
        )
        if not report.ok:
            response.first_broken_entry = f"{dossier}/accessLog/{report.broken_entry_id}"
            response.first_broken_sequence = report.broken_sequence
            response.chain_break = report.chain_break  # type: ignore[assignment]
        elif request.anchor_hash and (anchor_row is None or anchor_row[1] != request.anchor_hash):
            response.ok = False
            response.first_broken_sequence = request.anchor_sequence
            response.chain_break = (
                C.CHAIN_BREAK_SEQUENCE_GAP
                if anchor_row is None
                else C.CHAIN_BREAK_ENTRY_HASH_MISMATCH
            )
            if anchor_row is not None:
                response.first_broken_entry = f"{dossier}/accessLog/{anchor_row[0]}"
        return response


async def verify_chain(
    sessions: async_sessionmaker[AsyncSession],
    dossier: str,
    anchor_sequence: int = 0,
    batch: int = 2000,
) -> tuple[accesslog.ChainReport, tuple[str, str] | None]:
    """Recompute `dossier`'s chain in sequence order, batch by batch."""
    verifier = accesslog.ChainVerifier()
    anchor: tuple[str, str] | None = None
    last = 0
    async with sessions() as session:
        while True:
            rows = (
                await session.execute(
                    select(access_log)
                    .where(access_log.c.dossier == dossier, access_log.c.sequence > last)
                    .order_by(access_log.c.sequence)
                    .limit(batch)
                )
            ).all()
            if not rows:
                break
            mappings = [r._mapping for r in rows]
            for m in mappings:
                if anchor_sequence and int(m["sequence"]) == anchor_sequence:
                    anchor = (str(m["entry_id"]), str(m["entry_hash"]))
            if not verifier.feed(cast(Any, mappings)):
                break
            last = int(rows[-1].sequence)
    return verifier.report(), anchor


def entry_proto(row: Row[Any], display_name: str) -> consent_pb2.AccessLogEntry:
    return C.AccessLogEntry(
        name=f"{row.dossier}/accessLog/{row.entry_id}",
        sequence=row.sequence,
        principal=C.LoggedPrincipal(
            kind=row.principal_kind,
            subject=row.principal_subject,
            rpps=row.rpps,
            display_name=display_name if row.rpps else "",
            profession_code=row.profession_code,
            specialty_code=row.specialty_code,
            roles=[r for r in row.roles.split(",") if r],
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
        time=_ts(row.time),
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
    )
