"""DMP services: one package each, each with its own schema and migrations."""
