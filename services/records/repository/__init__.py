"""Every SQL statement of the records service, one module per table family.

Domain modules never build or run a query: they call these functions and get
typed rows (`rows.py`) back, so mypy checks what they read. The full-text
index, whose tables differ per backend, is `fulltext.py`.
"""
