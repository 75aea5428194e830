"""The certificate's Gram-matrix route (issue 22 point 1, :mod:`ntkcheck.injectivity.sigma`):
every bound checked against an independent computation (exact rationals, or mpmath at 50
digits), on ordinary, adversarial and rank-deficient matrices."""

from __future__ import annotations

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import scipy.linalg

from ntkcheck.injectivity import sigma
from ntkcheck.injectivity.rounding import gram_rounding
from ntkcheck.injectivity.sigma import float_sigma_lower_bound, gram_sigma_lower_bound

U = Fraction(1, 2**53)
ETA = Fraction(1, 2**1074)


def _gamma(k: int) -> Fraction:
    return k * U / (1 - k * U)


def _truth(A: np.ndarray) -> mp.mpf:
    """sigma_min of the float matrix A at 50 digits."""
    with mp.workdps(50):
        return min(mp.svd_r(mp.matrix(A.tolist()), compute_uv=False))


def _exact_gram(A: np.ndarray) -> list[list[Fraction]]:
    cols = [[Fraction(x) for x in A[:, j]] for j in range(A.shape[1])]
    n = len(cols)
    return [[sum(a * b for a, b in zip(cols[i], cols[j])) for j in range(n)] for i in range(n)]


def _case(rng, M, n, cond, col_exp=None):
    Q, _ = np.linalg.qr(rng.normal(size=(M, n)))
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = (Q * np.geomspace(1.0, 1.0 / cond, n)) @ V.T
    if col_exp is not None:
        A = np.ldexp(A, col_exp[None, :])
    return np.ascontiguousarray(A)


@pytest.mark.parametrize("cond", [1.0, 1e2, 1e4, 1e6, 1e7, 1e8, 1e10, 1e14])
def test_gram_bound_is_below_the_50_digit_sigma_min(cond):
    """For conditions 1 to 1e14 the Gram route's bound never exceeds the truth; where it proves
    something (cond up to ~1e6 here) it is within 1% of it; the combined bound (Gram route,
    then the fallback) is within 1e-3 of the truth up to cond 1e4, 1e-2 up to 1e12."""
    rng = np.random.default_rng(int(np.log10(cond)))
    for _ in range(3):
        A = _case(rng, 14, 6, cond)
        truth = _truth(A)
        bound, note, _ = gram_sigma_lower_bound(A)
        assert bound <= truth, (cond, note)
        if cond <= 1e6:
            assert bound >= truth * (1 - 1e-2), (cond, note)
        both, note2 = float_sigma_lower_bound(A)
        assert both <= truth
        if cond <= 1e12:  # Gram route: sqrt(1 - 2^-12) and (M + n) u ||A||_F^2 / sigma^2
            assert both >= truth * (1 - (1e-3 if cond <= 1e4 else 1e-2)), (cond, note2)


def test_badly_scaled_columns_never_give_a_bound_above_the_truth():
    """Columns scaled by 2^-500 .. 2^500 (1e-150 .. 1e150): the bound stays below the truth
    (here: tiny, the matrix being as ill-conditioned as its scaling)."""
    rng = np.random.default_rng(5)
    for k in range(4):
        col_exp = rng.integers(-500, 500, size=5)
        A = _case(rng, 9, 5, 10.0**k, col_exp)
        truth = _truth(A)
        for bound in (gram_sigma_lower_bound(A)[0], float_sigma_lower_bound(A)[0]):
            assert not bound > truth


def test_rank_deficient_and_nearly_deficient_matrices_are_never_bounded_above_the_truth():
    """An exactly rank-deficient matrix (small integers) gets no positive bound; matrices whose
    smallest singular value is 1e-9 .. 1e-15 of the largest get a bound below it."""
    rng = np.random.default_rng(8)
    for _ in range(5):
        A = rng.integers(-9, 10, size=(12, 5)).astype(float)
        A[:, 4] = A[:, 0] - 2 * A[:, 2]
        assert not gram_sigma_lower_bound(A)[0] > 0
        assert not float_sigma_lower_bound(A)[0] > 0
    for e in (9, 12, 15):
        A = _case(rng, 10, 4, 1.0)
        A[:, 3] = A[:, 0] + A[:, 1] + 10.0**-e * A[:, 2]
        truth = _truth(A)
        assert not gram_sigma_lower_bound(A)[0] > truth
        assert not float_sigma_lower_bound(A)[0] > truth


