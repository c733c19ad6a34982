"""Experiment trackers (ExperimentTracker port): TensorBoard event files and MLflow runs."""
