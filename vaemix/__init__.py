"""vaemix: Gaussian-mixture-prior VAEs on TensorFlow Probability, trained and evaluated with one command."""

__version__ = "0.1.0"
