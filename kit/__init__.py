"""Shared runtime of every DMP service: one copy of what they all need."""
