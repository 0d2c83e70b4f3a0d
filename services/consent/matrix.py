"""The profession matrix: loading, validation and lookups.

The matrix is data (`policy/matrix.yaml`), not code, so a policy change is a
reviewed diff of one file whose version and SHA-256 end up on every decision.
Validation is strict on purpose: a typo in a code would silently refuse (or
allow) a whole profession, so any unknown code, unknown key or missing
TRE_G15 row stops the service at start-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dmp.authz.v1 import authz_pb2, principal_pb2
from kit import codes

# Roles the platform's actors carry (docs/ARCHITECTURE.md, Actors); the matrix must define each.
REQUIRED_ROLES = (
    "administratif",
    "guichet_amo",
    "alimentation_amo",
    "regulateur",
    "medecin_du_travail",
    "medecin_conseil",
    "info_service",
)

_RESOURCE_KINDS = {
    "health_profile": authz_pb2.RESOURCE_KIND_HEALTH_PROFILE,
    "vaccination": authz_pb2.RESOURCE_KIND_VACCINATION,
    "care_history": authz_pb2.RESOURCE_KIND_CARE_HISTORY,
    "advance_directives": authz_pb2.RESOURCE_KIND_ADVANCE_DIRECTIVES,
}
_MODES = {
    "bris_de_glace": principal_pb2.ACCESS_MODE_BRIS_DE_GLACE,
    "centre_15": principal_pb2.ACCESS_MODE_CENTRE_15,
}
_DOCUMENT_KEYS = {"read", "read_types", "write", "write_types"}
# `record` (resources recorded under an access) is a professional's right only.
_RIGHT_KEYS = _DOCUMENT_KEYS | {"record"}


class MatrixError(ValueError):
    """The matrix file is invalid: the service must not start with it."""


@dataclass(frozen=True)
class Rights:
    """Readable and writable classes (plus single types) of one row."""

    read: frozenset[str] = frozenset()
    read_types: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    write_types: frozenset[str] = frozenset()
    # Sorted copies for scopes, computed once (decisions are on the hot path).
    read_sorted: tuple[str, ...] = field(default=(), compare=False)
    read_types_sorted: tuple[str, ...] = field(default=(), compare=False)
    write_sorted: tuple[str, ...] = field(default=(), compare=False)
    write_types_sorted: tuple[str, ...] = field(default=(), compare=False)
    #: Resource kinds (authz_pb2.ResourceKind) this row may record beyond its writable classes,
    #: only on a record it has an access to in normal mode (the matrix's `record` key: a nurse
    #: or a pharmacist records vaccinations without writing class 52 certificates).
    record: frozenset[int] = frozenset()

    @staticmethod
    def of(
        read: Iterable[str] = (),
        read_types: Iterable[str] = (),
        write: Iterable[str] = (),
        write_types: Iterable[str] = (),
        record: Iterable[int] = (),
    ) -> Rights:
        r, rt, w, wt = (frozenset(x) for x in (read, read_types, write, write_types))
        return Rights(
            r,
            rt,
            w,
            wt,
            tuple(sorted(r)),
            tuple(sorted(rt)),
            tuple(sorted(w)),
            tuple(sorted(wt)),
            frozenset(record),
        )

    def records(self, resource_kind: int) -> bool:
        """Whether the row's `record` key names this resource kind."""
        return resource_kind in self.record

    def can_read(self, class_code: str, type_code: str = "") -> bool:
        return class_code in self.read or (bool(type_code) and type_code in self.read_types)

    def can_write(self, class_code: str, type_code: str = "") -> bool:
        return class_code in self.write or (bool(type_code) and type_code in self.write_types)

    @property
    def reads_anything(self) -> bool:
        return bool(self.read or self.read_types)

    @property
    def writes_anything(self) -> bool:
        return bool(self.write or self.write_types)


NO_RIGHTS = Rights.of()


