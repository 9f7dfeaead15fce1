"""Embedding runs: CLIP over a data set's captions and images into the embeddings
store (above data/ and clip/, below training/)."""
