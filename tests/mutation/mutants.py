"""The targeted mutants of the decision modules (see run_mutants.py).

Each entry: path, an exact snippet ``old`` occurring once, its replacement ``new``, a label; and
``equivalent: True`` when the change cannot alter any result (stated why).
"""

A = "ntkcheck/analysis.py"
D = "ntkcheck/injectivity/decide.py"
CB = "ntkcheck/injectivity/combine.py"
SP = "ntkcheck/injectivity/spectrum.py"
DP = "ntkcheck/injectivity/dependencies.py"
F = "ntkcheck/injectivity/features.py"
P = "ntkcheck/injectivity/probes.py"
PL = "ntkcheck/injectivity/plan.py"
SU = "ntkcheck/injectivity/summary.py"
G = "ntkcheck/injectivity/geometry.py"
V = "ntkcheck/injectivity/verify.py"
S = "ntkcheck/injectivity/screen.py"
C = "ntkcheck/injectivity/certify.py"
E = "ntkcheck/injectivity/enclosure.py"
RD = "ntkcheck/injectivity/rounding.py"
ST = "ntkcheck/injectivity/stream.py"


def m(path, old, new, label, equivalent=False):
    return {"path": path, "old": old, "new": new, "label": label, "equivalent": equivalent}


MUTANTS = [
    # ---- decide.py / combine.py: branches of the decision
    m(D, "if M < N + geom.rank + 1:", "if M < N + geom.rank:", "decide: probe-count guard -1"),
    m(D, "    if fast is not None:\n", "    if False:\n", "decide: certification skipped"),
    m(D, 'if cert["certified"]:', "if True:", "decide: failed rigorous certificate accepted"),
    m(C, "        z = z + g @ geom.complement.T\n", "        pass\n",
      "certify: no complement probes for hull-reduced data"),
    m(D, "make_probes(geom, M, scales, seed + 1)", "make_probes(geom, M, scales, seed)",
      "decide: redraw with the same seed"),
    m(D, "if ratio.min() < GAP:", "if ratio.min() < GAP / 10:", "decide: redraw gap / 10"),
    m(D, "if ratio.min() < GAP:", "if ratio.min() < GAP * 10:", "decide: redraw gap x 10"),
    m(D, "    if grey:\n", "    if False:\n", "decide: grey zone dropped"),
    m(D, "        if check.passed:\n", "        if check.passed is not False:\n",
      "decide: unchecked relation accepted"),
    m(D, "        if check.passed:\n", "        if True:\n", "decide: failed relation accepted"),
    m(D, "        if deps:\n            return decision(NOT_INJECTIVE, \"numerical\",\n                            f\"{k} singular",
      "        if False:\n            return decision(NOT_INJECTIVE, \"numerical\",\n                            f\"{k} singular",
      "decide: relations beside a grey value dropped"),
    m(D, "    if deps:\n        return decision(NOT_INJECTIVE", "    if False:\n        return decision(NOT_INJECTIVE",
      "decide: partial verification branch dropped"),
    m(DP, "tuple(float(-x) for x in t)", "tuple(float(x) for x in t)",
      "dependencies: structural translate sign"),
    m(DP, 'exact=c.evidence[pos] == "exact"', "exact=True", "dependencies: numerical class called exact"),
    m(CB, 'evidence="exact" if scr.exact_reductions > 0 else "numerical", reason=reason,',
      'evidence="exact", reason=reason,', "combine: evidence always exact"),
    m(A, "    if scr.reductions == 0:\n", "    if True:\n", "analysis: core reduction skipped"),
    # ---- spectrum.py, dependencies.py
    m(SP, "GAP = 100.0", "GAP = 1000.0", "spectrum: GAP x 10"),
    m(SP, "GAP = 100.0", "GAP = 10.0", "spectrum: GAP / 10"),
    m(SP, "        if sv[j] > tau[j]:\n", "        if sv[j] > 10 * tau[j]:\n",
      "spectrum: null test against 10 tau"),
    m(SP, "        if sv[j] > tau[j]:\n", "        if sv[j] >= tau[j]:\n",
      "spectrum: null test >= (ties have probability 0)", equivalent=True),
    m(SP, "return NOISE_SAFETY * (np.abs(vectors).T @ eta) + self._floor()",
      "return (np.abs(vectors).T @ eta) + self._floor()", "spectrum: vector noise without safety"),
    m(SP, "self.triangle / beta[None, :]", "self.triangle * beta[None, :]",
      "spectrum: weighted certificate scaling inverted"),
    # ---- probes.py, features.py
    m(F, "    base = az @ R.T + W + np.abs(F) + 1.0\n",
      "    base = (np.linalg.norm(az, axis=1)[:, None] * np.linalg.norm(R, axis=1)) + W + np.abs(F) + 1.0\n",
      "features: Cauchy-Schwarz |z| |y| instead of per-coordinate bound"),
    m(P, "SPREAD_BAND = 10.0", "SPREAD_BAND = 100.0", "probes: spread band x 10"),
    m(P, "PROBES_PER_SCALE = 64", "PROBES_PER_SCALE = 32", "probes: probes per scale / 2"),
    m(F, "    centred, centres = centred_each(dataset)\n    z = probes.z\n",
      "    centred, centres = dataset, np.zeros((len(dataset), dataset.dim))\n    z = probes.z\n",
      "features: per-distribution centring dropped"),
    m(F, "omega = 1.0 / probes.scale  # row weights", "omega = np.ones_like(probes.scale)",
      "features: row weights dropped"),
    m(F, "    affine = NOISE_SAFETY * typical >= nu\n",
      "    affine = np.zeros_like(nu, dtype=bool)\n",
      "features: affine-column zeroing dropped"),
    m(P, "bins = np.unique(np.round(-2.0 * np.log10(odd)) / 2.0)",
      "bins = np.unique(np.round(-np.log10(odd)))", "probes: auto scales on whole decades"),
    # ---- geometry.py
    m(G, "    eq /= scaling  # exact: division by powers of two (in place: no second P x d array)\n",
      "    pass\n", "geometry: no equilibration"),
    m(G, "level = NOISE_SAFETY * (np.abs(Vt) @ eps + floor)", "level = (np.abs(Vt) @ eps + floor)",
      "geometry: hull level without safety"),
    m(G, "eps = (3.0 + np.log2(max(P, 2))) * _U", "eps = 3.0 * _U", "geometry: centring error term"),
    m(G, "level = NOISE_SAFETY * (np.abs(Vt) @ eps + floor)",
      "level = NOISE_SAFETY * (np.sqrt(np.sum(eps**2)) + floor) + 0 * Vt[:, 0]",
      "geometry: global instead of per-direction hull level"),
    m(G, "    white = V / sv[:r] if whiten else V\n", "    white = V\n", "geometry: no whitening"),
    m(G, "    rms = top * np.sqrt(np.add.reduceat(w * norm ** 2, local) / wi)\n",
      "    rms = top * np.add.reduceat(w * norm ** 2, local) / wi\n", "geometry: spread squared"),
    # ---- verify.py
    m(V, "threshold = 10.0 ** (-digits / 2)", "threshold = 10.0 ** (-digits / 4)",
      "verify: misfit threshold 1e-12.5"),
    m(V, "DATA_ROUNDING = 1.0", "DATA_ROUNDING = 10.0", "verify: data rounding x 10"),
    m(V, "                for pos, j in enumerate(others):\n                    cm[j] = sol[pos]\n",
      "                pass\n", "verify: no extended-precision refit"),
    m(V, "row.append(lp + lm - 2 * l0)", "row.append(lp + lm - l0)",
      "verify: second difference broken"),
    m(V, "    if misfit <= threshold:\n", "    if True:\n", "verify: every relation passes"),
    # ---- what an inconclusive reason names about extreme spreads (decide.py, geometry.py)
    m(D, "SPREAD_RATIO_NOTE = 1.0 / np.sqrt(np.finfo(float).eps / 2)",
      "SPREAD_RATIO_NOTE = 1.0 / np.sqrt(np.finfo(float).eps)", "decide: spread-ratio note at 1/sqrt(eps)"),
    m(D, "    if thinness < 1.0 / SPREAD_BAND:\n", "    if thinness < 1.0 / SPREAD_BAND ** 2:\n",
      "decide: thin-direction note at 1/band^2"),
    m(D, "THINNEST_RESOLVED = 1e-8", "THINNEST_RESOLVED = 1e-9", "decide: thickness floor 1e-9"),
    m(G, "    half = thin <= np.median(thin)\n", "    half = thin >= 0\n",
      "geometry: thinnest direction without the refit on the thinner half"),
    m(D, "REPEAT_RTOL = np.sqrt(np.finfo(float).eps / 2)", "REPEAT_RTOL = 1e-10",
      "decide: repeated-relation tolerance 1e-10"),
    m(D, "REPEAT_RTOL = np.sqrt(np.finfo(float).eps / 2)", "REPEAT_RTOL = 1e-6",
      "decide: repeated-relation tolerance 1e-6"),
    m(D, "            if _repeats(dep.coefficients, deps, index):\n",
      "            if False:\n", "decide: a repeated relation printed again"),
    # ---- dense test: wide candidates, verified affine part, partial spectrum (decide.py, plan.py)
    m(D,
      "        if not check.passed and np.count_nonzero(row_wide) > np.count_nonzero(row):\n",
      "        if False:\n", "decide: no wide-support retry"),
    m(D,
      "            deps.append(replace(dep, constant=a, linear=tuple(float(x) for x in b),\n",
      "            deps.append(replace(dep,\n", "decide: float affine part kept"),
    m(D, "    deps, failed = candidate_relations(V[:, V.shape[1] - k:], len(sv), feats, dataset, geom, seed)",
      "    deps, failed = candidate_relations(V[:, :k], len(sv), feats, dataset, geom, seed)",
      "decide: leading vectors as null space"),
    m(PL, "                                                and N > FULL_SPECTRUM_MAX_N)",
      "                                                and N > 10 * FULL_SPECTRUM_MAX_N)",
      "plan: partial limit x 10"),
    # ---- tail levels, the cheaper redraw, the screen-only verdict, the memory guard
    m(SP, "        m = int(np.sum(sv < GAP * bound))  # a suffix: sv is descending\n",
      "        m = int(np.sum(sv < bound))  # a suffix: sv is descending\n",
      "spectrum: tail vectors only below the bound (grey zone unseen)"),
    m(SP, "        return float(NOISE_SAFETY * np.linalg.norm(eta) + self._floor())\n",
      "        return float(np.linalg.norm(eta) + self._floor())\n",
      "spectrum: level bound without NOISE_SAFETY"),
    m(D, "    if sv.shape[0] == spec.size or sv[0] >= GAP * spec.max_vector_noise():\n",
      "    if True:\n", "decide: redraw's uncomputed values assumed clear"),
    m(D, "    if not failed and deps:\n", "    if not failed:\n",
      "decide: not_injective without a relation"),
    m(A, "    except ResourceError as err:\n", "    except ZeroDivisionError as err:\n",
      "analysis: screen verdict lost when the core does not fit"),
    m(CB, '        NOT_INJECTIVE, "exact" if scr.exact_reductions > 0 else "numerical",\n        f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "',
      '        NOT_INJECTIVE, "exact",\n        f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "',
      "combine: screen-only verdict always exact"),
    m(C, "        fit = int((limit - held - CERT_BYTES_PER_SQUARE * n * n - SCRATCH_BYTES)\n",
      "        fit = int((limit - CERT_BYTES_PER_SQUARE * n * n - SCRATCH_BYTES)\n",
      "certify: certificate memory ignores what is held"),
    m(C, "CERT_BYTES_PER_ENTRY = 4 * 8", "CERT_BYTES_PER_ENTRY = 2 * 8",
      "certify: certificate memory per entry halved"),
    m(C, "    e_c = float(_up(_gamma(n) * fro_a * fro_y + np.sqrt(float(M) * n) * n * 2 * _ETA, 4))\n",
      "    e_c = 0.0\n", "certify: rounding of C = A Y ignored"),
    m(C, "        if eta <= REFINE_ETA or refinement == 2:\n", "        if True:\n",
      "certify: no CholeskyQR2 refinement"),
    m(DP, "    keep = np.abs(c) > ZERO_COEF_RTOL * np.abs(c).max()\n",
      "    keep = np.abs(c) > 0.0\n", "dependencies: round-off coefficients kept after verification"),
    # equivalent for what is printed and decided: values converge to 1e-9 instead of 1e-10
    # relative (reported to 3-6 digits; the values near the round-off level converge first)
    m(SP, "PARTIAL_RTOL = 1e-10", "PARTIAL_RTOL = 1e-9",
      "spectrum: partial convergence tolerance x 10", equivalent=True),
    m(SP, "    work = min(N, 2 * count)\n", "    work = count\n",
      "spectrum: partial spectrum without oversampling"),
    # ---- certify.py (rigorous certificate)
    m(C, "    lower = sig - radn\n", "    lower = sig\n", "certify: entry radii ignored (no Weyl)"),
    m(RD, "LIBM_ULPS = 4", "LIBM_ULPS = 0", "rounding: libm assumed exact"),
    m(C, "    if Mp < n_cols:\n", "    if Mp < 0:\n", "certify: too few rows accepted"),
    # ---- screen.py (structural screen)
    m(S, "ULPS = 4", "ULPS = 400", "screen: numerical match 100x wider"),
    # ---- the certificate encloses the laws as written (normalised weights, rounded inputs)
    m(E, "def _with_written_radius(rad: np.ndarray, dists, z, centres) -> np.ndarray:\n",
      "def _with_written_radius(rad: np.ndarray, dists, z, centres) -> np.ndarray:\n    return rad\n",
      "enclosure: written-value radius dropped"),
    # ---- issue 19: written values, stored weights, extreme spreads (labels start "issue19")
    m(G, "level = NOISE_SAFETY * (np.abs(Vt) @ eps + floor)",
      "level = NOISE_SAFETY * (Vt @ eps + floor)",
      "issue19 geometry: centring-error magnitude without abs"),
    m(G, "    ref = lo / 2 + hi / 2", "    ref = np.zeros(d)",
      "issue19 geometry: centring error relative to the offset (no reference point)"),
    m(G, "    diff = rows[local][owner]\n", "    diff = np.broadcast_to(rows.mean(axis=0), rows.shape).copy()\n",
      "issue19 geometry: spreads centred at the pooled mean"),
    m(G, "    return np.maximum(rms, floor)\n", "    return rms\n",
      "issue19 geometry: no spread floor for skewed weights"),
    m(G, "    spreads = np.where(tight, MIN_PROBE_SPREAD, own)\n", "    spreads = own\n",
      "issue19 geometry: spreads not held for the probe law"),
    m(V, "        if not (theirs > 0) or max(rho / theirs, theirs / rho) > SPREAD_AGREEMENT:\n",
      "        if False:\n", "issue19 verify: the test's spreads trusted"),
    m(V, "    if written:\n        law = _written_law(dist)\n",
      "    if False:\n        law = _written_law(dist)\n",
      "issue19 verify: re-check on the doubles, not the written values"),
    m(V, "        if m2 <= threshold:\n", "        if False:\n",
      "issue19 verify: no input_rounding level"),
    m(V, "                     if np.isfinite(data_ratio) else", "                     if True else",
      "issue19 verify: infx"),
    m(S, '    if raw is None or "weights" in dist.rounded_inputs:\n        return w\n',
      "    if True:\n        return w\n", "issue19 screen: normalised weights compared"),
    m(S, "    bad_num = ~(np.all(fdev, axis=1) & wdev)\n", "    bad_num = ~np.all(fdev, axis=1)\n",
      "issue19 screen: numerical match ignoring weights"),
    m(S, "    if rounded:\n        diracs, classes = as_written",
      "    if False:\n        diracs, classes = as_written",
      "issue19 screen: findings not re-checked on the written values"),
    m(CB, '        NOT_INJECTIVE, "exact" if scr.exact_reductions else "numerical",\n',
      '        NOT_INJECTIVE, "exact",\n',
      "issue19 combine: all screened out, evidence exact from a numerical match"),
    m("ntkcheck/io/tokens.py", "        if self.raw_weights is None:\n            dists",
      "        if True:\n            dists", "issue19 tokens: stored weights dropped"),
    m("ntkcheck/distributions.py",
      '            object.__setattr__(self, "rational", {**self.rational, "weights": raw})\n',
      "            pass\n", "issue19 distributions: exact atoms paired with uniform weights"),
]
