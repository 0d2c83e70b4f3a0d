"""The records service (ARCHITECTURE §2): the record's lifecycle, documents
(encrypted at rest, scoped), health profile, vaccinations and search."""
