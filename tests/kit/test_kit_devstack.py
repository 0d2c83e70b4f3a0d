"""kit.devstack without processes: secrets are private, stable and accepted by the services'
own settings; each service gets its own database, port and the others' addresses."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest

from kit.devstack import catalog
from kit.devstack.secrets import load_or_create
from kit.devstack.stack import StackConfig, service_env
from kit.settings import ServiceSettings


def test_secrets_are_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "secrets")
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    files = sorted((tmp_path / "secrets").iterdir())
    assert files
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    contents = {f.name: f.read_bytes() for f in files}
    second = load_or_create(tmp_path / "secrets")
    assert second == first
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / "secrets").iterdir())} == contents


def test_every_process_gets_the_shared_principal_key(tmp_path: Path) -> None:
    secrets = load_or_create(tmp_path / "secrets")
    env = secrets.principal_env()
    settings = ServiceSettings(
        principal_keys=json.loads(env["DMP_PRINCIPAL_KEYS"]),
        principal_key_id=env["DMP_PRINCIPAL_KEY_ID"],
    )
    assert settings.principal_key_bytes() == {secrets.principal_key_id: secrets.principal_key}


@pytest.mark.parametrize("spec", catalog.available(), ids=lambda s: s.name)
def test_service_env(
    spec: catalog.ServiceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = StackConfig(var_dir=tmp_path, base_port=41000, nats_port=41100)
    secrets = load_or_create(tmp_path / "secrets")
    env = service_env(spec, cfg, secrets, catalog.available())
    assert env["DMP_SERVICE_NAME"] == spec.name
    assert env["DMP_GRPC_PORT"] == str(41000 + spec.port_offset)
    assert env["DMP_NATS_URL"] == "nats://127.0.0.1:41100"
    if spec.has_migrations():
        assert env["DMP_DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path / spec.name}.db"
    for other in catalog.available():
        key = f"DMP_{other.name.upper()}_TARGET"
        assert (key in env) == (other != spec)
    # The service's own settings class accepts what the launcher passes.
    if importlib.util.find_spec(f"services.{spec.name}.settings") is None:
        return
    module = importlib.import_module(f"services.{spec.name}.settings")
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, ServiceSettings) and c is not ServiceSettings
    ]
    for key, value in env.items():
        if key.startswith("DMP_"):
            monkeypatch.setenv(key, value)
    for settings_class in classes:
        settings = settings_class()
        settings.principal_key_bytes()
        for check in ("pepper_bytes", "kek_bytes"):
            if hasattr(settings, check):
                getattr(settings, check)()
