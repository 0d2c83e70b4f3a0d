"""Content checks of uploaded documents: format sniffing and text extraction.

The declared format must match the bytes (a "PDF" must start with `%PDF-`),
and CDA must be well-formed XML whose root is HL7 v3 `ClinicalDocument`.
XML is parsed with expat with DOCTYPE declarations refused, so no entity can
be declared or expanded (billion laughs, external entities).
"""

from __future__ import annotations

import re
from xml.parsers import expat

from dmp.records.v1 import records_pb2
from kit.errors import invalid_argument

HL7_ROOT = "urn:hl7-org:v3 ClinicalDocument"
MAX_INDEXED_CHARS = 200_000

F = records_pb2


class _RefusedError(Exception):
    pass


def _mismatch(fmt: int) -> Exception:
    label = F.DocumentFormat.Name(F.DocumentFormat.ValueType(fmt))
    return invalid_argument(
        "FORMAT_MISMATCH", f"The content is not a valid {label}.", "document.content"
    )


class _Walker:
    """Collects the readable text of a CDA, skipping embedded non-XML bodies."""

    def __init__(self) -> None:
        self.root = ""
        self.depth = 0
        self.skip = 0
        self.chunks: list[str] = []

    def start(self, name: str, _attrs: dict[str, str]) -> None:
        if self.depth == 0:
            self.root = name
        self.depth += 1
        if self.skip or name.endswith(" nonXMLBody"):
            self.skip += 1

    def end(self, _name: str) -> None:
        self.depth -= 1
        if self.skip:
            self.skip -= 1

    def data(self, text: str) -> None:
        if not self.skip:
            self.chunks.append(text)


def _refuse_doctype(
    _name: str, _system_id: str | None, _public_id: str | None, _internal: bool
) -> None:
    raise _RefusedError


def _refuse_entity(*_args: object) -> None:
    raise _RefusedError


def _refuse_external(
    _context: str, _base: str | None, _system_id: str | None, _public_id: str | None
) -> int:
    raise _RefusedError


def cda_text(content: bytes) -> str:
    """Text of a CDA document (human-readable parts), or FORMAT_MISMATCH."""
    parser = expat.ParserCreate(namespace_separator=" ")
    walker = _Walker()
    parser.StartElementHandler = walker.start
    parser.EndElementHandler = walker.end
    parser.CharacterDataHandler = walker.data
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    try:
        parser.Parse(content, True)
    except (expat.ExpatError, _RefusedError, ValueError) as exc:
        raise _mismatch(F.DOCUMENT_FORMAT_CDA_XML) from exc
    if walker.root != HL7_ROOT:
        raise _mismatch(F.DOCUMENT_FORMAT_CDA_XML)
    return re.sub(r"\s+", " ", "".join(walker.chunks)).strip()[:MAX_INDEXED_CHARS]


def check(fmt: int, content: bytes) -> str:
    """Check `content` against `fmt`; return its searchable text ("" for binaries)."""
    if fmt == F.DOCUMENT_FORMAT_PDF:
        if not content.startswith(b"%PDF-"):
            raise _mismatch(fmt)
        return ""
    if fmt == F.DOCUMENT_FORMAT_PNG:
        if not content.startswith(b"\x89PNG\r\n\x1a\n"):
            raise _mismatch(fmt)
        return ""
    if fmt == F.DOCUMENT_FORMAT_JPEG:
        if not content.startswith(b"\xff\xd8\xff"):
            raise _mismatch(fmt)
        return ""
    if fmt == F.DOCUMENT_FORMAT_CDA_XML:
        return cda_text(content)
    if fmt == F.DOCUMENT_FORMAT_TEXT_PLAIN:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _mismatch(fmt) from exc
        if "\x00" in text:
            raise _mismatch(fmt)
        return re.sub(r"\s+", " ", text).strip()[:MAX_INDEXED_CHARS]
    raise invalid_argument("FORMAT_REQUIRED", "The document format is required.", "document.format")
