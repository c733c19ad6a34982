"""CLI command handlers: parse arguments, wire the container, run a use case."""
