"""The consent service, the policy decision point (docs/ARCHITECTURE.md, Services)."""
