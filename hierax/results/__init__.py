"""What a fit holds: the Fit (assembled from an engine's draws), saving and loading, simulation-based calibration."""
