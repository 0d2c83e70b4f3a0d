from kit.migrations import run_env
from services.records.models import metadata

run_env(metadata)
