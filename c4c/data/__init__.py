"""Model inputs: frame selection, caption tokens, (text, video) datasets and the epoch sampler."""
