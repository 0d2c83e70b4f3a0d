"""Settings of the records service (`DMP_*` variables, e.g. `DMP_RECORDS_KEK_ID`)."""

from __future__ import annotations

import base64
import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from kit.settings import ServiceSettings

# Development key-encryption key; production sets DMP_RECORDS_KEKS from a secret store.
DEV_KEK = base64.b64encode(b"dmp-dev-records-kek-32-bytes!!!!").decode()
# INS roots of the CI-SIS: INS-NIR, INS-NIA, INS-NIR of test and of demonstration identities.
CDA_INS_ROOTS = (
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
)


class RecordsSettings(ServiceSettings):
    """Content limits, key-encryption keys, terms of use, retention and release delays."""

    service_name: str = "records"

    max_document_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="Largest document content accepted."
    )
    # CDA header check (issue 15, services/records/cda.py and cda_upload.py).
    max_cda_bytes: int = Field(
        default=10 * 1024 * 1024,
        gt=0,
        description="Largest CDA document parsed for its header check (CDA_TOO_LARGE above).",
    )
    cda_ins_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        default=CDA_INS_ROOTS,
        description="Comma-separated OIDs of recordTarget ids read as the patient's INS "
        "(production may keep only 1.2.250.1.213.1.4.8 and .9).",
    )
    records_kek_id: str = Field(default="dev", description="Id of the KEK that wraps new keys.")
    records_keks: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=lambda: {"dev": SecretStr(DEV_KEK)},
        description='JSON {"kek id": "base64 32-byte key"}: all unwrap, the current one wraps.',
    )
    terms_version: str = Field(default="2024-01", description="Current terms of use version.")
    invisible_patient_release_days: float = Field(
        default=30.0,
        ge=0,
        description="INVISIBLE_PATIENT is lifted automatically this long after submission.",
    )
    retention_years: int = Field(
        default=10, ge=1, description="A closed record is purged this many years after closure."
    )

    @field_validator("cda_ins_roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(root.strip() for root in value.split(",") if root.strip())
        return value

    @field_validator("records_keks", mode="before")
    @classmethod
    def _parse_keks(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def kek_bytes(self) -> dict[str, bytes]:
        """Decoded KEKs; each must be exactly 32 bytes (AES-256)."""
        keys = {k: base64.b64decode(v.get_secret_value()) for k, v in self.records_keks.items()}
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"records KEK {key_id!r} must be 32 bytes")
        if self.records_kek_id not in keys:
            raise ValueError(f"records_kek_id {self.records_kek_id!r} is not in records_keks")
        return keys
