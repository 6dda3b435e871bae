"""Model inference: feature vectors in, predictions out, tagged with model and feature-set versions."""
