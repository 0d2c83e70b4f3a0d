"""The consent service (see ARCHITECTURE.md §2); built in its own issue."""
