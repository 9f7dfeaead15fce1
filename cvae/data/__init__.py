"""Data: Fashion-MNIST, prompts to labels, COCO captions and the keyword filter, image
preparation, shards, the embeddings store, image-condition pairs, batches and the
stream loader.
"""
