"""Every SQL statement of the notify service, one module per table family."""
