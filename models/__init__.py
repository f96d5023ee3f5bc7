"""timm backbones with an N-channel first convolution (`cli.py train`): not built yet, see the open issues."""
