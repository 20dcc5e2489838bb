"""The mining classifier: training, loading, prediction and evaluation."""

from amberwatch.model.classifier import BUNDLED_PATH, Classifier, load

__all__ = ["BUNDLED_PATH", "Classifier", "load"]
