"""Posterior approximations behind one interface (see ``base.Method``)."""

from bayesdl.methods.base import BaseMethod, Method, get_method, method_names, register_method
from bayesdl.methods.bbb import MeanFieldVI
from bayesdl.methods.concrete_dropout import ConcreteDropout
from bayesdl.methods.ensemble import DeepEnsemble
from bayesdl.methods.hmc import HMC
from bayesdl.methods.l0 import L0
from bayesdl.methods.laplace import Laplace
from bayesdl.methods.map import MAP
from bayesdl.methods.mc_dropout import MCDropout
from bayesdl.methods.sgmcmc import SGHMC, SGLD
from bayesdl.methods.sngp import SNGP
from bayesdl.methods.swag import SWAG, MultiSWAG

__all__ = [
    "BaseMethod", "Method", "get_method", "method_names", "register_method",
    "MAP", "MCDropout", "MeanFieldVI", "Laplace", "DeepEnsemble", "SWAG", "MultiSWAG",
    "L0", "ConcreteDropout", "SGLD", "SGHMC", "HMC",
    "SNGP",
]  # fmt: skip
