"""Network-blocked QLoRA training: recipe, isolated child, trainer, checkpoints, artifact."""
