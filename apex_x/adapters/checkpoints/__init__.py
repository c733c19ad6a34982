"""Checkpoint stores: secure torch store, safetensors."""
