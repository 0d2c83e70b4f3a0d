"""What a request names: the record (`dossiers/{dossier}`) or the patient (INS).

One reading of the `record_field` value for the gateway, which decides on it, and for every
service, which checks that the signed principal was decided for the record the request names
(`Principal.binding`): a principal captured on the platform's network is no key to another
patient's record.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from dmp.authz.v1 import principal_pb2
from kit import ins
from kit.errors import permission_denied


@dataclass(frozen=True)
class Named:
    """The record or patient a request names, and the full resource name."""

    dossier: str = ""
    patient_ins: str = ""
    resource: str = ""


def field_value(message: Message, path: tuple[str, ...]) -> str:
    """The value of a dotted field path (`health_profile.name`) as text."""
    value: object = message
    for part in path:
        value = getattr(value, part)
    return str(value)


def named(path: tuple[str, ...], text: str) -> Named:
    """Read the value of the request field `path` (the method's `record_field`).

    A malformed INS is bad input whoever asks: its syntax says nothing of a record.
    """
    if not text:
        return Named()
    if text.startswith("dossiers/"):
        return Named(dossier="/".join(text.split("/")[:2]), resource=text)
    if text.startswith("patients/"):
        return Named(patient_ins=ins.validate(text.split("/")[1], path[-1]), resource=text)
    if path and path[-1].endswith("ins"):
        return Named(patient_ins=text)
    return Named(resource=text)


def binding(dossier: str, target: Named) -> principal_pb2.Binding:
    """The binding of a principal decided about `dossier` for a request naming `target`."""
    return principal_pb2.Binding(dossier=dossier or target.dossier, patient_ins=target.patient_ins)


def check_binding(
    principal: principal_pb2.Principal | None, path: tuple[str, ...], request: Message
) -> None:
    """PERMISSION_DENIED when a bound principal is presented with a request about another
    record or patient than the one it was decided for."""
    if principal is None or not principal.HasField("binding") or not path:
        return
    target = named(path, field_value(request, path))
    bound = principal.binding
    if target.dossier and target.dossier != bound.dossier:
        raise permission_denied(
            "PRINCIPAL_WRONG_RECORD", "The principal was issued for another record."
        )
    if target.patient_ins and target.patient_ins != bound.patient_ins:
        raise permission_denied(
            "PRINCIPAL_WRONG_RECORD", "The principal was issued for another record."
        )
