from kit.migrations import run_env
from services.consent.models import metadata

run_env(metadata)
