"""ntkcheck: check the attention-NTK injectivity condition of infinitely deep and wide
transformers (Barboni, Furuya, de Hoop, Peyré, arXiv:2605.17660) and run their mean-field
gradient flow.
"""

from .analysis import AnalysisResult, analyze, suggest_drop
from .arrays import as_dataset, training_set
from .dataset import Dataset
from .distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .errors import ConfigError, InputError, NtkcheckError, NtkcheckWarning, NumericalError
from .exact import ExactBudget, ExactDependency, ExactRefused, ExactResult
from .exact import decide as decide_exact
from .io import TokenArrays, load_dataset, load_spec, load_token_npz
from .kernel_spectrum import KernelSpectrum, kernel_spectrum, spectrum_summary
from .kernels import Kernel, full_kernel, gram_kernel, qk_kernel, value_kernel
from .meanfield import (EmpiricalNTK, Gradient, LossKind, MeanFieldTransformer, RegressionLoss,
                        TrainConfig, TrainResult, empirical_ntk, gradient_flow,
                        load_train_config, loss_and_gradient, teacher_data, train)
from .injectivity.screen import ScreenResult, screen
from .injectivity.verify import RelationCheck, verify_relation
from .meanfield.trained import Run, TrainedModel, load_run
from .injectivity.dependencies import Dependency
from .neardep import DropSuggestion, apply_margin

__version__ = "0.1.0"

__all__ = [
    "analyze", "AnalysisResult", "Dependency", "screen", "ScreenResult", "verify_relation",
    "RelationCheck", "suggest_drop", "DropSuggestion", "apply_margin",
    "load_dataset", "load_spec",
    "decide_exact", "ExactBudget", "ExactDependency", "ExactRefused", "ExactResult",
    "Kernel", "KernelSpectrum", "kernel_spectrum", "spectrum_summary", "qk_kernel",
    "value_kernel", "full_kernel", "gram_kernel",
    "MeanFieldTransformer", "LossKind", "RegressionLoss", "Gradient", "loss_and_gradient",
    "EmpiricalNTK", "empirical_ntk", "gradient_flow", "TrainConfig", "TrainResult",
    "load_train_config", "train", "teacher_data", "load_run", "Run", "TrainedModel",
    "as_dataset", "training_set",
    "Dataset", "Discrete", "Distribution", "GaussianMixture", "UniformBox",
    "ConfigError", "InputError", "NtkcheckError", "NtkcheckWarning", "NumericalError",
    "TokenArrays", "load_token_npz", "__version__",
]
