"""Public training helpers importable by users (apex_x.train.checkpoint)."""
