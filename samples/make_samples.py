"""Regenerate the bundled samples (deterministic): python samples/make_samples.py"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(2026)
    # 40 sequences of 16 tokens in R^4, generic: the condition holds
    np.savez(HERE / "tokens_injective.npz", tokens=rng.normal(size=(40, 16, 4)))

    # 30 sequences of varying length (padding by `lengths`), with two planted dependencies:
    # seq_translate = seq_base + t, and seq_perm = a token permutation of seq_other
    n, d = 12, 3
    lengths = rng.integers(6, n + 1, size=30)
    tokens = rng.normal(size=(30, n, d))
    names = [f"s{i:02d}" for i in range(30)]
    names[3], names[17] = "base", "translated"
    tokens[17] = tokens[3] + np.array([0.5, -1.0, 2.0])
    lengths[17] = lengths[3]
    names[8], names[25] = "other", "permuted"
    lengths[25] = lengths[8]
    perm = rng.permutation(lengths[8])
    tokens[25, : lengths[8]] = tokens[8, perm]
    np.savez(HERE / "tokens_dependent.npz", tokens=tokens, lengths=lengths, names=np.array(names))


if __name__ == "__main__":
    main()
