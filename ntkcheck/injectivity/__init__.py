"""The injectivity decision, one step per module in data-flow order (SPEC §3, §7).

* :mod:`.screen`: exact structural screen (Diracs, duplicates, translates) and the core;
* :mod:`.factor`: streaming rank factorisation of tall matrices given as row blocks;
* :mod:`.estimate`: time and memory estimate of the streaming dense test.
"""
