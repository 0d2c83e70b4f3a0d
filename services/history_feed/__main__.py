"""`python -m services.history_feed`: run the history feed service."""

from __future__ import annotations

from kit.server import run_app
from services.history_feed.app import HistoryFeedApp
from services.history_feed.settings import HistoryFeedSettings


def main() -> None:
    run_app(HistoryFeedApp(HistoryFeedSettings()))


if __name__ == "__main__":
    main()
