"""Domain layer: config schema, value types, ports and errors. No I/O."""
