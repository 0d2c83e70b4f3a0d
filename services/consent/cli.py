"""`dmp policy`: read the profession matrix the way consent applies it.

`dmp policy explain` answers "may this principal read (or write) this document
class, and why?" by running consent's own decision function on a record where
the professional holds a grant, then showing the matrix rows that decided.
"""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.records.v1 import records_pb2
from kit import clock, codes
from services.consent import matrix as matrix_mod
from services.consent.decision import InvalidPrincipalError, Request, Resource, decide
from services.consent.matrix import Matrix
from services.consent.state import RecordRules, RecordState

app = typer.Typer(no_args_is_help=True, help="Inspect the access policy (profession matrix).")


class Verb(StrEnum):
    read = "read"
    write = "write"


@app.command()
def explain(  # noqa: PLR0917 - typer options
    document_class: str = typer.Option("", "--class", help="Document class code, e.g. 10."),
    document_type: str = typer.Option("", "--type", help="Document type code (class derived)."),
    profession: str = typer.Option("", help="Profession code (TRE_G15), e.g. 28."),
    specialty: str = typer.Option("", help="Specialty code (TRE_R38), e.g. SM25."),
    role: list[str] = typer.Option([], "--role", help="Role carried (repeatable)."),  # noqa: B008
    action: Verb = typer.Option(Verb.read, help="read or write."),  # noqa: B008
    policy: str = typer.Option("", help="Matrix file (default: the one shipped with consent)."),
) -> None:
    """Why a principal may or may not read / write a document class."""
    console = Console()
    try:
        m = matrix_mod.load(policy or None)
    except (matrix_mod.MatrixError, OSError) as exc:
        console.print(f"[red]invalid policy:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not document_class and not document_type:
        raise typer.BadParameter("give --class or --type")
    if document_type and not codes.is_valid("document_types", document_type):
        raise typer.BadParameter(f"unknown document type {document_type!r}")
    class_code = document_class or codes.document_class_of(document_type)
    if class_code and not codes.is_valid("document_classes", class_code):
        raise typer.BadParameter(f"unknown document class {class_code!r}")

    rpps = "00000000000"
    if profession:
        principal = principal_pb2.Principal(
            kind=principal_pb2.PRINCIPAL_KIND_PROFESSIONAL,
            subject=rpps,
            rpps=rpps,
            profession_code=profession,
            specialty_code=specialty,
            roles=role,
        )
    else:
        service = "alimentation_amo" in role
        principal = principal_pb2.Principal(
            kind=principal_pb2.PRINCIPAL_KIND_SERVICE
            if service
            else principal_pb2.PRINCIPAL_KIND_STAFF,
            subject="explain",
            roles=role,
        )
    record = RecordState("dossiers/explain", "0", records_pb2.DOSSIER_STATE_ACTIVE)
    rules = RecordRules(grants={rpps: None})
    verb = authz_pb2.ACTION_READ if action is Verb.read else authz_pb2.ACTION_WRITE
    request = Request(
        principal=principal,
        action=verb,
        resource_kind=authz_pb2.RESOURCE_KIND_DOCUMENT,
        method="/dmp.records.v1.RecordsService/GetDocument",
        resource=Resource(class_code=document_class, type_code=document_type),
    )
    try:
        decision = decide(m, request, record, rules, clock.now())
    except InvalidPrincipalError as exc:
        console.print(f"[red]{exc.reason}[/red]: {exc}")
        raise typer.Exit(2) from exc

    table = Table(title=f"policy {m.version} (sha256 {m.sha256[:12]}…)", show_lines=False)
    table.add_column("step")
    table.add_column("finding")
    class_label = codes.table("document_classes")[class_code].label if class_code else "?"
    table.add_row(
        "document",
        f"class {class_code} {class_label}" + (f", type {document_type}" if document_type else ""),
    )
    _role_rows(table, m, role)
    _profession_rows(table, m, profession, specialty)
    console.print(table)
    verdict = "[green]ALLOWED[/green]" if decision.allowed else "[red]REFUSED[/red]"
    notes = (
        "\nAssumes an active record and a grant; a block always refuses (rule 2), masked "
        "documents need the author or the médecin traitant (rule 6)."
        if profession
        else ""
    )
    console.print(
        Panel(f"{verdict} to {action.value} class {class_code}: {decision.reason}{notes}")
    )


def _role_rows(table: Table, m: Matrix, role: list[str]) -> None:
    for name in role:
        row = m.roles.get(name)
        if row is None:
            table.add_row(f"role {name}", "[red]unknown role: refused (rule 1)[/red]")
        elif row.excluded:
            table.add_row(f"role {name}", "[red]excluded: refused whatever else is held[/red]")
        else:
            bits = [k for k in ("administrative", "manage_record") if getattr(row, k)]
            if row.rights.write:
                bits.append(f"writes {sorted(row.rights.write)}")
            if row.emergency_mode:
                bits.append("emergency read (centre 15)")
            table.add_row(f"role {name}", ", ".join(bits) or "no rights of its own")


def _profession_rows(table: Table, m: Matrix, profession: str, specialty: str) -> None:
    if profession and profession in m.professions:
        prow = m.professions[profession]
        table.add_row("profession", f"{profession} {prow.label}")
        table.add_row("  reads", ", ".join(prow.rights.read_sorted) or "nothing")
        if prow.rights.read_types:
            table.add_row("  + types", ", ".join(prow.rights.read_types_sorted))
        table.add_row("  writes", ", ".join(prow.rights.write_sorted) or "nothing")
        if prow.rights.write_types:
            table.add_row("  + types", ", ".join(prow.rights.write_types_sorted))
        spec = prow.specialties.get(specialty) if specialty else None
        if spec is not None:
            table.add_row(
                f"specialty {specialty}",
                "[red]excluded[/red]" if spec.excluded else "replaces the profession's lists",
            )
        elif specialty:
            table.add_row(f"specialty {specialty}", "no override: the profession's row applies")
