"""Developer tools run through make targets."""
