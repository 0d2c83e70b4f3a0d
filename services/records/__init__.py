"""The records service (docs/ARCHITECTURE.md, Services): the record's lifecycle, documents
(encrypted at rest, scoped), health profile, vaccinations and search."""
