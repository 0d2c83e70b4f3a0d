"""The patient's journey through the portal in real headless Chromium, on the launcher-started
platform: activate the account with the desk's code, log in with the code from the dev mail
sink, read the document a doctor uploaded with a card (its CDA made readable, its markup never
run), mask it, authorise a doctor found in the directory, see that doctor's access in the
access history (chain verified), add an allergy, log out, and be refused with the old cookies.

Every page is checked with axe-core (no serious or critical violation) at phone and desktop
widths and photographed there (`DMP_PORTAL_SCREENSHOTS`, default a temporary directory).
Each step is checked on the platform too, through gRPC, not only on the screen.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import (
    PASSWORD,
    WAIT_S,
    S,
    eventually,
    new_record,
    one_time_code,
    patient_md,
    records,
    rid,
    rpps,
)
from tests.fixtures.records import make_ins
from tests.portal.browser import check_page, go, open_context

R = records_pb2
DOCTOR = "doctor2"  # Dr Anne Morel, médecin
DOCTOR_NAME = "Anne Morel"
INJECTED = '<img src="x" onerror="window.__pwned = 1">'


def cda(ins: str, doctor_rpps: str) -> bytes:
    """A small CDA R2 consultation report whose narrative carries markup-looking text."""
    escaped = INJECTED.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.213.1.1.9" extension="{uuid.uuid4().hex}"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Compte rendu de consultation de cardiologie</title>
  <effectiveTime value="20261201103000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.10" extension="{ins}"/>
  </patientRole></recordTarget>
  <author><time value="20261201103000+0100"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="8{doctor_rpps}"/>
    <assignedPerson><name><prefix>Dr</prefix><given>Anne</given><family>Morel</family></name></assignedPerson>
  </assignedAuthor></author>
  <component><structuredBody>
    <component><section>
      <title>Motif de consultation</title>
      <text><paragraph>Essoufflement à l'effort depuis trois semaines.</paragraph></text>
    </section></component>
    <component><section>
      <title>Conclusion</title>
      <text><list><item>Tension artérielle normale.</item><item>{escaped}</item></list></text>
    </section></component>
  </structuredBody></component>
</ClinicalDocument>
""".encode()


async def doctor_uploads(stack: LiveStack, dossier: str, ins: str) -> R.Document:
    doctor = records(stack.card_channel(DOCTOR))
    document = R.Document(
        type_code="11488-4", format=R.DOCUMENT_FORMAT_CDA_XML, content=cda(ins, rpps(DOCTOR))
    )
    created: R.Document = await doctor.CreateDocument(
        R.CreateDocumentRequest(parent=dossier, document=document, request_id=rid()), timeout=15
    )
    return created


