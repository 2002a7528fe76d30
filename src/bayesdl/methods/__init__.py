"""Posterior approximations behind one interface (see ``base.Method``)."""

from bayesdl.methods.base import BaseMethod, Method, get_method, method_names, register_method
from bayesdl.methods.bbb import MeanFieldVI
from bayesdl.methods.l0 import L0
from bayesdl.methods.laplace import Laplace
from bayesdl.methods.map import MAP
from bayesdl.methods.mc_dropout import MCDropout

__all__ = [
    "BaseMethod", "Method", "get_method", "method_names", "register_method",
    "MAP", "MCDropout", "MeanFieldVI", "Laplace", "L0",
]  # fmt: skip
