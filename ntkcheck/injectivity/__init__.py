"""The injectivity decision, one step per module in data-flow order (SPEC §3, §3a, §4, §7).

* :mod:`.findings`: the records of the structural screen (Dirac masses, classes, the core);
* :mod:`.screen`: exact structural screen: Diracs, duplicates, translates -> the core (§7);
* :mod:`.geometry`: equilibration, affine hull and whitening, unit-invariant (§3a);
* :mod:`.probes`: the probe law and its scales (§3 steps 1-2);
* :mod:`.features`: the LSE feature matrix modulo affine functions, per-column errors (§3 step 3);
* :mod:`.factor`: streaming rank factorisation of tall matrices given as row blocks (TSQR,
  CholeskyQR2);
* :mod:`.stream`: the feature matrix folded block by block by a backend (bounded memory);
* :mod:`.spectrum`: singular values and their round-off levels, full or partial (§3 steps 4-6);
* :mod:`.dependencies`: the null space, fitted relations by name, the screen's relations;
* :mod:`.verify`: every relation re-checked in extended precision at fresh points (§3a);
* :mod:`.rounding`: directed error bounds of float64 evaluations;
* :mod:`.enclosure`: interval enclosures of every feature entry, per family;
* :mod:`.certify`: the rigorous lower bound on sigma_min behind ``certified``;
* :mod:`.estimate`: time and memory estimate of the dense test;
* :mod:`.plan`: how the dense test runs (in memory or streamed, backend, spectrum, memory);
* :mod:`.pairs`: near pairs of unit columns and their sets, in bounded memory;
* :mod:`.summary`: Gram spectrum, near-dependency scores, near pairs and sets (§5);
* :mod:`.decide`: the dense test's verdict from its evidence;
* :mod:`.combine`: the screen's relations and the exact test (§4) merged into the verdict.

:mod:`ntkcheck.analysis` calls them in this order and assembles the result.
"""
