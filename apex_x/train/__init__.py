"""Public training helpers importable by users (apex_x.train.checkpoint).

The package is also callable: `apex_x.train(config, ...)` runs the train use case (`apex_x.api.train`).
"""
