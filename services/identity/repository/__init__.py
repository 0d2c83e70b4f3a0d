"""SQL of the identity service, one module per table family."""
