"""Statistical evaluation: methods (ours and baselines) × datasets × seeds, sweeps, tables."""
