"""The CLIP4Clip model: open_clip backbone, 2-D/3-D patch, similarity heads, loss."""
