"""ntkcheck: check the attention-NTK injectivity condition of infinitely deep and wide
transformers (Barboni, Furuya, de Hoop, Peyré, arXiv:2605.17660) and run their mean-field
gradient flow.
"""

from .analysis import AnalysisResult, analyze
from .dataset import Dataset
from .distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .errors import ConfigError, InputError, NtkcheckError, NtkcheckWarning, NumericalError
from .exact import ExactBudget, ExactDependency, ExactRefused, ExactResult
from .exact import decide as decide_exact
from .io import TokenArrays, load_dataset, load_spec, load_token_npz
from .prescreen import Finding, prescreen
from .rank import Dependency

__version__ = "0.1.0"

__all__ = [
    "analyze", "AnalysisResult", "Dependency", "Finding", "prescreen",
    "load_dataset", "load_spec",
    "decide_exact", "ExactBudget", "ExactDependency", "ExactRefused", "ExactResult",
    "Dataset", "Discrete", "Distribution", "GaussianMixture", "UniformBox",
    "ConfigError", "InputError", "NtkcheckError", "NtkcheckWarning", "NumericalError",
    "TokenArrays", "load_token_npz", "__version__",
]