@dataclass(frozen=True)
class SpecialtyRow:
    code: str
    excluded: bool
    rights: Rights | None  # None: the profession's rights apply


@dataclass(frozen=True)
class ProfessionRow:
    code: str
    label: str
    rights: Rights
    specialties: Mapping[str, SpecialtyRow]


@dataclass(frozen=True)
class RoleRow:
    name: str
    excluded: bool = False
    administrative: bool = False
    manage_record: bool = False
    #: DMP Info Service: may reissue a patient's activation path (and nothing else).
    reissue_activation: bool = False
    rights: Rights = NO_RIGHTS
    emergency_mode: int = principal_pb2.ACCESS_MODE_UNSPECIFIED


@dataclass(frozen=True)
class Matrix:
    """A validated matrix; `sha256` is the hash of the exact file bytes."""

    version: str
    sha256: str
    professions: Mapping[str, ProfessionRow]
    roles: Mapping[str, RoleRow]
    patient: Rights
    resource_classes: Mapping[int, str]
    source: str = ""
    #: Professions (TRE_G15) that may write the advance directives under a grant.
    directive_writers: frozenset[str] = frozenset()

    def profession_rights(self, profession: str, specialty: str = "") -> Rights | None:
        """Rights of a profession (+ specialty); None when that specialty is excluded."""
        row = self.professions[profession]
        spec = row.specialties.get(specialty) if specialty else None
        if spec is None:
            return row.rights
        if spec.excluded:
            return None
        return spec.rights or row.rights

    def class_of(self, resource_kind: int, class_code: str) -> str:
        """Class governing a resource: the document's own, or the mapped one."""
        return class_code or self.resource_classes.get(resource_kind, "")


