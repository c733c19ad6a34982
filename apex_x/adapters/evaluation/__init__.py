"""Evaluators: pycocotools COCOeval."""
