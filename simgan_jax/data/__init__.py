"""Data sources sampled inside the train step, and TFDS builders for the paper's datasets."""
