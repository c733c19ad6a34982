"""Tests of Apex-X (usage)."""
