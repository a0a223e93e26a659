"""lossforge: TensorFlow-exact losses and multi-task objectives on fused Numba kernels.

Import is fast: numba is loaded on the first loss computation, not here.

    >>> import lossforge
    >>> lossforge.losses.mean_squared_error([0.0, 1.0], [1.0, 1.0])
    np.float64(0.5)
"""
__version__ = "0.1.0"

from . import losses, nn, registry
from .collection import LOSSES, REGULARIZATION_LOSSES, LossCollection
from .objective import ConfigError, Objective, ObjectiveResult, ObjectiveState, load_objective
from .errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from .reduction import LossState, Reduction
from .registry import LossSpec, Param, register_loss
from .warmup import warm_up

__all__ = ["ConfigError", "Objective", "ObjectiveResult", "ObjectiveState", "load_objective", "InvalidArgumentError", "InvalidTypeError", "LOSSES", "LossCollection", "LossState",
           "LossforgeError", "LossSpec", "Param", "REGULARIZATION_LOSSES", "Reduction", "losses", "nn",
           "register_loss", "registry", "warm_up", "__version__"]

from .warmup import _from_environment  # noqa: E402  (after every name above exists)

_from_environment()
