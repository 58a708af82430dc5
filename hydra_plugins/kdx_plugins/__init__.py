"""kdx's Hydra plugins (Hydra loads launchers and sweepers only from the hydra_plugins namespace):
the Slurm launcher (hydra/launcher=slurm) and the Optuna sweeper (+sweep=optuna)."""
