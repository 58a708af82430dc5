"""Experiment trackers: each one a Hydra callback in its own module with one config under conf/tracking."""
