"""Ray Train runners for search and retraining; the engine loops run unchanged inside workers."""
