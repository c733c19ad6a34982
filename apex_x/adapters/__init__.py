"""Adapters: technology implementations of the domain ports."""
