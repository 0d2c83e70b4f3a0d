"""Clients of the HTTP/JSON door for tests: real HTTPS (the stack's dev CA), real logins."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from dmp.records.v1 import records_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from gateway.http import session as sessions
from tests.e2e.helpers import PASSWORD, mails_to, one_time_code, register_patient, rid
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request


def tls(stack: LiveStack) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=stack.ca_pem.decode())


@asynccontextmanager
async def http_client(
    stack: LiveStack, *, jar: bool = True
) -> AsyncIterator[aiohttp.ClientSession]:
    """A keep-alive HTTPS client with its own cookie jar (one browser); `jar=False`: none
    (the test sets `Cookie` headers itself, as an attacker replaying stolen cookies would)."""
    connector = aiohttp.TCPConnector(ssl=tls(stack))
    cookie_jar: aiohttp.abc.AbstractCookieJar = (
        aiohttp.CookieJar() if jar else aiohttp.DummyCookieJar()
    )
    async with aiohttp.ClientSession(
        base_url=stack.http_url, connector=connector, cookie_jar=cookie_jar
    ) as client:
        yield client


def cookies_of(client: aiohttp.ClientSession) -> dict[str, str]:
    return {c.key: c.value for c in client.cookie_jar}


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def reason(self) -> str:
        for detail in (self.body or {}).get("details", []):
            if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(detail.get("reason", ""))
        return ""


async def send(client: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Answer:
    async with client.request(method, path, **kwargs) as response:
        raw = await response.read()
        body = None
        if raw and response.content_type == "application/json":
            body = await response.json()
        return Answer(response.status, body, response.headers)


def csrf(client: aiohttp.ClientSession) -> str:
    """The CSRF cookie's value, as the page's script reads it."""
    for cookie in client.cookie_jar:
        if cookie.key == sessions.CSRF_COOKIE:
            return cookie.value
    return ""


def cookie(client: aiohttp.ClientSession, name: str) -> str:
    for found in client.cookie_jar:
        if found.key == name:
            return found.value
    return ""


@dataclass
class Patient:
    ins: str
    email: str
    dossier: str


async def new_patient(stack: LiveStack) -> Patient:
    """A patient with an account (desk creation code) and an ACTIVE record (desk)."""
    ins = make_ins()
    email = f"door.{uuid.uuid4().hex[:10]}@exemple.fr"
    await register_patient(stack, ins, email)
    desk = records_pb2_grpc.RecordsServiceStub(stack.card_channel("desk"))
    created = await desk.CreateDossier(create_request(ins), timeout=15)
    return Patient(ins, email, created.name)


async def login(stack: LiveStack, client: aiohttp.ClientSession, patient: Patient) -> Answer:
    """Password then the e-mailed code through the door; the session lands in cookies."""
    before = len(mails_to(stack.mail_dir, patient.email))
    started = await send(
        client,
        "POST",
        "/v1/accounts:startLogin",
        json={"identifier": patient.ins, "password": PASSWORD, "requestId": rid()},
    )
    assert started.status == 200, started
    code = await one_time_code(stack.mail_dir, patient.email, before)
    opened = await send(
        client,
        "POST",
        "/v1/session",
        json={"challenge": started.body["challenge"], "code": code, "requestId": rid()},
    )
    assert opened.status == 200, opened
    return opened


async def bearer_login(
    stack: LiveStack, client: aiohttp.ClientSession, patient: Patient
) -> dict[str, Any]:
    """The non-browser flow: tokens in the JSON answer of the challenge's `:verify`."""
    before = len(mails_to(stack.mail_dir, patient.email))
    started = await send(
        client,
        "POST",
        "/v1/accounts:startLogin",
        json={"identifier": patient.ins, "password": PASSWORD, "requestId": rid()},
    )
    assert started.status == 200, started
    code = await one_time_code(stack.mail_dir, patient.email, before)
    verified = await send(
        client,
        "POST",
        f"/v1/{started.body['challenge']}:verify",
        json={"code": code, "requestId": rid()},
    )
    assert verified.status == 200, verified
    tokens: dict[str, Any] = verified.body["tokens"]
    return tokens
