"""The theorem at work: the same student-teacher flow on injective data and on dependent data.

Barboni, Furuya, de Hoop and Peyre (arXiv:2605.17660) prove that the mean-field gradient flow
reaches a global minimum from a small enough initial loss when the LSE functions of the data's
token distributions are linearly independent modulo affine functions. This script runs the
same student (same heads at step 0, same step size) from the same initial loss on three data
sets that differ in one sequence:

* ``injective``: N sequences of Gaussian tokens; targets from a random teacher transformer of
  the same form (pooled loss). ``ntkcheck`` certifies the condition.
* ``duplicate``: the last sequence replaced by sequence 0 with its tokens in reverse order (a
  permuted duplicate: LSE[last] = LSE[0], a dependency) and given its own target.
* ``translate``: the last sequence replaced by sequence 0 translated by t (LSE[last] =
  LSE[0] + <t, z>, a dependency) and given its own target.

"Its own target" is chosen so that the student's residual at step 0 is the same vector in all
three runs: target = student output at step 0 + the residual the original last sequence had.
The three flows therefore start from exactly the same loss. For the duplicate, every model of
this form gives the two copies the same pooled output (attention is permutation invariant), so
no heads can bring the loss below |T_0 - T_last|^2 / (4 N): that floor is drawn too.

Recorded at every step: the loss R, the PL ratio grad_norm_sq / (2 R); every ``--ntk-every``
steps the smallest eigenvalue of the empirical NTK. One figure compares the runs.

Regenerate the figure of the docs (about a minute on one core)::

    python examples/theorem_at_work.py --out docs/theorem_at_work.png
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import ntkcheck as nk
from ntkcheck.meanfield import (LossKind, MeanFieldTransformer, RegressionLoss, StepRecord,
                                gradient_flow)

#: The setting (small enough for a minute of CPU time).
SETTING = {"samples": 12, "tokens": 4, "dim": 3, "layers": 2, "heads": 16, "key_dim": 3,
           "scale": 0.5, "seed": 0, "student_seed": 1, "step_size": 2.0}
SHIFT = np.array([0.5, -1.0, 0.25])
CASES = ("injective", "duplicate", "translate")


@dataclass
class Case:
    """One run: its data, the verdict of ``analyze`` on the tokens, and the flow's records."""

    name: str
    tokens: np.ndarray
    targets: np.ndarray
    verdict: str
    evidence: str | None
    records: tuple[StepRecord, ...] = ()
    floor: float | None = None

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(r.step, getattr(r, key)) for r in self.records if getattr(r, key) is not None]
        steps, values = zip(*pairs) if pairs else ((), ())
        return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def pooled_output(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P sum_a w_ia x_ia^L, shape (N, d') with d' = d."""
    return np.einsum("ia,iae->ie", weights, model.forward(tokens, weights))


def make_cases(setting: dict = SETTING) -> tuple[MeanFieldTransformer, np.ndarray, list[Case]]:
    """The student at step 0, the token weights and the three data sets (see the docstring)."""
    s = setting
    data = nk.teacher_data(samples=s["samples"], tokens=s["tokens"], dim=s["dim"],
                           layers=s["layers"], heads=s["heads"], key_dim=s["key_dim"],
                           target_dim=s["dim"], loss="pooled", scale=s["scale"], seed=s["seed"])
    X, T = data["tokens"], data["targets"]
    N, n, _ = X.shape
    w = np.full((N, n), 1.0 / n)
    student = MeanFieldTransformer.init(layers=s["layers"], heads=s["heads"], key_dim=s["key_dim"],
                                        dim=s["dim"], init_qk_std=s["scale"],
                                        init_v_std=s["scale"], seed=s["student_seed"])
    residual_last = T[-1] - pooled_output(student, X, w)[-1]
    cases = []
    for name in CASES:
        Y, TT = X.copy(), T.copy()
        if name != "injective":
            Y[-1] = X[0][::-1] if name == "duplicate" else X[0] + SHIFT
            TT[-1] = pooled_output(student, Y, w)[-1] + residual_last
        result = nk.analyze(Y, exact="never")
        floor = float(np.sum((TT[0] - TT[-1]) ** 2) / (4 * N)) if name == "duplicate" else None
        cases.append(Case(name, Y, TT, result.verdict, result.evidence, floor=floor))
    return student, w, cases


def run(steps: int = 3000, ntk_every: int = 100, setting: dict = SETTING,
        verbose: bool = True) -> list[Case]:
    """Run the flow on each case and return the cases with their records."""
    student, w, cases = make_cases(setting)
    for case in cases:
        t0 = time.perf_counter()
        flow = gradient_flow(student, case.tokens, w, RegressionLoss(LossKind.POOLED, case.targets),
                             steps=steps, step_size=setting["step_size"], ntk_every=ntk_every)
        case.records = flow.records
        if verbose:
            first, last = flow.records[0], flow.records[-1]
            lam = [r.ntk_min_eig for r in flow.records if r.ntk_min_eig is not None]
            print(f"{case.name:10s} analyze: {case.verdict} ({case.evidence}); loss "
                  f"{first.loss:.4e} -> {last.loss:.4e}; lambda_min {lam[0]:.2e} -> {lam[-1]:.2e}; "
                  f"pl_ratio {last.pl_ratio:.2e}; {time.perf_counter() - t0:.1f} s"
                  + (f"; loss floor {case.floor:.4e}" if case.floor is not None else ""))
    return cases


def draw(cases: list[Case], path: str | Path, dpi: int = 110) -> None:
    """One figure, three panels against the step: loss, smallest NTK eigenvalue, PL ratio."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_lam, ax_pl = fig.subplots(1, 3)
    colours = {"injective": "C0", "duplicate": "C3", "translate": "C2"}
    tiny = 1e-16  # eigenvalues at or below round-off are drawn hollow at this level
    for case in cases:
        label = f"{case.name} (analyze: {case.verdict})"
        c = colours[case.name]
        ax_loss.plot(*case.series("loss"), color=c, label=label)
        if case.floor is not None:
            ax_loss.axhline(case.floor, color=c, linestyle=":", linewidth=1,
                            label="duplicate: lowest loss any heads can reach")
        st, lam = case.series("ntk_min_eig")
        small = lam <= tiny
        if (~small).any():
            ax_lam.plot(st[~small], lam[~small], "o-", color=c, markersize=3, label=label)
        if small.any():
            ax_lam.plot(st[small], np.full(small.sum(), tiny), "o", mfc="none", color=c,
                        markersize=4, label=f"{case.name} (analyze: {case.verdict}): <= 1e-16, round-off")
        ax_pl.plot(*case.series("pl_ratio"), color=c, label=label)
    for ax, title in ((ax_loss, "loss R"), (ax_lam, "smallest eigenvalue of the empirical NTK"),
                      (ax_pl, "PL ratio grad_norm_sq / (2 R)")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_lam.legend(fontsize=7)
    s = SETTING
    fig.suptitle(f"same student, same initial loss: N = {s['samples']} sequences of "
                 f"{s['tokens']} tokens in R^{s['dim']}, {s['layers']} layers x {s['heads']} "
                 f"heads, pooled loss, step size {s['step_size']:g}", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    Path(path).write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="theorem_at_work.png", help="figure (.png/.svg/.pdf)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--ntk-every", type=int, default=100)
    args = parser.parse_args(argv)
    cases = run(args.steps, args.ntk_every)
    draw(cases, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
