"""The mean-field transformer of SPEC §6: model, discrete adjoint, empirical NTK, gradient flow.

Modules: ``schemes`` (Butcher tableaux), ``model`` (heads, attention field, forward), ``loss``
(token / pooled regression), ``adjoint`` (exact gradients), ``ntk`` (empirical NTK), ``flow``
(training loop), ``config`` (TOML schema), ``run`` (run directory, checkpoints, resume),
``teacher`` (synthetic teacher data).
"""

from .adjoint import Gradient, loss_and_gradient, loss_value
from .config import (FlowConfig, ModelConfig, OutputConfig, TrainConfig, TrainingSet,
                     load_train_config, load_training_set, parse_train_config)
from .flow import FlowResult, FlowStatus, StepRecord, gradient_flow
from .loss import LossKind, RegressionLoss
from .model import MeanFieldTransformer
from .ntk import EmpiricalNTK, empirical_ntk, residual_jacobian
from .run import Checkpoint, TrainResult, list_checkpoints, load_checkpoint, train
from .schemes import SCHEMES, ButcherTableau, get_scheme
from .teacher import teacher_data

__all__ = [
    "MeanFieldTransformer", "ButcherTableau", "SCHEMES", "get_scheme",
    "LossKind", "RegressionLoss", "Gradient", "loss_and_gradient", "loss_value",
    "EmpiricalNTK", "empirical_ntk", "residual_jacobian",
    "StepRecord", "FlowStatus", "FlowResult", "gradient_flow",
    "ModelConfig", "FlowConfig", "OutputConfig", "TrainConfig", "TrainingSet",
    "load_train_config", "parse_train_config", "load_training_set",
    "Checkpoint", "TrainResult", "train", "load_checkpoint", "list_checkpoints",
    "teacher_data",
]
