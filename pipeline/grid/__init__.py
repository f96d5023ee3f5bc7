"""`cli.py grid`: the interval x backbone benchmark grid, run here, in local processes or on Ray."""
