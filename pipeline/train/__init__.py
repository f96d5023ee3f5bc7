"""`cli.py train` and `cli.py evaluate`: stacks -> a trained model, its metrics and plots."""
