"""Dataset formats (`data.format`), one file each, registered in domain/registry.py's DATASET_FORMATS.

A format checks the config's data keys (preflight), says how to fix missing data, and opens its splits as a
DatasetSource. A new format (e.g. yolo) is one file here plus its line in DATASET_FORMATS.
"""
