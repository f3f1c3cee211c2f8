"""harmonium: restricted and deep Boltzmann machines on PyTorch.

"Harmonium" is Smolensky's (1986) name for the restricted Boltzmann machine.
"""

from . import datasets, estimate, units
from .deep import DBM, DBN
from .finetune import FineTunedClassifier
from .estimators import RBM, BernoulliMultinomialRBM, BernoulliRBM, GaussianBernoulliRBM
from .io import load
from .learning import DivergenceError
from .dbm import DBMModel
from .rbm import RBMModel
from .units import Bernoulli, Gaussian, Multinomial, Softmax, Units

__version__ = "0.1.0"

__all__ = [
    "RBM", "DBM", "DBN", "FineTunedClassifier", "DBMModel", "BernoulliRBM", "GaussianBernoulliRBM", "BernoulliMultinomialRBM", "RBMModel",
    "Units", "Bernoulli", "Gaussian", "Softmax", "Multinomial", "datasets", "estimate", "units", "load", "DivergenceError",
]