def test_a_wrong_estimate_still_gives_a_valid_bound(monkeypatch):
    """The shift comes from an estimate only: estimates 100x too large, 2x too large or 1000x
    too small give a bound below the truth (or none)."""
    rng = np.random.default_rng(13)
    A = _case(rng, 30, 8, 1e3)
    truth = _truth(A)
    real = sigma._lambda_min_estimate
    for factor in (100.0, 2.0, 1e-3):
        monkeypatch.setattr(sigma, "_lambda_min_estimate",
                            lambda R, f=factor: (f * real(R)[0], 0.0))
        bound = gram_sigma_lower_bound(A)[0]
        assert not bound > truth, factor
    monkeypatch.setattr(sigma, "_lambda_min_estimate", lambda R: (1e-3 * real(R)[0], 0.0))
    assert 0 < gram_sigma_lower_bound(A)[0] <= truth * np.sqrt(2e-3)


def test_gram_rounding_bound_covers_the_exact_error_with_every_term():
    """e_G >= ||fl(A^T A) - A^T A||_F (exact rationals), for normal entries and for entries
    whose products underflow (there only the 2 M n 2^-1074 term covers it), and e_G is at least
    the theorem's value gamma_M ||A||_F^2 + 2 M n 2^-1074 computed exactly."""
    rng = np.random.default_rng(21)
    for scale in (0, -540, -560):
        A = np.ascontiguousarray(np.ldexp(rng.normal(size=(40, 3)), scale))
        M, n = A.shape
        S = scipy.linalg.blas.dsyrk(1.0, A.T, trans=0)
        exact = _exact_gram(A)
        err2 = sum((Fraction(S[min(i, j), max(i, j)]) - exact[i][j]) ** 2
                   for i in range(n) for j in range(n))
        fro_a = float(sigma._norm_up(A))
        e_g = Fraction(gram_rounding(M, n, fro_a))
        assert e_g**2 >= err2, scale
        assert e_g >= _gamma(M) * Fraction(fro_a) ** 2 + 2 * M * n * ETA
        if scale == -560:
            assert err2 > 0  # the products underflow: the error is real


def _exact_chol_radius(diag: np.ndarray, n: int) -> Fraction:
    g = _gamma(n + 1)
    dsum = sum(abs(Fraction(x)) for x in diag)
    dmax = max(abs(Fraction(x)) for x in diag)
    return (g / (1 - g) * dsum + U * dmax / (1 - U)
            + 4 * n * (2 * (n + 1) + dmax) * ETA)


def test_shifted_cholesky_radius_is_at_least_the_theorem_and_covers_indefinite_matrices():
    """The radius c returned by _shifted_cholesky_bound (lambda_min(S) >= s - c) is at least
    Higham's rho = gamma_(n+1) / (1 - gamma_(n+1)) sum |X'_ii| plus the diagonal rounding
    u / (1 - u) max |X'_ii| plus Rump's underflow term, computed exactly (also for a Gram matrix
    of order 2^-1060, where only the underflow term is left); and wherever the Cholesky
    factorisation of fl(S - s I) completes although S - s I is indefinite (s just above
    lambda_min(S) of a Gram matrix of nearly parallel columns: checked to happen), the claim
    lambda_min(S) >= s - c holds against a 50-digit eigenvalue."""
    rng = np.random.default_rng(3)
    indefinite = 0
    n = 3
    for trial in range(10):
        a = rng.uniform(0.5, 1.0, size=(50, 1))
        B = np.hstack([a + rng.normal(size=(50, 1)) * 1e-6 for _ in range(n)])
        for scale in (0, -1060):
            S = np.asfortranarray(np.triu(np.ldexp(B.T @ B, scale)))
            Ssym = np.triu(S) + np.triu(S, 1).T
            with mp.workdps(50):
                lmin = min(mp.eigsy(mp.matrix(Ssym.tolist()), eigvals_only=True))
            tr = float(np.trace(Ssym))
            for rel in (-1e-2, 1e-18, 3e-18, 1e-17, 3e-17, 1e-16):
                s = float(lmin) + rel * tr
                c = sigma._shifted_cholesky_bound(S, s)
                if not np.isfinite(c):
                    continue
                diag = np.diagonal(S) - s
                assert Fraction(-c) >= _exact_chol_radius(diag, n), (trial, scale, rel)
                with mp.workdps(50):
                    assert lmin - mp.mpf(s) >= mp.mpf(c), (trial, scale, rel)
                    indefinite += bool(mp.mpf(s) > lmin and scale == 0)
    assert indefinite > 0  # the test reaches the regime where the radius matters