async def test_patient_journey_in_the_portal(
    stack: LiveStack, browser, screenshot_dir: Path
) -> None:
    ins = make_ins()
    email = f"portail.{uuid.uuid4().hex[:10]}@exemple.fr"
    dossier, _ = await new_record(stack, ins)
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk.IssueCreationCode(
        identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    uploaded = await doctor_uploads(stack, dossier, ins)

    watched = await open_context(browser)
    page = watched.page
    try:
        # Activation with the code of the letter.
        await page.goto(stack.portal_url)
        await page.get_by_role("heading", level=1, name="Se connecter").wait_for()
        await page.get_by_role("link", name="Activer mon DMP avec mon code d'activation").click()
        await page.get_by_role("heading", level=1, name="Activer mon DMP").wait_for()
        await page.get_by_label("Numéro de sécurité sociale").fill(ins)
        await page.get_by_label("Code d'activation").fill(issued.creation_code)
        await page.get_by_label("Mot de passe (obligatoire)", exact=True).fill(PASSWORD)
        await page.get_by_label("Confirmez le mot de passe").fill(PASSWORD)
        await page.get_by_label("Adresse électronique").fill(email)
        await check_page(watched, "01-activation", screenshot_dir)
        await page.get_by_role("button", name="Activer mon compte").click()
        await page.get_by_text("Votre compte est activé").wait_for()

        # Login: password, then the one-time code the dev mail sink received.
        await page.get_by_role("link", name="Me connecter").click()
        await page.get_by_role("heading", level=1, name="Se connecter").wait_for()
        await page.get_by_label("Numéro de sécurité sociale").fill(ins)
        await page.get_by_label("Mot de passe (obligatoire)", exact=True).fill(PASSWORD)
        await check_page(watched, "02-connexion", screenshot_dir)
        await page.get_by_role("button", name="Continuer").click()
        await page.get_by_role("heading", name="Saisissez votre code").wait_for()
        code = await one_time_code(stack.mail_dir, email)
        await page.get_by_label("Code reçu (6 chiffres)").fill(code)
        await check_page(watched, "03-code", screenshot_dir)
        await page.get_by_role("button", name="Me connecter").click()
        await page.get_by_role("heading", level=1, name="Mon espace santé").wait_for()
        await check_page(watched, "04-accueil", screenshot_dir)
        assert ins not in page.url
        assert "dossiers" not in page.url

        # The doctor's document, read: the CDA's narrative as text, its markup inert.
        await go(watched, "Mes documents", "Mes documents")
        title = "Compte rendu de consultation de cardiologie"
        card = page.locator("li.carte", has=page.get_by_role("heading", name=title))
        await card.wait_for()
        await check_page(watched, "05-documents", screenshot_dir)
        await card.get_by_role("button", name="Lire").click()
        await page.get_by_role("heading", level=2, name=title).wait_for()
        reading = page.locator("article.document-lu")
        await reading.get_by_role("heading", name="Conclusion").wait_for()
        assert "Essoufflement à l'effort" in await reading.inner_text()
        assert INJECTED in await reading.inner_text()
        assert await reading.locator("img").count() == 0
        assert await page.evaluate("window.__pwned") is None
        await check_page(watched, "06-document", screenshot_dir)
        await page.get_by_role("button", name="Retour à mes documents").click()

        # Mask it: the platform now carries the flag.
        await card.get_by_role("button", name="Masquer aux professionnels").click()
        await card.get_by_text("Masqué aux professionnels", exact=True).wait_for()
        own = records(stack.patient_channel())
        seen = await own.GetDocument(
            R.GetDocumentRequest(name=uploaded.name, view=R.DOCUMENT_VIEW_BASIC),
            metadata=patient_md(stack, ins),
            timeout=10,
        )
        assert R.CONFIDENTIALITY_FLAG_MASQUE_PS in seen.confidentiality_flags

        # Authorise the doctor, found in the directory.
        await go(watched, "Mes professionnels", "Mes professionnels de santé")
        await page.get_by_label("Nom ou numéro RPPS").fill("Morel")
        await page.get_by_role("button", name="Rechercher").click()
        result = page.locator("li.carte", has=page.get_by_role("heading", name=DOCTOR_NAME))
        await result.get_by_role("button", name="Autoriser").click()
        await page.get_by_text(f"{DOCTOR_NAME} peut maintenant consulter votre dossier").wait_for()
        await check_page(watched, "07-professionnels", screenshot_dir)

        # The doctor reads the record; the patient sees that access, chain verified.
        doctor = records(stack.card_channel(DOCTOR))
        await eventually(
            lambda: doctor.ListDocuments(R.ListDocumentsRequest(parent=dossier), timeout=10),
            retry_on=(S.PERMISSION_DENIED, S.NOT_FOUND),
        )
        await go(watched, "Historique des accès", "Historique des accès")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while DOCTOR_NAME not in await page.locator("main table").inner_text():
            assert loop.time() < deadline, "the doctor's access never reached the history"
            await page.get_by_role("button", name="Actualiser").click()
            await page.locator("main [aria-busy='true']").wait_for(state="detached")
        await page.get_by_text("Historique vérifié : rien n'a été modifié ni effacé.").wait_for()
        # The patient's own reading of the history, said once ("… l'historique des accès").
        history = page.locator("main table")
        await history.get_by_role(
            "cell", name="a consulté l'historique des accès", exact=True
        ).first.wait_for()
        assert "des accès l'historique" not in await history.inner_text()
        assert "les autorisations les autorisations" not in await history.inner_text()
        await check_page(watched, "08-historique-des-acces", screenshot_dir)

        # An allergy added in the health profile.
        await go(watched, "Mon profil médical", "Mon profil médical")
        await page.get_by_label("Allergie ou intolérance à").fill("Pénicilline")
        await page.get_by_label("Gravité").select_option("ALLERGY_SEVERITY_SEVERE")
        await page.get_by_label("Réaction observée").fill("Plaques rouges")
        await page.get_by_role("button", name="Ajouter l'allergie").click()
        await page.get_by_role("heading", level=3, name="Pénicilline").wait_for()
        await check_page(watched, "09-profil-medical", screenshot_dir)
        profile = await own.GetHealthProfile(
            R.GetHealthProfileRequest(name=f"{dossier}/healthProfile"),
            metadata=patient_md(stack, ins),
            timeout=10,
        )
        assert [(a.substance.display, a.severity) for a in profile.allergies] == [
            ("Pénicilline", R.ALLERGY_SEVERITY_SEVERE)
        ]

        # Logout, then the old cookies are refused at the edge.
        old_cookies = await watched.context.cookies()
        assert any(c["httpOnly"] and c["secure"] for c in old_cookies)
        await page.get_by_role("button", name="Se déconnecter").click()
        await page.get_by_text("Vous êtes déconnecté").wait_for()
        await check_page(watched, "10-deconnexion", screenshot_dir)
        assert not watched.problems, watched.problems
    finally:
        await watched.context.close()

    thief = await open_context(browser)
    try:
        await thief.context.add_cookies(old_cookies)
        refused = await thief.context.request.get(f"{stack.http_url}/v1/session")
        assert refused.status == 401
        listing = await thief.context.request.get(f"{stack.http_url}/v1/{dossier}/documents")
        assert listing.status == 401
        await thief.page.goto(stack.portal_url)
        await thief.page.get_by_role("heading", level=1, name="Se connecter").wait_for()
    finally:
        await thief.context.close()
