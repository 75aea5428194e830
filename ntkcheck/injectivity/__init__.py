"""The injectivity decision, one step per module in data-flow order (SPEC §3, §3a, §7).

* :mod:`.screen`: exact structural screen (Diracs, duplicates, translates) and the core;
* :mod:`.geometry`: equilibration, affine hull and whitening (unit-invariant);
* :mod:`.factor`: streaming rank factorisation of tall matrices given as row blocks;
* :mod:`.estimate`: time and memory estimate of the streaming dense test;
* :mod:`.verify`: every numerical relation re-checked in extended precision;
* :mod:`.certify`: rigorous lower bound on the smallest singular value.
"""
