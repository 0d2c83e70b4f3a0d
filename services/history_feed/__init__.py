"""The history_feed service (see ARCHITECTURE.md §2); built in its own issue."""
