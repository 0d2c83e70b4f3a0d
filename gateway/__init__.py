"""Edge gateway (authentication, authorization, routing); built in its own issue."""
