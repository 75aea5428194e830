"""The relation re-check's data-rounding scale (ntkcheck.injectivity.verify): for every point
triple (z, z + h, z - h) and law, sqrt(sum_q (d D2 / d theta_q A_q)^2), the typical change of the
second difference D2 LSE = LSE(z + h) + LSE(z - h) - 2 LSE(z) when every stored parameter
theta_q moves by u A_q (A_q = |theta_q|; 1 for a log-weight, which moves by u when its weight
is rounded). Reference: central finite differences of D2 in each parameter at 60 digits,
independent of the analytic gradients the module assembles."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from ntkcheck import Discrete, GaussianMixture, UniformBox
from ntkcheck.injectivity import verify

DIGITS = 60
#: Finite-difference step: the central difference's truncation error is O(step^2) ~ 1e-50
#: relative and its cancellation loses 25 of the 60 digits, both far below the 1e-20 asserted.
STEP = mpmath.mpf("1e-25")


def _parameters(law: tuple) -> list[tuple]:
    """Paths to every parameter of a prepared law, in the order of verify._amplitudes."""
    kind = law[0]
    if kind == "uniform":
        return [(side, l) for l in range(len(law[1])) for side in (1, 2)]
    if kind == "discrete":
        return ([(1, j, a) for j, y in enumerate(law[1]) for a in range(len(y))]
                + [(2, j) for j in range(len(law[2]))])
    out = []
    for k, (m, S) in enumerate(zip(law[1], law[2])):
        out += [(1, k, a) for a in range(len(m))]
        out += [(2, k, a, b) for a in range(len(S)) for b in range(len(S))]
        out += [(3, k)]
    return out


def _moved(law: tuple, path: tuple, delta) -> tuple:
    """A copy of ``law`` with the parameter at ``path`` moved by ``delta``."""
    parts = [law[0]] + [_copy(x) for x in law[1:]]
    target = parts[path[0]]
    for i in path[1:-1]:
        target = target[i]
    target[path[-1]] += delta
    return tuple(parts)


def _copy(x):
    return [_copy(y) for y in x] if isinstance(x, list) else x


def _value(law: tuple, path: tuple):
    x = law[path[0]]
    for i in path[1:]:
        x = x[i]
    return x


def _d2(law: tuple, triple) -> mpmath.mpf:
    z, zp, zm = triple
    return (verify._lse(law, zp, False)[0] + verify._lse(law, zm, False)[0]
            - 2 * verify._lse(law, z, False)[0])


def _reference(law: tuple, triple) -> mpmath.mpf:
    terms = []
    for path in _parameters(law):
        amp = mpmath.mpf(1) if law[0] != "uniform" and path[0] == len(law) - 1 else abs(
            _value(law, path))
        slope = (_d2(_moved(law, path, STEP), triple)
                 - _d2(_moved(law, path, -STEP), triple)) / (2 * STEP)
        terms.append((slope * amp) ** 2)
    return mpmath.sqrt(mpmath.fsum(terms))


LAWS = {
    "discrete": Discrete(atoms=[[0.5, -1.25], [2.0, 0.75], [-1.5, 0.25]],
                         weights=[0.2, 0.5, 0.3]),
    "box": UniformBox(low=[-1.0, 0.5], high=[0.75, 2.5]),
    "mixture": GaussianMixture(weights=[0.4, 0.6], means=[[0.0, 1.0], [1.5, -0.5]],
                               covariances=[[[0.5, 0.1], [0.1, 0.3]],
                                            [[0.2, -0.05], [-0.05, 0.4]]]),
}


@pytest.mark.parametrize("name", list(LAWS))
def test_sensitivity_is_the_gradient_of_the_second_difference(name):
    """The module's sensitivity equals the finite-difference reference to 1e-20 relative, at
    two triples (a small and a large step h), for atoms and log-weights, box bounds, and
    means, covariance entries and log-weights of a mixture."""
    dist = LAWS[name]
    with mpmath.workdps(DIGITS):
        law = verify._prepare(dist, written=False)
        triples = []
        for z, h in (([0.3, -0.2], [0.01, 0.02]), ([-0.7, 0.4], [0.5, -0.25])):
            zm = [mpmath.mpf(x) for x in z]
            hm = [mpmath.mpf(x) for x in h]
            triples.append((zm, [a + b for a, b in zip(zm, hm)],
                            [a - b for a, b in zip(zm, hm)]))
        _, _, sens = verify._second_differences([dist], triples, written=False)
        for triple, row in zip(triples, sens):
            ref = _reference(law, triple)
            assert ref > 0
            assert abs(row[0] - ref) <= mpmath.mpf("1e-20") * ref


def test_fit_triples_skip_the_sensitivities():
    """Without sensitivities (the fit's triples) the second differences and sizes are the same
    numbers, and no sensitivity is computed."""
    dist = LAWS["mixture"]
    with mpmath.workdps(DIGITS):
        z, h = [mpmath.mpf(0.3), mpmath.mpf(-0.2)], [mpmath.mpf(0.1), mpmath.mpf(0.05)]
        triples = [(z, [a + b for a, b in zip(z, h)], [a - b for a, b in zip(z, h)])]
        full = verify._second_differences([dist], triples, written=False)
        bare = verify._second_differences([dist], triples, written=False, sensitivities=False)
    assert bare[0] == full[0] and bare[1] == full[1]
    assert bare[2] == [[]] and len(full[2][0]) == 1
    np.testing.assert_array_equal(np.array(bare[0], dtype=float), np.array(full[0], dtype=float))
