"""Search over video embeddings: the faiss vector index behind `c4c index` and `c4c search`."""
