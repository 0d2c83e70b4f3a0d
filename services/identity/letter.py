"""The activation letter: credentials on paper, as a PDF the vendor's software prints.

What is on it is what the patient needs to activate their online access and
nothing else: the identifier (INS), the one-time activation code and until
when it works, where to go, how to oppose emergency access, and how to reach
DMP Info Service. No medical content, no professional's or patient's name
(the letter is handed over in person or posted to the address on file, and
identity does not hold names).

The font is DejaVu Sans, shipped in `fonts/` (Bitstream Vera licence, which
allows bundling it; see fonts/LICENSE-DejaVu.txt), embedded as a subset: the
letter renders the same wherever it is printed, and its text stays
extractable (screen readers, tests). Large type (12 pt body, the code at
18 pt in a monospace-like spacing) for readability.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF

FONT_DIR = Path(__file__).parent / "fonts"
PARIS = ZoneInfo("Europe/Paris")
FAMILY = "DejaVuSans"
MEDIA_TYPE = "application/pdf"
FILE_NAME = "dmp-lettre-activation.pdf"

#: Why a letter was printed (selects the opening paragraph).
CREATED = "created"
REISSUED = "reissued"

_OPENING = {
    CREATED: (
        "Votre Dossier Médical Partagé (DMP) vient d'être créé. Ce courrier vous permet "
        "d'activer votre accès en ligne pour le consulter et gérer qui peut y accéder."
    ),
    REISSUED: (
        "À votre demande auprès de DMP Info Service, voici un nouveau code pour réactiver "
        "votre accès en ligne à votre Dossier Médical Partagé (DMP). Votre ancien mot de "
        "passe ne fonctionnera plus après cette réactivation."
    ),
}


@dataclass(frozen=True)
class LetterFacts:
    """What the letter says; nothing else reaches the renderer."""

    ins: str
    code: str
    expires_at: datetime
    portal_url: str
    info_service_phone: str
    purpose: str = CREATED


_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def paris_date(moment: datetime) -> str:
    """ "14 janvier 2027": the calendar day in France."""
    local = moment.astimezone(PARIS)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"


def _spaced_ins(ins: str) -> str:
    """The INS as it reads on a carte Vitale: 1 23 45 67 890 123 45."""
    parts = (ins[0:1], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:15])
    return " ".join(p for p in parts if p)


def render(facts: LetterFacts) -> bytes:
    """The PDF bytes (A4, French)."""
    pdf = FPDF(format="A4")
    pdf.set_lang("fr-FR")
    pdf.set_title("Activation de votre accès en ligne au DMP")
    pdf.set_author("Dossier Médical Partagé")
    pdf.set_creator("DMP")
    pdf.add_font(FAMILY, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FAMILY, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    width = pdf.epw

    def heading(text: str) -> None:
        pdf.ln(4)
        pdf.set_font(FAMILY, "B", 13)
        pdf.multi_cell(width, 7, text, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.set_font(FAMILY, "", 12)

    def para(text: str) -> None:
        pdf.multi_cell(width, 6.5, text, new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.ln(1.5)

    pdf.set_font(FAMILY, "B", 17)
    pdf.multi_cell(
        width, 9, "Activez votre accès en ligne à votre DMP", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(3)
    pdf.set_font(FAMILY, "", 12)
    para("Madame, Monsieur,")
    para(_OPENING[facts.purpose])

    heading("Vos informations d'activation")
    para("Votre identifiant (matricule INS, en général votre numéro de sécurité sociale) :")
    pdf.set_font(FAMILY, "B", 15)
    pdf.multi_cell(width, 8, _spaced_ins(facts.ins), new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(FAMILY, "", 12)
    pdf.ln(2)
    para("Votre code d'activation, à usage unique :")
    pdf.set_font(FAMILY, "B", 18)
    pdf.multi_cell(width, 10, facts.code, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(FAMILY, "", 12)
    pdf.ln(2)
    para(f"Ce code est valable jusqu'au {paris_date(facts.expires_at)} inclus.")

    heading("Comment activer votre accès")
    para(f"1. Rendez-vous sur {facts.portal_url} et choisissez « Activer mon accès ».")
    para("2. Saisissez votre identifiant et votre code d'activation.")
    para(
        "3. Choisissez votre mot de passe et indiquez une adresse e-mail ou un numéro de "
        "téléphone mobile : vous y recevrez un code à chaque connexion."
    )

    heading("Vos droits")
    para(
        "Vous décidez qui peut consulter votre DMP. En cas d'urgence, un professionnel de "
        "santé ou le médecin régulateur du SAMU-Centre 15 peut y accéder sans votre "
        "autorisation. Vous pouvez vous opposer à ces accès en urgence à tout moment : "
        "dans votre espace DMP, rubrique « Gestion des accès », ou en appelant DMP Info "
        f"Service au {facts.info_service_phone}."
    )

    heading("Protégez ce courrier")
    para(
        "Ne communiquez ce code à personne : ni DMP Info Service ni aucun professionnel ne "
        "vous le demandera. Si vous avez perdu ce courrier ou si le code ne fonctionne plus, "
        f"appelez DMP Info Service au {facts.info_service_phone}."
    )
    pdf.ln(2)
    pdf.set_font(FAMILY, "", 10)
    para("Ce courrier ne contient aucune information médicale.")
    return bytes(pdf.output())
