"""`cli.py predict`, `live` and `export`: a trained model used on new clips."""
