"""The e-mail as built for the relay."""

from __future__ import annotations

from services.notify.email_sender import EmailSender
from services.notify.settings import NotifySettings
from services.notify.templates import EmailText


def test_message_headers_and_body() -> None:
    sender = EmailSender(NotifySettings(mail_from="no-reply@dmp.sante.fr", mail_from_name="DMP"))
    text = EmailText("Votre code de connexion au DMP", "Code : 123456\n")
    message = sender.build("jean@exemple.fr", text)
    assert message["To"] == "jean@exemple.fr"
    assert message["From"] == "DMP <no-reply@dmp.sante.fr>"
    assert message["Subject"] == "Votre code de connexion au DMP"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@dmp.sante.fr>")
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Code : 123456\n"
    assert "utf-8" in message["Content-Type"]
