"""Care history lines as people read them: names instead of ids, vaccine lines linked to the book.

GetCareHistory fills the output-only fields of the lines of the page it answers, never of
what it stores:
- `prescriber_display` / `performer_display`: an RPPS the directory knows (kit.directory,
  identity's `GetProfessional`, cached) shows the professional's name, profession and
  specialty; a hospital stay's FINESS shows the institution's name the AMO sent, which is
  also the performer's establishment. Any other identifier (ADELI, AM number, an RPPS the
  directory does not know, a directory that cannot be reached) stays the identifier.
- `vaccination`: a vaccine line names the entry of the record's vaccination book that
  records the same vaccination. The book is records' data: history_feed asks records'
  internal `ResolveVaccinations` (vaccine codes = the line's CIP13 and ATC code, date = the
  care date; the record is the patient) and gets names only. Asked at read time, so an entry
  recorded before or after the insurer's line links either way, and history_feed keeps no
  copy of the book. When records cannot be asked, the lines come without links.
Reading the history never fails because of either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import grpc

from dmp.history.v1 import history_pb2
from dmp.records.v1 import records_pb2, records_pb2_grpc
from kit.clients import InternalCredentials, channel
from kit.directory import DirectoryClient, ProfessionalInfo
from kit.logs import get_logger

log = get_logger(__name__)
H = history_pb2
_RESOLVE = "/dmp.records.v1.RecordsService/ResolveVaccinations"
MAX_PROBES = 200  # records' bound per call


def page_lines(response: H.GetCareHistoryResponse) -> Iterator[H.ClaimLine]:
    for entry in response.entries:
        if entry.HasField("line"):
            yield entry.line
        else:
            yield from entry.drug_group.lines


class VaccinationBook:
    """records' `ResolveVaccinations`, as history_feed's internal principal."""

    def __init__(self, target: str, key_id: str, keys: Mapping[str, bytes]) -> None:
        self._target = target
        self._channel: grpc.aio.Channel | None = None
        self._credentials = InternalCredentials("history_feed", key_id, keys) if target else None

    @property
    def configured(self) -> bool:
        return self._credentials is not None

    async def resolve(
        self, dossier: str, probes: list[records_pb2.VaccinationProbe]
    ) -> list[str] | None:
        """One name (or "") per probe; None when records is not configured or cannot answer."""
        if self._credentials is None or not probes:
            return None
        if self._channel is None:  # made in the serving loop (see kit.directory)
            self._channel = channel(self._target)
        stub = records_pb2_grpc.RecordsServiceStub(self._channel)
        try:
            answer = await stub.ResolveVaccinations(
                records_pb2.ResolveVaccinationsRequest(parent=dossier, probes=probes),
                metadata=self._credentials.metadata(_RESOLVE),
                timeout=2.0,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("vaccination_book_unavailable", code=exc.code().name)
            return None
        if len(answer.vaccinations) != len(probes):
            return None
        return list(answer.vaccinations)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _person(actor: H.ActorId, people: Mapping[str, ProfessionalInfo]) -> H.ActorDisplay:
    info = people.get(actor.id) if actor.system == H.ACTOR_ID_SYSTEM_RPPS else None
    if info is None:
        return H.ActorDisplay(display_name=actor.id)
    return H.ActorDisplay(
        display_name=info.display_name,
        profession_display=info.profession_label,
        specialty_display=info.specialty_label,
    )


def _display(
    line: H.ClaimLine, actor: H.ActorId, people: Mapping[str, ProfessionalInfo]
) -> H.ActorDisplay:
    shown = _person(actor, people)
    stay = line.hospital_stay if line.WhichOneof("details") == "hospital_stay" else None
    if stay is not None and stay.institution_name:
        if actor.system == H.ACTOR_ID_SYSTEM_FINESS and actor.id == stay.institution_finess:
            shown.display_name = stay.institution_name
        shown.establishment_display = stay.institution_name
    return shown


async def _link_vaccines(book: VaccinationBook, dossier: str, lines: list[H.ClaimLine]) -> None:
    vaccine_lines = [line for line in lines if line.WhichOneof("details") == "vaccine"]
    if not vaccine_lines or not book.configured:
        return
    keys: dict[tuple[tuple[str, ...], tuple[int, int, int]], int] = {}
    probes: list[records_pb2.VaccinationProbe] = []
    for line in vaccine_lines:
        codes = tuple(c for c in (line.vaccine.cip13, line.vaccine.atc_code) if c)
        day = (line.care_date.year, line.care_date.month, line.care_date.day)
        if (codes, day) not in keys and len(probes) < MAX_PROBES:
            keys[codes, day] = len(probes)
            probes.append(
                records_pb2.VaccinationProbe(
                    vaccine_codes=codes,
                    administration_date=records_pb2.Date(year=day[0], month=day[1], day=day[2]),
                )
            )
    names = await book.resolve(dossier, probes)
    if names is None:
        return
    for line in vaccine_lines:
        codes = tuple(c for c in (line.vaccine.cip13, line.vaccine.atc_code) if c)
        day = (line.care_date.year, line.care_date.month, line.care_date.day)
        index = keys.get((codes, day))
        if index is not None and names[index]:
            line.vaccination = names[index]


async def decorate(
    response: H.GetCareHistoryResponse,
    dossier: str,
    directory: DirectoryClient,
    book: VaccinationBook,
) -> None:
    """Fill the display fields and vaccination links of the page's lines (see module doc)."""
    lines = list(page_lines(response))
    if not lines:
        return
    people = await directory.describe_many(
        actor.id
        for line in lines
        for actor in (line.prescriber, line.performer)
        if actor.system == H.ACTOR_ID_SYSTEM_RPPS
    )
    for line in lines:
        if line.HasField("prescriber"):
            line.prescriber_display.CopyFrom(_display(line, line.prescriber, people))
        if line.HasField("performer"):
            line.performer_display.CopyFrom(_display(line, line.performer, people))
    await _link_vaccines(book, dossier, lines)
