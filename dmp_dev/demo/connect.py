"""How the demo reaches a running platform: the gateway's two ports and the dev sinks.

Professionals connect to the card port with a card of `<var>/pki/cards/`
(mTLS); the patient connects to the patient port with TLS only and a bearer
token. One-time codes and e-mails are read from the launcher's dev sinks
(`<var>/sms/outbox.ndjson`, `<var>/mail/*.eml`): in production they reach the
patient's phone and mailbox, never a file.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import grpc

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


class DemoError(RuntimeError):
    """The platform is not there, or a step did not end as expected."""


@dataclass
class Endpoints:
    var_dir: Path
    host: str = "localhost"
    card_port: int = 8443
    patient_port: int = 8444
    #: Longest wait for an asynchronous effect (an event, a notification, a sink file).
    wait_s: float = 30.0

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"

    @property
    def sms_file(self) -> Path:
        return self.var_dir / "sms" / "outbox.ndjson"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"


@dataclass
class Channels:
    """One channel per card and one for the patient, closed together."""

    endpoints: Endpoints
    _open: dict[str, grpc.Channel] = field(default_factory=dict)

    def _ca(self) -> bytes:
        path = self.endpoints.pki_dir / "ca.crt"
        if not path.is_file():
            raise DemoError(
                f"no CA certificate at {path}: is the platform running (`make run`), "
                "or is --var-dir pointing elsewhere?"
            )
        return path.read_bytes()

    def card(self, stem: str) -> grpc.Channel:
        if stem not in self._open:
            cards = self.endpoints.pki_dir / "cards"
            cert, key = cards / f"{stem}.crt", cards / f"{stem}.key"
            if not cert.is_file() or not key.is_file():
                raise DemoError(f"card {stem!r} not found in {cards}")
            creds = grpc.ssl_channel_credentials(
                self._ca(), private_key=key.read_bytes(), certificate_chain=cert.read_bytes()
            )
            target = f"{self.endpoints.host}:{self.endpoints.card_port}"
            self._open[stem] = grpc.secure_channel(target, creds)
        return self._open[stem]

    def patient(self) -> grpc.Channel:
        if "" not in self._open:
            creds = grpc.ssl_channel_credentials(self._ca())
            target = f"{self.endpoints.host}:{self.endpoints.patient_port}"
            self._open[""] = grpc.secure_channel(target, creds)
        return self._open[""]

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Fail early with a clear message when nothing listens on the patient port: at once
        when the port refuses the connection, else after `timeout_s` without an answer."""
        address = (self.endpoints.host, self.endpoints.patient_port)
        try:
            socket.create_connection(address, timeout=timeout_s).close()
            grpc.channel_ready_future(self.patient()).result(timeout=timeout_s)
        except (OSError, grpc.FutureTimeoutError) as exc:
            raise DemoError(
                f"the gateway does not answer on {self.endpoints.host}:"
                f"{self.endpoints.patient_port}: start the platform with `make run` "
                "(or pass --card-port/--patient-port)"
            ) from exc

    def close(self) -> None:
        for channel in self._open.values():
            channel.close()
        self._open.clear()


def read_sms_code(endpoints: Endpoints, phone: str, after_line: int) -> str:
    """The 6-digit code of the first SMS to `phone` written after line `after_line`."""
    deadline = time.monotonic() + endpoints.wait_s
    while time.monotonic() < deadline:
        for record in sms_records(endpoints)[after_line:]:
            if record.get("to") == phone:
                match = _CODE.search(str(record.get("text", "")))
                if match:
                    return match.group(1)
        time.sleep(0.2)
    raise DemoError(
        f"no one-time code for {phone} in {endpoints.sms_file} after {endpoints.wait_s}s"
    )


def sms_records(endpoints: Endpoints) -> list[dict[str, object]]:
    try:
        lines = endpoints.sms_file.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def mails_to(endpoints: Endpoints, address: str) -> list[EmailMessage]:
    """E-mails the dev sink received for `address`, oldest first."""
    found = []
    for path in sorted(endpoints.mail_dir.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if isinstance(message, EmailMessage) and address in str(message.get("To", "")):
            found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""
