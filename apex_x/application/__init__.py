"""Use cases: train, evaluate, predict, preflight, dataset_preflight, and the training loop."""
