"""`cli.py prepare`: a folder of clips or images -> face stacks, manifest and report."""