def test_final_square_root_is_a_lower_bound_exactly():
    """_sqrt_lower(s, c, e)^2 <= s - c - e in exact arithmetic, for random doubles including
    heavy cancellation (s within a few ulps of c + e)."""
    rng = np.random.default_rng(4)
    for _ in range(3000):
        s = float(np.ldexp(rng.uniform(0.5, 1.0), int(rng.integers(-60, 60))))
        c = s * float(rng.choice([rng.uniform(0, 0.5), 1 - rng.uniform(0, 1e-13)]))
        e = (s - c) * float(rng.uniform(0, 0.99))
        b = sigma._sqrt_lower(s, c, e)
        if b > 0:
            assert Fraction(b) ** 2 <= Fraction(s) - Fraction(c) - Fraction(e)


def test_fallback_certifies_what_the_gram_route_cannot():
    """cond 1e10: the Gram matrix is numerically singular, the fallback (C = A Y, no squared
    condition number) still proves a bound within 1e-3 of the truth."""
    A = _case(np.random.default_rng(9), 20, 6, 1e10)
    assert gram_sigma_lower_bound(A)[0] == 0.0
    bound, note = float_sigma_lower_bound(A)
    truth = _truth(A)
    assert truth * (1 - 1e-3) <= bound <= truth, note
    assert "Y ~ R^-1" in note


def test_the_bound_subtracts_the_gram_rounding_and_the_cholesky_radius(monkeypatch):
    """What gram_sigma_lower_bound passes to its final step: the shift s, a Cholesky radius
    at least the theorem's (exact rationals, from the diagonal actually factored) and a Gram
    rounding term at least the exact ||fl(A^T A) - A^T A||_F; and the bound is what that step
    returns."""
    seen = []
    real = sigma._sqrt_lower
    monkeypatch.setattr(sigma, "_sqrt_lower",
                        lambda s, c, e: seen.append((s, c, e)) or real(s, c, e))
    rng = np.random.default_rng(17)
    for cond in (1.0, 30.0, 1e3):
        A = _case(rng, 25, 4, cond)
        bound, note, _ = gram_sigma_lower_bound(A)
        assert bound > 0 and seen, note
        s, c, e = seen[-1]
        assert bound == real(s, c, e)
        S = scipy.linalg.blas.dsyrk(1.0, A.T, trans=0)
        exact = _exact_gram(A)
        err2 = sum((Fraction(S[min(i, j), max(i, j)]) - exact[i][j]) ** 2
                   for i in range(4) for j in range(4))
        assert Fraction(e) ** 2 >= err2 and err2 > 0
        diag = np.diagonal(S) - s
        assert Fraction(c) >= _exact_chol_radius(diag, 4)


def test_cholesky_radius_at_large_order_is_at_least_the_theorem():
    """At n = 1000 the factor 1 / (1 - gamma_(n+1)) of Higham's rho (about 1 + n u) exceeds
    the few-u margins of the float evaluation: the returned radius must still cover the
    theorem's value, computed exactly."""
    rng = np.random.default_rng(23)
    n = 1000
    B = rng.normal(size=(n, n)) / np.sqrt(n)
    S = np.asfortranarray(np.triu(B.T @ B + np.diag(rng.uniform(1.0, 100.0, size=n))))
    for s in (0.5, 0.25):
        c = sigma._shifted_cholesky_bound(S, s)
        assert np.isfinite(c)
        assert Fraction(-c) >= _exact_chol_radius(np.diagonal(S) - s, n)


