"""The mining classifier: training, loading, prediction and evaluation."""

from amberwatch.model.classifier import Classifier
from amberwatch.model.modelfile import BUNDLED_CNN_PATH, BUNDLED_PATH, Model, from_bytes, load
from amberwatch.model.pretrained import PretrainedClassifier

__all__ = ["BUNDLED_CNN_PATH", "BUNDLED_PATH", "Classifier", "Model", "PretrainedClassifier", "from_bytes", "load"]
