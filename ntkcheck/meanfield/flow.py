"""The training flow: explicit Euler in training time of the conditional-Wasserstein gradient flow.

Particle form (SPEC §6): every head stays in its layer and moves by

    theta_{l,h} <- theta_{l,h} - eta (H L) dR/dtheta_{l,h},

so the time scale does not depend on H or L. Each recorded step holds R, the squared gradient
norm in the metric g = (H L) sum |dR/dtheta|^2, the PL ratio g / (2 R) (>= lambda_min(K) while the
empirical NTK K is positive definite) and, every ``ntk_every`` steps, lambda_min(K).

This module is pure: no files, no printing. A callback sees every record (and may raise
KeyboardInterrupt, which stops the flow cleanly at the current step).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Callable, Optional

import numpy as np

from ..errors import NumericalError
from .adjoint import loss_and_gradient
from .loss import RegressionLoss
from .model import MeanFieldTransformer
from .ntk import empirical_ntk

__all__ = ["StepRecord", "FlowStatus", "FlowResult", "FlowDiverged", "gradient_flow"]


@dataclass(frozen=True)
class StepRecord:
    """One recorded step of the flow, at the parameters theta_step (before its update)."""

    step: int
    time: float
    loss: float
    grad_norm_sq: float
    ntk_min_eig: Optional[float]
    pl_ratio: Optional[float]

    def to_dict(self) -> dict:
        return asdict(self)


class FlowStatus(str, Enum):
    """Why the flow stopped."""

    COMPLETED = "completed"      # ran all steps
    CONVERGED = "converged"      # loss <= tol * initial loss
    INTERRUPTED = "interrupted"  # KeyboardInterrupt (Ctrl-C or a callback)


@dataclass(frozen=True, eq=False)
class FlowResult:
    """Where the flow stopped: the heads at ``step``, why, and the records of this call."""

    model: MeanFieldTransformer
    step: int
    status: FlowStatus
    records: tuple[StepRecord, ...]
    initial_loss: Optional[float]


class FlowDiverged(NumericalError):
    """Non-finite loss, gradient or parameters; ``step`` is the first bad step."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def gradient_flow(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
                  loss: RegressionLoss, *, steps: int, step_size: float, start_step: int = 0,
                  tol: float = 0.0, ntk_every: int = 0, initial_loss: Optional[float] = None,
                  time_offset: float = 0.0,
                  callback: Optional[Callable[[StepRecord, MeanFieldTransformer], None]] = None,
                  clock: Callable[[], float] = time.perf_counter) -> FlowResult:
    """Run the flow from ``model`` (the heads at ``start_step``) up to step ``steps``.

    Parameters
    ----------
    steps : last step index; steps start_step .. steps are recorded, steps - start_step updates.
    step_size : eta > 0.
    tol : stop early once R <= tol * initial_loss (0 disables).
    ntk_every : record lambda_min of the empirical NTK at multiples of it and at the last step
        (0 disables).
    initial_loss : R at step 0 (when resuming); by default the loss at ``start_step``.
    callback : called with each record and the heads it was computed at.

    Raises
    ------
    FlowDiverged
        When the loss, gradient or updated heads are not finite (the heads of the last good
        step were already passed to the callback).
    """
    scale = model.heads * model.layers  # the metric factor H L
    eta = step_size * scale
    state = (start_step, model)  # replaced in one assignment so an interrupt sees a valid pair
    records: list[StepRecord] = []
    status = FlowStatus.COMPLETED
    t0 = clock()
    try:
        while True:
            t, current = state
            # A diverging flow overflows; detect it from the values, not from warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                R, grad = loss_and_gradient(current, tokens, weights, loss)
            if not math.isfinite(R) or not grad.is_finite():
                raise FlowDiverged(f"training diverged at step {t}: the loss or its gradient is "
                                   f"not finite (loss = {R}); reduce flow.step_size", t)
            if initial_loss is None:
                initial_loss = R
            g2 = scale * grad.sq_norm()
            converged = tol > 0 and R <= tol * initial_loss
            last = t >= steps or converged
            ntk_min = None
            if ntk_every > 0 and (t % ntk_every == 0 or last):
                ntk_min = empirical_ntk(current, tokens, weights, loss).min_eig
            record = StepRecord(t, time_offset + clock() - t0, R, g2, ntk_min,
                                g2 / (2 * R) if R > 0 else None)
            records.append(record)
            if callback is not None:
                callback(record, current)
            if last:
                status = FlowStatus.CONVERGED if converged else FlowStatus.COMPLETED
                break
            with np.errstate(over="ignore", invalid="ignore"):
                new = current.with_params(current.Q - eta * grad.Q, current.K - eta * grad.K,
                                          current.V - eta * grad.V)
            if not new.params_finite():
                raise FlowDiverged(f"training diverged after step {t}: the updated heads are "
                                   "not finite; reduce flow.step_size", t + 1)
            state = (t + 1, new)
    except KeyboardInterrupt:
        status = FlowStatus.INTERRUPTED
    step, current = state
    return FlowResult(current, step, status, tuple(records), initial_loss)
