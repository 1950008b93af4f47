"""The maths layer: priors, networks, the VAE, its objectives, metrics and the mixture toolkit.

Modules here import TensorFlow, TFP, tf_keras (through :mod:`vaemix.maths.keras`), NumPy, SciPy,
scikit-learn and each other; they take plain arguments and never see configs, files or pictures.
"""
