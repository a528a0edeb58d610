"""tfdl: run the ideas of an introductory deep-learning course with Keras, MLflow and Keras Tuner.

Importing the package is cheap: TensorFlow is imported only by the modules that train.
"""

__version__ = "0.1.0"
