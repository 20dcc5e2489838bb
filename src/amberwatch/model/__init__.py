"""The mining classifier: training, loading, prediction and evaluation."""
