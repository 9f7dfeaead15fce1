"""Training: the one training loop, run identity, resume state, losses, and the
Fashion-MNIST and COCO training runs.
"""
