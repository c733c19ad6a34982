"""Tests of the foundation: config, CLI, preflight, logging, layers, CI script."""
