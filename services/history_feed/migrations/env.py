from kit.migrations import run_env
from services.history_feed.models import metadata

run_env(metadata)
