"""`dmp pki`: the development PKI (CA, gateway certificate, cards, CRL) under ./var/pki.

`dmp pki init` creates the CA standing in for the CPS authority, the gateway
server certificate, an empty CRL and one card per demo actor; `dmp pki card`
issues another card; `dmp pki revoke` adds a card to the CRL. Subject fields
are documented in `kit/pki.py` and the README ("Certificates").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.console import Console
from rich.table import Table

from dmp_dev import pki

app = typer.Typer(
    no_args_is_help=True, help="Development PKI (CPS CA, gateway and card certificates)."
)
console = Console()
DEFAULT_DIR = Path("var/pki")
DirOption = Annotated[Path, typer.Option("--dir", help="Where the PKI lives.")]


@app.command()
def init(directory: DirOption = DEFAULT_DIR) -> None:
    """Create the CA, the gateway certificate, the CRL and the demo cards (if missing)."""
    created = pki.ensure_dev_pki(directory)
    table = Table("card", "kind", "RPPS", "profession", "roles", "sha256")
    for stem in pki.DEMO_CARDS:
        cert = x509.load_pem_x509_certificate((directory / "cards" / f"{stem}.crt").read_bytes())
        f = pki.card_fields(cert)
        table.add_row(
            stem, f.kind, f.rpps, f.profession_code, ",".join(f.roles), pki.fingerprint(cert)[:16]
        )
    console.print(f"[green]{'created' if created else 'already present'}[/] {directory}")
    console.print(table)


@app.command()
def card(  # noqa: PLR0917 - typer maps parameters to options
    stem: Annotated[str, typer.Argument(help="File name stem of the card.")],
    name: Annotated[str, typer.Option(help="Holder's display name (CN).")],
    kind: Annotated[str, typer.Option(help="professional, staff or service.")] = "professional",
    rpps: Annotated[str, typer.Option(help="RPPS number (subject serialNumber).")] = "",
    profession: Annotated[str, typer.Option(help="Profession code (TRE_G15).")] = "",
    specialty: Annotated[str, typer.Option(help="Specialty code (TRE_R38).")] = "",
    role: Annotated[list[str] | None, typer.Option(help="Role (repeatable).")] = None,
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """Issue one card signed by the dev CA."""
    ca = pki.load_authority(directory)
    fields = pki.CardFields(kind, name, rpps, profession, specialty, tuple(role or ()))
    issued = pki.issue_card(ca, fields)
    cert_path, _ = pki.save_issued(issued, directory / "cards", stem)
    console.print(f"{cert_path} sha256={issued.sha256} serial={issued.serial}")


@app.command()
def revoke(
    stem: Annotated[str, typer.Argument(help="Card stem to revoke.")],
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """Add a card to the CRL (a running gateway reloads it within DMP_CRL_RELOAD_INTERVAL_S)."""
    ca = pki.load_authority(directory)
    crl_path = directory / pki.CRL
    serials = {e.serial_number for e in x509.load_pem_x509_crl(crl_path.read_bytes())}
    cert = x509.load_pem_x509_certificate((directory / "cards" / f"{stem}.crt").read_bytes())
    serials.add(cert.serial_number)
    # Written beside it, then renamed: a gateway polling the file never reads half a CRL.
    partial = crl_path.with_suffix(".crl.tmp")
    partial.write_bytes(pki.create_crl(ca, serials))
    partial.replace(crl_path)
    console.print(f"revoked {stem} ({len(serials)} in CRL)")
