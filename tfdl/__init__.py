"""tfdl: run the ideas of an introductory deep-learning course with Keras, MLflow and Keras Tuner.

From Python: `tfdl.load_pipeline`, `tfdl.prepare`, `tfdl.train`, `tfdl.tune` and
`tfdl.find_learning_rate` (see tfdl.api). Importing the package is cheap: TensorFlow is
imported only when something trains.
"""

from tfdl.api import find_learning_rate, load_pipeline, prepare, train, tune

__version__ = "0.1.0"
__all__ = ["find_learning_rate", "load_pipeline", "prepare", "train", "tune"]
