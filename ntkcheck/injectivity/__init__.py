"""The injectivity decision, one step per module, in data-flow order (SPEC §3, §3a, §7)."""