def _codes(value: Any, table: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MatrixError(f"{where}: expected a list of codes")
    out = []
    for item in value:
        code = str(item)
        if not codes.is_valid(table, code):
            raise MatrixError(f"{where}: unknown {table} code {code!r}")
        out.append(code)
    return out


def _resources(value: Any, where: str) -> list[int]:
    """The `record` key: resource names of `resource_classes` (e.g. `vaccination`)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MatrixError(f"{where}: expected a list of resource names")
    out: list[int] = []
    for item in value:
        if item not in _RESOURCE_KINDS:
            raise MatrixError(f"{where}: unknown resource {item!r}")
        out.append(_RESOURCE_KINDS[item])
    return out


def _rights(raw: Mapping[str, Any], where: str) -> Rights:
    return Rights.of(
        _codes(raw.get("read"), "document_classes", f"{where}.read"),
        _codes(raw.get("read_types"), "document_types", f"{where}.read_types"),
        _codes(raw.get("write"), "document_classes", f"{where}.write"),
        _codes(raw.get("write_types"), "document_types", f"{where}.write_types"),
        _resources(raw.get("record"), f"{where}.record"),
    )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MatrixError(f"{where}: expected a mapping")
    return value


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(map(str, raw)) - allowed
    if unknown:
        raise MatrixError(f"{where}: unknown keys {sorted(unknown)}")


def parse(data: bytes, source: str = "") -> Matrix:  # noqa: PLR0912, PLR0915 - flat checks
    """Validate matrix file bytes; raise MatrixError on any unknown code or gap."""
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise MatrixError(f"{source}: not valid YAML ({exc})") from exc
    doc = _mapping(raw, source or "matrix")
    _check_keys(
        doc,
        {"version", "resource_classes", "advance_directives", "patient", "professions", "roles"},
        "matrix",
    )
    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        raise MatrixError("matrix: `version` must be a non-empty string")

    resource_classes: dict[int, str] = {}
    for name, class_code in _mapping(doc.get("resource_classes", {}), "resource_classes").items():
        if name not in _RESOURCE_KINDS:
            raise MatrixError(f"resource_classes: unknown resource {name!r}")
        resource_classes[_RESOURCE_KINDS[name]] = _codes(
            [class_code], "document_classes", f"resource_classes.{name}"
        )[0]

    directives_raw = _mapping(doc.get("advance_directives", {}), "advance_directives")
    _check_keys(directives_raw, {"write_professions"}, "advance_directives")
    directive_writers = frozenset(
        _codes(
            directives_raw.get("write_professions"),
            "professions",
            "advance_directives.write_professions",
        )
    )

    patient_raw = _mapping(doc.get("patient"), "patient")
    _check_keys(patient_raw, _DOCUMENT_KEYS, "patient")
    patient = _rights(patient_raw, "patient")

    professions: dict[str, ProfessionRow] = {}
    for key, value in _mapping(doc.get("professions"), "professions").items():
        code = str(key)
        where = f"professions.{code}"
        if not codes.is_valid("professions", code):
            raise MatrixError(f"{where}: unknown profession code {code!r}")
        row = _mapping(value, where)
        _check_keys(row, _RIGHT_KEYS | {"specialties"}, where)
        if "read" not in row or "write" not in row:
            raise MatrixError(f"{where}: `read` and `write` must be explicit (use [] for none)")
        specialties: dict[str, SpecialtyRow] = {}
        for skey, svalue in _mapping(row.get("specialties", {}), f"{where}.specialties").items():
            scode = str(skey)
            swhere = f"{where}.specialties.{scode}"
            if not codes.is_valid("specialties", scode):
                raise MatrixError(f"{swhere}: unknown specialty code {scode!r}")
            srow = _mapping(svalue, swhere)
            _check_keys(srow, _RIGHT_KEYS | {"excluded"}, swhere)
            excluded = bool(srow.get("excluded", False))
            has_rights = bool(_RIGHT_KEYS & set(srow))
            specialties[scode] = SpecialtyRow(
                scode, excluded, _rights(srow, swhere) if has_rights and not excluded else None
            )
        professions[code] = ProfessionRow(
            code, codes.profession_label(code), _rights(row, where), specialties
        )
    missing = sorted(set(codes.table("professions")) - set(professions))
    if missing:
        raise MatrixError(f"professions: no explicit row for TRE_G15 codes {missing}")

    roles: dict[str, RoleRow] = {}
    role_keys = _DOCUMENT_KEYS | {
        "excluded",
        "administrative",
        "manage_record",
        "reissue_activation",
        "emergency_mode",
    }
    for key, value in _mapping(doc.get("roles"), "roles").items():
        name = str(key)
        where = f"roles.{name}"
        row = _mapping(value, where)
        _check_keys(row, role_keys, where)
        mode_name = row.get("emergency_mode")
        if mode_name is not None and mode_name not in _MODES:
            raise MatrixError(f"{where}: unknown emergency_mode {mode_name!r}")
        roles[name] = RoleRow(
            name=name,
            excluded=bool(row.get("excluded", False)),
            administrative=bool(row.get("administrative", False)),
            manage_record=bool(row.get("manage_record", False)),
            reissue_activation=bool(row.get("reissue_activation", False)),
            rights=_rights(row, where),
            emergency_mode=_MODES[mode_name] if mode_name else 0,
        )
    absent = [r for r in REQUIRED_ROLES if r not in roles]
    if absent:
        raise MatrixError(f"roles: missing required roles {absent}")
    return Matrix(
        version=version.strip(),
        sha256=hashlib.sha256(data).hexdigest(),
        professions=professions,
        roles=roles,
        patient=patient,
        resource_classes=resource_classes,
        source=source,
        directive_writers=directive_writers,
    )


def load(path: str | Path | None = None) -> Matrix:
    """Load the matrix at `path`, or the one shipped with the service."""
    if path:
        return parse(Path(path).read_bytes(), str(path))
    data = resources.files("services.consent.policy").joinpath("matrix.yaml").read_bytes()
    return parse(data, "services/consent/policy/matrix.yaml")


@cache
def default_matrix() -> Matrix:
    return load()
