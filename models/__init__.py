"""timm backbones with an N-channel first convolution, their head, starting weights and checkpoints.

    from models.checkpoint import load_checkpoint, model_from_checkpoint
    ckpt = load_checkpoint("runs/fer2013_resnet18")      # a run folder (best.pt) or a .pt file
    model = model_from_checkpoint(ckpt)                   # EmotionNet in eval mode
    ckpt["model"]["classes"], ckpt["input"], ckpt["stack"]   # what it needs as input, and how stacks were made
"""
