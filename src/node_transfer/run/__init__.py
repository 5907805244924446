"""One run: cached features, the optimiser, training with resume and rebuild, `run_experiment` (a run directory from
a config), and predictions from a saved run."""
