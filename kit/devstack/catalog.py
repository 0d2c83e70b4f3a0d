"""The services `dmp dev up` knows how to run, and the fixed port of each.

Ports are fixed (base port + offset) rather than random so that clients,
notes and scripts can keep pointing at the same address across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the platform as the launcher sees it."""

    name: str
    port_offset: int

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def package_dir(self) -> Path:
        return ROOT / "services" / self.name

    @property
    def env_prefix(self) -> str:
        return f"DMP_{self.name.upper()}"

    def exists(self) -> bool:
        """A service exists once it can be run with `python -m services.<name>`."""
        return (self.package_dir / "__main__.py").is_file()

    def has_migrations(self) -> bool:
        return (self.package_dir / "migrations" / "env.py").is_file()

    def port(self, base_port: int) -> int:
        return base_port + self.port_offset


# Start order: a service comes after the ones it calls; shutdown goes in reverse.
CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec("notify", 3),
    ServiceSpec("consent", 2),
    ServiceSpec("identity", 0),
    ServiceSpec("records", 1),
    ServiceSpec("history_feed", 4),
)


def available() -> list[ServiceSpec]:
    """The catalog's services that exist in this checkout, in start order."""
    return [spec for spec in CATALOG if spec.exists()]


def spec(name: str) -> ServiceSpec:
    for candidate in CATALOG:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in CATALOG)}")
