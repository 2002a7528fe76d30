"""Active learning: acquisition functions, the labelled/unlabelled pool and the loop.

``select(name, pred, k)`` picks k pool points from a Predictive (S, N, C) with any
registered acquisition function; ``ActiveLearner`` runs the whole checkpointed loop.
"""

from bayesdl.active.acquisition import (
    Acquisition,
    acquisition_names,
    bald,
    batchbald,
    entropy,
    epig,
    epig_scores,
    get_acquisition,
    gumbel_top_k,
    joint_entropy,
    mean_std,
    power_bald,
    preferred_draws,
    random,
    register_acquisition,
    select,
    softmax_bald,
    softrank_bald,
    variation_ratio,
)
from bayesdl.active.history import ActiveHistory, StepRecord
from bayesdl.active.loop import ActiveLearner
from bayesdl.active.pool import Pool
from bayesdl.active.schedule import BATCHBALD_SCHEDULE, BatchBALDSchedule, FixedLengthBatches

__all__ = [
    "BATCHBALD_SCHEDULE",
    "BatchBALDSchedule",
    "FixedLengthBatches",
    "Acquisition",
    "ActiveHistory",
    "ActiveLearner",
    "Pool",
    "StepRecord",
    "acquisition_names",
    "bald",
    "batchbald",
    "entropy",
    "epig",
    "epig_scores",
    "get_acquisition",
    "gumbel_top_k",
    "joint_entropy",
    "mean_std",
    "power_bald",
    "preferred_draws",
    "random",
    "register_acquisition",
    "select",
    "softmax_bald",
    "softrank_bald",
    "variation_ratio",
]
