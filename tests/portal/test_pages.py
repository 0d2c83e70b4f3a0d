"""The portal's other pages in real headless Chromium: each one used once (upload, a
vaccination, advance directives, emergency oppositions, contact preferences, closing and
reactivating the record, also after a new login; the health profile's blood group, treatments
and emergency contacts), checked with axe-core at phone and desktop widths and photographed;
and the keyboard path into the content (skip link, focus on the page's heading)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.e2e.helpers import (
    S,
    eventually,
    new_record,
    patient_md,
    records,
    register_patient,
    until_refused,
    upload,
)
from tests.fixtures.records import make_ins
from tests.portal.browser import check_page, go, open_context, sign_in
from tests.records.helpers import create_request, identity

R = records_pb2


async def test_every_other_page_is_usable_and_accessible(
    stack: LiveStack, browser, screenshot_dir: Path
) -> None:
    dossier, ins = await new_record(stack, make_ins())
    email = f"pages.{uuid.uuid4().hex[:10]}@exemple.fr"
    await register_patient(stack, ins, email)
    watched = await open_context(browser)
    page = watched.page
    try:
        await sign_in(watched, stack.portal_url, stack.mail_dir, ins, email)
        own = records(stack.patient_channel())

        # Keyboard: on a fresh page the first Tab reaches the skip link, which moves the focus
        # to the content; a menu link moves it to the new page's heading.
        await page.reload()
        await page.get_by_role("heading", level=1, name="Mon espace santé").wait_for()
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Aller au contenu"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "contenu"
        await go(watched, "Ajouter un document", "Ajouter un document")
        assert await page.evaluate("document.activeElement.id") == "titre-page"

        # Upload a document of one's own.
        await page.get_by_label("Fichier").set_input_files(
            files=[{"name": "tension.txt", "mimeType": "text/plain", "buffer": b"12/8 le matin"}]
        )
        await page.get_by_label("Titre du document").fill("Mes relevés de tension")
        await page.get_by_role("button", name="Ajouter le document").click()
        await page.get_by_text("« Mes relevés de tension » a été ajouté").wait_for()
        await check_page(watched, "11-ajouter-un-document", screenshot_dir)
        listed = await own.ListDocuments(
            R.ListDocumentsRequest(parent=dossier), metadata=patient_md(stack, ins), timeout=10
        )
        assert [d.title for d in listed.documents] == ["Mes relevés de tension"]

        # The health profile beyond allergies: blood group, a treatment, a person to call
        # (a missing phone and e-mail is said next to the field and announced).
        await go(watched, "Mon profil médical", "Mon profil médical")
        await page.get_by_label("Groupe (ABO)").select_option("ABO_GROUP_O")
        await page.get_by_label("Rhésus").select_option("RHESUS_FACTOR_NEGATIVE")
        await page.get_by_role("button", name="Enregistrer le groupe sanguin").click()
        await page.get_by_text("Groupe enregistré : O rhésus négatif").wait_for()
        await page.get_by_label("Médicament (obligatoire)").fill("Ventoline")
        await page.get_by_label("Posologie").fill("2 bouffées si besoin")
        await page.get_by_role("button", name="Ajouter le traitement").click()
        await page.get_by_text("Ventoline — 2 bouffées si besoin").first.wait_for()
        await page.get_by_label("Nom (obligatoire)").fill("Paul Durand")
        await page.get_by_role("button", name="Ajouter la personne").click()
        alert = page.get_by_role("alert").filter(has_text="erreur")
        await alert.wait_for()
        phone = page.get_by_label("Téléphone", exact=True)
        assert await phone.get_attribute("aria-invalid") == "true"
        await page.get_by_text("Indiquez un téléphone ou un courriel.").wait_for()
        await phone.fill("06 12 34 56 78")
        await page.get_by_role("button", name="Ajouter la personne").click()
        await page.get_by_text("Paul Durand — +33612345678").first.wait_for()
        await check_page(watched, "09b-profil-complet", screenshot_dir)
        profile = await own.GetHealthProfile(
            R.GetHealthProfileRequest(name=f"{dossier}/healthProfile"),
            metadata=patient_md(stack, ins),
            timeout=10,
        )
        assert (profile.blood_group.abo, profile.blood_group.rhesus) == (
            R.ABO_GROUP_O,
            R.RHESUS_FACTOR_NEGATIVE,
        )
        assert [t.medication.display for t in profile.treatments] == ["Ventoline"]
        assert [(c.display_name, c.phone) for c in profile.emergency_contacts] == [
            ("Paul Durand", "+33612345678")
        ]

        await go(watched, "Mes vaccinations", "Mes vaccinations")
        await page.get_by_label("Vaccin (obligatoire)", exact=True).fill(
            "Vaccin grippe saisonnière"
        )
        await page.get_by_label("Date de la vaccination").fill("2026-10-15")
        await page.get_by_role("button", name="Ajouter", exact=True).click()
        await page.get_by_role("cell", name="Vaccin grippe saisonnière").wait_for()
        await check_page(watched, "12-vaccinations", screenshot_dir)

        await go(watched, "Directives anticipées", "Mes directives anticipées")
        await page.get_by_label("J'ai rédigé des directives anticipées").check()
        await page.get_by_label("Qui conserve le document original").fill("Ma fille")
        await page.get_by_role("button", name="Enregistrer").click()
        await page.get_by_text("Vos directives anticipées sont enregistrées.").wait_for()
        await check_page(watched, "13-directives-anticipees", screenshot_dir)

        await go(watched, "Remboursements de soins", "Mes remboursements de soins")
        await check_page(watched, "14-remboursements", screenshot_dir)

        await go(watched, "Accès en urgence", "Accès en cas d'urgence")
        await page.get_by_label("l'accès par le médecin régulateur du SAMU (centre 15)").check()
        await page.get_by_role("button", name="Enregistrer mes choix").click()
        await page.get_by_text("Vos choix sont enregistrés.").wait_for()
        await check_page(watched, "15-urgence", screenshot_dir)

        await go(watched, "Notifications", "Mes notifications")
        await page.get_by_role("button", name="Enregistrer").click()
        await page.get_by_text("Vos préférences sont enregistrées.").wait_for()
        await check_page(watched, "16-notifications", screenshot_dir)

        # A legal representative adds their child's record and switches between the two.
        child_ins = make_ins(year=16)
        born = (datetime.now(UTC).year - 9, 3, 14)
        reps = [
            R.LegalRepresentative(
                role=R.REPRESENTATIVE_ROLE_PARENT,
                family_name="DURAND",
                given_name="Sophie",
                ins=ins,
            )
        ]
        child, _ = await new_record(
            stack, child_ins, create_request(child_ins, identity=identity(born), reps=reps)
        )
        await upload(stack, "doctor", child, title="Certificat de vaccination de Marie")
        await go(watched, "Dossiers de mes enfants", "Dossiers de mes enfants")
        await page.get_by_label("Numéro de sécurité sociale de l'enfant").fill(child_ins)
        await page.get_by_role("button", name="Ajouter", exact=True).click()
        await page.get_by_text("Vous consultez le dossier d'un enfant").wait_for()
        switcher = page.get_by_label("Dossier affiché")
        assert await switcher.input_value() == child
        await go(watched, "Mes documents", "Mes documents")
        await page.get_by_role("heading", name="Certificat de vaccination de Marie").wait_for()
        await go(watched, "Dossiers de mes enfants", "Dossiers de mes enfants")
        await check_page(watched, "17-enfants", screenshot_dir)
        await switcher.select_option(label="Mon dossier")
        await go(watched, "Mes documents", "Mes documents")
        await page.get_by_role("heading", name="Mes relevés de tension").wait_for()
        assert await page.get_by_text("Certificat de vaccination de Marie").count() == 0

        # Close the record, then reactivate it.
        await go(watched, "Mon dossier", "Mon dossier")
        await check_page(watched, "18-mon-dossier", screenshot_dir)
        await page.get_by_label("Je comprends que plus aucun professionnel").check()
        await page.get_by_role("button", name="Fermer mon dossier").click()
        await page.get_by_text("Votre dossier est fermé.").wait_for()
        md = patient_md(stack, ins)

        def read():
            return own.GetDossier(R.GetDossierRequest(name=dossier), metadata=md, timeout=10)

        refused = await until_refused(read, S.FAILED_PRECONDITION)
        assert error_info(refused).reason == "DOSSIER_CLOSED"
        # Seen again once the platform refuses it: only the reactivation is offered.
        await page.get_by_role("button", name="Actualiser").click()
        await page.get_by_text("Ce dossier est fermé").wait_for()
        watched.expected_refusal(400)  # GetDossier: DOSSIER_CLOSED, which the page explains
        await check_page(watched, "19-dossier-ferme", screenshot_dir)
        # After logging out and in again, the closed record is still the patient's: the
        # session names it, so "Mon dossier" offers its reactivation.
        await page.get_by_role("button", name="Se déconnecter").click()
        await page.get_by_text("Vous êtes déconnecté").wait_for()
        await sign_in(watched, stack.portal_url, stack.mail_dir, ins, email)
        await go(watched, "Mon dossier", "Mon dossier")
        await page.get_by_text("Ce dossier est fermé").wait_for()
        watched.expected_refusal(400)  # the same GetDossier refusal, explained
        await page.get_by_role("button", name="Réactiver mon dossier").click()
        await page.get_by_text("Votre dossier est de nouveau ouvert.").wait_for()
        reopened = await eventually(read, retry_on=(S.FAILED_PRECONDITION,))
        assert reopened.state == R.DOSSIER_STATE_ACTIVE
        assert not watched.problems, watched.problems
    finally:
        await watched.context.close()
