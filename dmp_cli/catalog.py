"""The processes of the platform, and the fixed port of each.

`dmp serve NAME` and `dmp migrate` resolve a service here, in the image as in a
checkout; the launcher (`dmp dev up`) starts them in this order. Ports are fixed
(base port + offset) rather than random so that clients, notes and scripts can keep
pointing at the same address across restarts. The gateway is apart: it is the edge,
so its ports are the public ones (card port, patient port) and come from the stack's
configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the platform as the launcher sees it."""

    name: str
    #: Port = base port + offset; None for the gateway, whose ports are configured.
    port_offset: int | None
    #: Parent package of the runnable module ("" for a top-level package such as `gateway`).
    package: str = "services"

    @property
    def module(self) -> str:
        """What `python -m` runs."""
        return f"{self.package}.{self.name}" if self.package else self.name

    @property
    def package_dir(self) -> Path:
        return ROOT.joinpath(*self.module.split("."))

    @property
    def env_prefix(self) -> str:
        return f"DMP_{self.name.upper()}"

    def exists(self) -> bool:
        """A process exists once `python -m <module>` can run it in this checkout."""
        return (self.package_dir / "__main__.py").is_file()

    def has_migrations(self) -> bool:
        return (self.package_dir / "migrations" / "env.py").is_file()

    def port(self, base_port: int) -> int:
        if self.port_offset is None:
            raise ValueError(f"{self.name} has no port derived from the base port")
        return base_port + self.port_offset


# Start order: a service comes after the ones it calls; shutdown goes in reverse.
CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec("notify", 3),
    ServiceSpec("consent", 2),
    ServiceSpec("identity", 0),
    ServiceSpec("records", 1),
    ServiceSpec("history_feed", 4),
)

#: The edge, started last (after every service is SERVING and the demo cards are registered).
GATEWAY = ServiceSpec("gateway", None, package="")


def available() -> list[ServiceSpec]:
    """The catalog's services that exist in this checkout, in start order."""
    return [spec for spec in CATALOG if spec.exists()]


def spec(name: str) -> ServiceSpec:
    for candidate in CATALOG:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in CATALOG)}")
