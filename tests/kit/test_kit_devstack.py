"""dmp_dev.launcher without processes: secrets are private, stable and accepted by the services'
own settings; each service gets its own database, port and the others' addresses; the gateway
gets the dev PKI, identity's token key and every upstream."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest

from dmp_cli import catalog
from dmp_dev.launcher.nats_server import free_port
from dmp_dev.launcher.processes import StartupError
from dmp_dev.launcher.secrets import load_or_create
from dmp_dev.launcher.stack import DevStack, StackConfig, database_url, gateway_env, service_env
from gateway.settings import GatewaySettings
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


def test_gateway_env_is_accepted_by_gateway_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = StackConfig(
        var_dir=tmp_path,
        base_port=41000,
        nats_port=41100,
        gateway_port=41443,
        patient_port=41444,
        gateway_probe_port=41445,
        extra_env={"gateway": {"DMP_RATE_LIMIT_BURST": "7"}},
    )
    secrets = load_or_create(tmp_path / "secrets")
    env = gateway_env(cfg, secrets)
    assert "DMP_DATABASE_URL" not in env
    for key, value in env.items():
        if key.startswith("DMP_"):
            monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert (settings.grpc_port, settings.patient_port, settings.probe_port) == (41443, 41444, 41445)
    assert settings.tls_cert_file == str(tmp_path / "pki" / "gateway.crt")
    assert settings.tls_key_file == str(tmp_path / "pki" / "gateway.key")
    assert settings.client_ca_file == str(tmp_path / "pki" / "ca.crt")
    assert settings.client_crl_file == str(tmp_path / "pki" / "ca.crl")
    assert settings.token_public_key_file == str(secrets.token_public_key_file)
    assert settings.nats_url == "nats://127.0.0.1:41100"
    assert settings.rate_limit_burst == 7
    # Every gateway replica of the stack signs the JSON door's CSRF tokens with one key.
    assert settings.http_csrf_secret is not None
    assert gateway_env(cfg, secrets, 1)["DMP_HTTP_CSRF_SECRET"] == env["DMP_HTTP_CSRF_SECRET"]
    for spec in catalog.CATALOG:  # running or not: never the built-in default address
        assert getattr(settings, f"{spec.name}_target") == f"127.0.0.1:{41000 + spec.port_offset}"
    assert settings.principal_key_bytes() == {secrets.principal_key_id: secrets.principal_key}


def test_catalog_runs_services_and_the_gateway_as_modules() -> None:
    assert [s.module for s in catalog.CATALOG][:1] == ["services.notify"]
    assert catalog.GATEWAY.module == "gateway"
    assert catalog.GATEWAY.exists()
    assert not catalog.GATEWAY.has_migrations()
    with pytest.raises(ValueError, match="no port"):
        catalog.GATEWAY.port(50051)


def test_database_url_config_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = catalog.spec("records")
    assert database_url(spec, StackConfig(var_dir=tmp_path)).endswith(f"{tmp_path}/records.db")
    monkeypatch.setenv("DMP_DATABASE_URL_RECORDS", "sqlite+aiosqlite:///from-env.db")
    assert database_url(spec, StackConfig(var_dir=tmp_path)) == "sqlite+aiosqlite:///from-env.db"
    cfg = StackConfig(var_dir=tmp_path, database_urls={"records": "sqlite+aiosqlite:///cfg.db"})
    assert database_url(spec, cfg) == "sqlite+aiosqlite:///cfg.db"


def test_only_selects_the_gateway_and_port_clashes_are_refused(tmp_path: Path) -> None:
    assert DevStack(StackConfig(var_dir=tmp_path)).names[-1] == "gateway"
    assert DevStack(StackConfig(var_dir=tmp_path, only=("identity",))).names == ["identity"]
    both = DevStack(StackConfig(var_dir=tmp_path, only=("identity", "gateway")))
    assert both.names == ["identity", "gateway"]
    port = free_port()
    clash = DevStack(StackConfig(var_dir=tmp_path, gateway_port=port, smtp_port=port))
    with pytest.raises(StartupError, match="ports overlap"):
        clash.prepare()
    assert not (tmp_path / "secrets").exists()  # refused before anything was written
