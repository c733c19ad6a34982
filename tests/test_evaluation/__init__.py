"""Tests of Apex-X (evaluation)."""