@pytest.mark.parametrize("n", [6, 80, 600])
def test_fallback_factor_is_the_gram_cholesky_after_the_shifted_ones_reused_its_memory(n):
    """After a successful Gram route (its shifted factorisations overwrite the first factor's
    memory), the factor handed to the fallback is still the Cholesky factor of fl(A^T A):
    R^T R equals the exact Gram matrix within the Gram and Cholesky rounding terms (exact
    rationals for n = 6; float64 products against the bound for n = 80 and 600, the blocked
    estimate's path), and the fallback's bound with it is the bound it computes from scratch,
    bit for bit, and below the truth. n = 80 runs the iteration (n > 64); n = 600 spans three
    column blocks of the Gram store's transposed copies (256 columns each)."""
    rng = np.random.default_rng(n)
    A = _case(rng, 2 * n + 3, n, 1e3)
    bound, _, factor = gram_sigma_lower_bound(A)
    assert bound > 0  # the route succeeded: the shifted factorisations ran
    R = factor()
    assert R is not None and np.array_equal(R, np.triu(R))
    G = scipy.linalg.blas.dsyrk(1.0, A.T, trans=0)
    fro_sq = float(np.sum(A * A))
    if n <= 6:
        exact = _exact_gram(A)
        RtR = [[sum(Fraction(R[k, i]) * Fraction(R[k, j]) for k in range(n)) for j in range(n)]
               for i in range(n)]
        err = max(abs(RtR[i][j] - exact[i][j]) for i in range(n) for j in range(n))
        limit = _gamma(A.shape[0]) * Fraction(fro_sq) * 2 + _gamma(n + 1) * 2 * Fraction(
            float(np.trace(G)))
        assert err <= limit
    else:
        # |R^T R - G| <= gamma_(n+1) |R^T| |R| (Higham Thm 10.3), evaluated with margin 2
        Ra = np.abs(R)
        assert np.all(np.abs(R.T @ R - np.triu(G) - np.triu(G, 1).T)
                      <= 2 * float(_gamma(n + 1)) * (Ra.T @ Ra) + 1e-300)
    with_factor = sigma.sigma_min_lower_bound(A, gram_factor=factor)[0]
    assert with_factor == sigma.sigma_min_lower_bound(A)[0]
    # the truth at 50 digits; for n = 80 (mpmath's SVD there takes seconds) LAPACK's value
    # raised by 1e-10: its absolute error is about n u sigma_max, 1e-11 of sigma_min at cond 1e3
    truth = _truth(A) if n <= 6 else scipy.linalg.svdvals(A).min() * (1 + 1e-10)
    assert 0 < with_factor <= truth


@pytest.mark.parametrize("n", [1, 5, 256, 257, 600])
def test_gram_store_keeps_the_gram_matrix_below_the_factors(n):
    """The Gram store (one n x n array for fl(A^T A) and its factorisations): after a Cholesky
    factorisation in place, restoring gives back G's upper triangle and diagonal bit for bit,
    its strict lower triangle holds G transposed throughout, its factor equals LAPACK's on a
    fresh copy of G, and the shifted factorisation's proved radius is the one computed on a
    separate copy (the certificate's numbers do not depend on the memory reuse). Sizes around
    the 256-column blocks of the copies."""
    rng = np.random.default_rng(n)
    A = rng.normal(size=(2 * n + 3, n))
    G = scipy.linalg.blas.dsyrk(1.0, A.T, trans=0)
    G0 = G.copy()
    store = sigma._GramStore(G)
    R = store.cholesky()
    ref, info = scipy.linalg.lapack.dpotrf(G0, lower=0, clean=1, overwrite_a=0)
    assert info == 0 and np.array_equal(np.triu(R), ref)
    low = np.tril_indices(n, -1)
    assert np.array_equal(store.X[low], G0.T[low])  # G kept below the factor
    X = store.upper()
    assert np.array_equal(np.triu(X), G0) and np.array_equal(X[low], G0.T[low])
    assert np.array_equal(store.factor(), ref)
    s = float(np.linalg.eigvalsh(G0, UPLO="U")[0]) * (1 - 2.0**-7)
    separate = sigma._shifted_cholesky_bound(G0, s)
    assert store.shifted_bound(s) == separate
    assert np.array_equal(np.triu(store.upper()), G0)
    assert store.shifted_bound(s) == separate  # again, after its factor overwrote G above
