"""Alembic environment of identity (version table `alembic_version_identity`)."""

from kit.migrations import run_env
from services.identity.models import metadata

run_env(metadata)
