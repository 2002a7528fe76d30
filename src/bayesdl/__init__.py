"""bayesdl: Bayesian deep learning on PyTorch.

Turn an ``nn.Module`` into a Bayesian neural network, predict by Bayesian model averaging,
and measure what the model does not know.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayesdl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from bayesdl import active, data, diagnostics, explain, hf, likelihoods, metrics, priors
from bayesdl.calibrate import TemperatureScaling
from bayesdl.explain import prune
from bayesdl.io import load, save
from bayesdl.methods import (
    HMC,
    L0,
    MAP,
    SGHMC,
    SGLD,
    SNGP,
    SWAG,
    ConcreteDropout,
    DeepEnsemble,
    Laplace,
    MCDropout,
    MeanFieldVI,
    MultiSWAG,
    get_method,
    method_names,
)
from bayesdl.predictive import CategoricalPredictive, GaussianPredictive, Predictive
from bayesdl.prior_draws import prior_predictive
from bayesdl.types import FitReport

__all__ = [
    "__version__", "active", "data", "diagnostics", "likelihoods", "metrics", "priors", "save", "load",
    "MAP", "MCDropout", "MeanFieldVI", "Laplace", "DeepEnsemble", "SWAG", "MultiSWAG",
    "L0", "ConcreteDropout", "SGLD", "SGHMC", "HMC", "get_method", "method_names",
    "Predictive", "CategoricalPredictive", "GaussianPredictive", "FitReport",
    "TemperatureScaling", "prior_predictive", "explain", "prune", "hf",
    "SNGP",
]  # fmt: skip
