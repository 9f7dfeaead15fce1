"""Evaluation: metrics, reconstruction scores, FID and Inception, the classifier,
t-SNE, generation grids, and the Fashion-MNIST and COCO evaluation runs.
"""
