"""Tests of Apex-X (models)."""
