"""The training engine: the loop, its curriculum, schedules, checkpointing, resume, validation,
diagnostics and reports. The `train` use case (`apex_x.application.train`) drives it; it talks to
ports only (never to adapters)."""
