"""Read and write the N-channel face stacks that `cli.py prepare` makes, and their manifest.

    from stacks import read_stack, read_manifest
    for row in read_manifest("data/stacks/interval_5", split="train"):
        stack = read_stack(row.path)        # stack.array: (C, H, W) uint8, stack.meta: dict
"""

from stacks.io import Stack, read_stack, write_stack
from stacks.manifest import MANIFEST_NAME, ManifestRow, read_manifest, write_manifest

__all__ = ["MANIFEST_NAME", "ManifestRow", "Stack", "read_manifest", "read_stack", "write_manifest", "write_stack"]
