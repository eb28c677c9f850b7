"""Models: modality encoders, a transformer backbone with LoRA and prompts, task heads."""
