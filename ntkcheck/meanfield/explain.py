"""What the empirical-NTK figure of a run means (SPEC §6), as a few sentences for the summary.

With r the residual (R = |r|^2 / 2) and K = (H L) J J^T the empirical NTK, the squared gradient
norm in the conditional-Wasserstein metric is ``grad_norm_sq = r^T K r >= 2 lambda_min(K) R``
(Polyak–Łojasiewicz). Along the continuous flow (time t = step_size x steps)
``dR/dt = -grad_norm_sq``, hence

    R(t) <= R(t0) exp(-2 lambda (t - t0))      while lambda_min(K) >= lambda on [t0, t].

So lambda_min is a guaranteed decay *rate* of the loss per unit of flow time, independent of the
loss's own scale; ``pl_ratio = grad_norm_sq / (2 R)`` is the rate actually observed at a step
(always >= lambda_min). Dividing the loss by 10 at the guaranteed rate takes
``ln(10) / (2 lambda_min)`` time units, i.e. that divided by step_size steps. The bound holds
only while K stays positive definite along the flow; it says nothing once lambda_min reaches 0.
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["ntk_explanation"]


def ntk_explanation(ntk_min_eig: Optional[float], step_size: float,
                    pl_ratio: Optional[float] = None, loss: Optional[float] = None,
                    ntk_step: Optional[int] = None) -> list[str]:
    """Sentences explaining lambda_min for a run summary (empty when it was not computed).

    Parameters
    ----------
    ntk_min_eig : lambda_min(K) at ``ntk_step``
    step_size : eta, the flow time of one step
    pl_ratio : observed rate grad_norm_sq / (2 R) at the same step, when known
    loss : R at the same step, when known
    """
    if ntk_min_eig is None or not math.isfinite(ntk_min_eig):
        return []
    lam = ntk_min_eig
    at = f" at step {ntk_step}" if ntk_step is not None else ""
    lines = []
    if lam <= 0:
        lines.append(f"lambda_min = {lam:.3g}{at}: the empirical NTK is singular to working "
                     "precision, so the PL bound promises no decrease; the loss can stall on "
                     "directions the heads cannot move (a dependency in the data: check it with "
                     "`ntkcheck analyze` on the data file).")
    else:
        steps10 = math.log(10.0) / (2.0 * lam * step_size)
        lines.append(f"lambda_min = {lam:.3g}{at} is a guaranteed decay rate: while the NTK "
                     f"keeps it, loss(t) <= loss(t0) exp(-2 lambda_min (t - t0)), t = "
                     f"step_size x steps; dividing the loss by 10 at that rate takes at most "
                     f"{steps10:.3g} steps of step_size {step_size:g}.")
        if pl_ratio is not None and math.isfinite(pl_ratio) and pl_ratio > 0:
            share = lam / pl_ratio
            lines.append(f"the observed rate pl_ratio = grad_norm_sq / (2 loss) is "
                         f"{pl_ratio:.3g}{at}; lambda_min is {share:.2g} of it (the guarantee is "
                         "a lower bound; the residual mostly lies along larger eigenvalues when "
                         "this is small).")
        if loss is not None and math.isfinite(loss):
            lines.append(f"the rate does not depend on the loss's scale ({loss:.3g}{at}); "
                         "the bound holds only while the NTK stays positive definite.")
    lines.append("what changes lambda_min: the data (near-duplicate or near-translated "
                 "sequences make it small; `ntkcheck analyze` measures how well the condition "
                 "holds), the initial head scales model.init_qk_std and model.init_v_std, and "
                 "model.key_dim; flow.step_size only sets how much flow time one step is.")
    return lines

