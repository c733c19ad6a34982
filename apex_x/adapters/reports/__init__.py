"""Report writers: JSON, Markdown, plots."""
