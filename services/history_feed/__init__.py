"""The history_feed service: the AMO's care history (docs/ARCHITECTURE.md, Services)."""
