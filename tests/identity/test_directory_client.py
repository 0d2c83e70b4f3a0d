"""kit.directory against the real identity service: names, professions and specialties of the
directory for consent's access history and history_feed's care history; unknown ids stay ids;
a small cache with a time to live."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from kit.clock import ManualClock
from kit.directory import DirectoryClient, profession_label, specialty_label
from kit.server import RunningServer
from tests.identity.test_identity_directory import create, new_rpps


def _client(server: RunningServer, clock: ManualClock, target: str = "") -> DirectoryClient:
    settings = server.app.settings
    return DirectoryClient(
        "history_feed",
        target or server.target,
        settings.principal_key_id,
        settings.principal_key_bytes(),
        ttl_s=60,
        cache_clock=clock,
    )


async def test_names_and_specialties_from_the_directory(
    identity_server: RunningServer, stub
) -> None:  # type: ignore[no-untyped-def]
    nurse = await create(stub, given_name="Julie", family_name="Lambert", profession_code="60")
    doctor = await create(stub, given_name="Anne", family_name="Morel", specialty_code="SM53")
    client = _client(identity_server, ManualClock())
    try:
        unknown = new_rpps()
        people = await client.describe_many([nurse.rpps, doctor.rpps, unknown, ""])
        assert set(people) == {nurse.rpps, doctor.rpps}  # the unknown RPPS is left out
        assert people[nurse.rpps].display_name == "Julie Lambert"
        assert people[nurse.rpps].profession_label == "Infirmier"
        assert people[nurse.rpps].specialty_label == ""
        assert people[doctor.rpps].display_name == "Anne Morel"
        assert people[doctor.rpps].specialty_label == "Spécialiste en Médecine générale (SM)"
        assert await client.display_name(unknown) == unknown  # unknown ids stay ids
    finally:
        await client.close()


async def test_an_unknown_id_is_cached_for_a_short_while(
    identity_server: RunningServer, stub
) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    client = _client(identity_server, clock)
    try:
        # An RPPS unknown at first, registered afterwards: cached as unknown for 30 s only.
        later = new_rpps()
        assert await client.describe(later) is None
        await create(stub, rpps=later, given_name="Hugo", family_name="Garnier")
        assert await client.describe(later) is None  # still the cached answer
        clock.advance(timedelta(seconds=31))
        found = await client.describe(later)
        assert found is not None
        assert found.display_name == "Hugo Garnier"
    finally:
        await client.close()


async def test_an_unreachable_or_unconfigured_directory_leaves_the_ids(
    identity_server: RunningServer,
) -> None:
    clock = ManualClock()
    nowhere = _client(identity_server, clock, target="127.0.0.1:9")  # nothing listens
    unconfigured = DirectoryClient("consent", "", "dev", {"dev": b"k" * 32})
    try:
        rpps = new_rpps()
        assert await nowhere.describe(rpps) is None
        # After a failure the directory is not asked for a while: no second timeout.
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await nowhere.display_name(new_rpps()) != ""
        assert loop.time() - started < 0.5
        assert await nowhere.display_name(rpps) == rpps
        clock.advance(timedelta(seconds=6))  # the pause is over: asked (and failing) again
        assert await nowhere.describe(rpps) is None
        assert not unconfigured.configured
        assert await unconfigured.describe_many([rpps]) == {}
        assert await unconfigured.display_name(rpps) == rpps
    finally:
        await nowhere.close()
        await unconfigured.close()


def test_labels_fall_back_to_the_code() -> None:
    assert profession_label("21") == "Pharmacien"
    assert profession_label("") == ""
    assert profession_label("XX") == "XX"
    assert specialty_label("") == ""
    assert specialty_label("NOPE") == "NOPE"
