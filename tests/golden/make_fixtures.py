"""Regenerate the golden fixtures (deterministic): python tests/golden/make_fixtures.py

Small datasets chosen to walk every branch of the decision pipeline once: dependent (dense
convolution, exact), injective (certified), structurally screened (duplicates, translates, Diracs),
a grey-zone near-duplicate (inconclusive), specs of each family, plus the options that change the
path (partial spectrum, streaming, --fail-below, --no-whiten, --exact never)."""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures"


def _ragged(X: list[np.ndarray], d: int) -> dict:
    n = max(len(x) for x in X)
    tokens = np.zeros((len(X), n, d))
    for i, x in enumerate(X):
        tokens[i, : len(x)] = x
    return {"tokens": tokens, "lengths": np.array([len(x) for x in X])}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    rng = np.random.default_rng(18)
    d = 3
    # a convolution c = a * b among generic laws on a 1/64 grid (sums exact in binary64)
    X = [rng.integers(-128, 128, (int(rng.integers(2, 5)), d)) / 64.0 for _ in range(20)]
    X.append((X[0][:, None, :] + X[1][None, :, :]).reshape(-1, d))
    np.savez(HERE / "convolution.npz", **_ragged(X, d))
    # generic Gaussian tokens, certified injective
    np.savez(HERE / "gaussian.npz", tokens=rng.normal(size=(24, 8, 3)))
    # structural screen: a duplicate, a permuted duplicate, a translate, a Dirac, plus generic
    T = rng.normal(size=(16, 6, 2))
    T[5] = T[2][rng.permutation(6)]
    T[7] = T[3] + np.array([1.0, -0.5])
    T[9] = T[1]
    T[11] = np.array([0.25, 0.75])
    names = np.array([f"q{i:02d}" for i in range(16)])
    np.savez(HERE / "screened.npz", tokens=T, names=names)
    # grey zone: a pair differing by 1e-10 noise
    G = rng.normal(size=(12, 5, 2))
    G[4] = G[3] + 1e-10 * rng.normal(size=(5, 2))
    np.savez(HERE / "grey.npz", tokens=G)
    # weighted tokens
    W = rng.random(size=(14, 5))
    np.savez(HERE / "weighted.npz", tokens=rng.normal(size=(14, 5, 2)), weights=W)
    # larger injective set for the partial spectrum and the streamed test
    np.savez(HERE / "wide.npz", tokens=rng.normal(size=(48, 10, 4)))
    (HERE / "gaussians.toml").write_text(
        '# G3 = G1 + G2 in covariance (same mean): LSE[G3] = LSE[G1] + LSE[G2] - <m, z>\n'
        '[[distribution]]\nname = "G1"\nkind = "gaussian_mixture"\nweights = [1]\n'
        'means = [[0, 0]]\ncovariances = [[[1, 0], [0, "1/2"]]]\n\n'
        '[[distribution]]\nname = "G2"\nkind = "gaussian_mixture"\nweights = [1]\n'
        'means = [[0, 0]]\ncovariances = [[["1/2", 0], [0, 1]]]\n\n'
        '[[distribution]]\nname = "G3"\nkind = "gaussian_mixture"\nweights = [1]\n'
        'means = [[0, 0]]\ncovariances = [[["3/2", 0], [0, "3/2"]]]\n\n'
        '[[distribution]]\nname = "D"\nkind = "discrete"\natoms = [[0, 1], [2, -1], [1, 1]]\n'
        'weights = ["1/5", "2/5", "2/5"]\n')
    (HERE / "uniforms.toml").write_text(
        '[[distribution]]\nname = "u1"\nkind = "uniform"\nlow = [0, 0]\nhigh = [1, 2]\n\n'
        '[[distribution]]\nname = "u2"\nkind = "uniform"\nlow = [-1, 0]\nhigh = [1, "1/3"]\n\n'
        '[[distribution]]\nname = "d1"\nkind = "discrete"\natoms = [[0, 0], [1, 3], [2, 1]]\n')


if __name__ == "__main__":
    main()
