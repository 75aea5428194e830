"""The targeted mutants of the decision modules (see run_mutants.py).

Each entry: path, an exact snippet ``old`` occurring once, its replacement ``new``, a label; and
``equivalent: True`` when the change cannot alter any result (stated why).
"""

A = "ntkcheck/analysis.py"
R = "ntkcheck/rank.py"
F = "ntkcheck/features.py"
G = "ntkcheck/injectivity/geometry.py"
V = "ntkcheck/injectivity/verify.py"
S = "ntkcheck/injectivity/screen.py"
C = "ntkcheck/injectivity/certify.py"


def m(path, old, new, label, equivalent=False):
    return {"path": path, "old": old, "new": new, "label": label, "equivalent": equivalent}


MUTANTS = [
    # ---- analysis.py: branches of the decision
    m(A, "if M < N + geom.rank + 1:", "if M < N + geom.rank:", "analysis: probe-count guard -1"),
    m(A, "    if fast is not None:\n", "    if False:\n", "analysis: certification skipped"),
    m(A, 'if cert["certified"]:', "if True:", "analysis: failed rigorous certificate accepted"),
    m(A, "        z = z + g @ geom.complement.T\n", "        pass\n",
      "analysis: no complement probes for hull-reduced data"),
    m(A, "make_probes(geom, M, scales, seed + 1)", "make_probes(geom, M, scales, seed)",
      "analysis: redraw with the same seed"),
    m(A, "if ratio.min() < GAP:", "if ratio.min() < GAP / 10:", "analysis: redraw gap / 10"),
    m(A, "if ratio.min() < GAP:", "if ratio.min() < GAP * 10:", "analysis: redraw gap x 10"),
    m(A, "    if grey:\n", "    if False:\n", "analysis: grey zone dropped"),
    m(A, "        if check.passed:\n", "        if check.passed is not False:\n",
      "analysis: unchecked relation accepted"),
    m(A, "        if check.passed:\n", "        if True:\n", "analysis: failed relation accepted"),
    m(A, "    if deps:\n        return result(NOT_INJECTIVE", "    if False:\n        return result(NOT_INJECTIVE",
      "analysis: partial verification branch dropped"),
    m(A, "tuple(float(-x) for x in t)", "tuple(float(x) for x in t)",
      "analysis: structural translate sign"),
    m(A, 'exact=c.evidence[pos] == "exact"', "exact=True", "analysis: numerical class called exact"),
    m(A, 'evidence="exact" if exact else "numerical",\n                   reason=reason',
      'evidence="exact",\n                   reason=reason', "analysis: evidence always exact"),
    m(A, "    if scr.reductions == 0:\n", "    if True:\n", "analysis: core reduction skipped"),
    # ---- rank.py
    m(R, "GAP = 100.0", "GAP = 1000.0", "rank: GAP x 10"),
    m(R, "GAP = 100.0", "GAP = 10.0", "rank: GAP / 10"),
    m(R, "        if sv[j] > tau[j]:\n", "        if sv[j] > 10 * tau[j]:\n",
      "rank: null test against 10 tau"),
    m(R, "        if sv[j] > tau[j]:\n", "        if sv[j] >= tau[j]:\n",
      "rank: null test >= (ties have probability 0)", equivalent=True),
    m(R, "return NOISE_SAFETY * (np.abs(vectors).T @ eta) + self._floor()",
      "return (np.abs(vectors).T @ eta) + self._floor()", "rank: vector noise without safety"),
    m(R, "self.triangle / beta[None, :]", "self.triangle * beta[None, :]",
      "rank: weighted certificate scaling inverted"),
    # ---- features.py
    m(F, "    base = az @ R.T + W + np.abs(F) + 1.0\n",
      "    base = (np.linalg.norm(az, axis=1)[:, None] * np.linalg.norm(R, axis=1)) + W + np.abs(F) + 1.0\n",
      "features: Cauchy-Schwarz |z| |y| instead of per-coordinate bound"),
    m(F, "SPREAD_BAND = 10.0", "SPREAD_BAND = 100.0", "features: spread band x 10"),
    m(F, "PROBES_PER_SCALE = 64", "PROBES_PER_SCALE = 32", "features: probes per scale / 2"),
    m(F, "    centred, centres = centred_each(dataset)\n    z = probes.z\n",
      "    centred, centres = dataset, np.zeros((len(dataset), dataset.dim))\n    z = probes.z\n",
      "features: per-distribution centring dropped"),
    m(F, "omega = 1.0 / probes.scale  # row weights", "omega = np.ones_like(probes.scale)",
      "features: row weights dropped"),
    m(F, "    affine = NOISE_SAFETY * typical >= nu\n",
      "    affine = np.zeros_like(nu, dtype=bool)\n",
      "features: affine-column zeroing dropped"),
    m(F, "bins = np.unique(np.round(-2.0 * np.log10(odd)) / 2.0)",
      "bins = np.unique(np.round(-np.log10(odd)))", "features: auto scales on whole decades"),
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
    m(G, "out[i0:i1] = np.sqrt(np.add.reduceat(dev, local) / wi)",
      "out[i0:i1] = np.add.reduceat(dev, local) / wi", "geometry: spread squared"),
    # ---- verify.py
    m(V, "threshold = 10.0 ** (-digits / 2)", "threshold = 10.0 ** (-digits / 4)",
      "verify: misfit threshold 1e-12.5"),
    m(V, "DATA_ROUNDING = 1.0", "DATA_ROUNDING = 10.0", "verify: data rounding x 10"),
    m(V, "                for pos, j in enumerate(others):\n                    cm[j] = sol[pos]\n",
      "                pass\n", "verify: no extended-precision refit"),
    m(V, "row.append(lp + lm - 2 * l0)", "row.append(lp + lm - l0)",
      "verify: second difference broken"),
    m(V, "    if misfit <= threshold:\n", "    if True:\n", "verify: every relation passes"),
    # ---- dense test: wide candidates, verified affine part, partial spectrum (rank.py)
    m("ntkcheck/analysis.py",
      "        if not check.passed and np.count_nonzero(row_wide) > np.count_nonzero(row):\n",
      "        if False:\n", "analysis: no wide-support retry"),
    m("ntkcheck/analysis.py",
      "            deps.append(replace(dep, constant=a, linear=tuple(float(x) for x in b),\n",
      "            deps.append(replace(dep,\n", "analysis: float affine part kept"),
    m("ntkcheck/analysis.py", "    basis = null_space_basis(V[:, V.shape[1] - k:])\n",
      "    basis = null_space_basis(V[:, :k])\n", "analysis: leading vectors as null space"),
    m("ntkcheck/analysis.py", "                                                and N > FULL_SPECTRUM_MAX_N)",
      "                                                and N > 10 * FULL_SPECTRUM_MAX_N)",
      "analysis: partial limit x 10"),
    # ---- tail levels, the cheaper redraw, the screen-only verdict, the memory guard
    m(R, "        m = int(np.sum(sv < GAP * bound))  # a suffix: sv is descending\n",
      "        m = int(np.sum(sv < bound))  # a suffix: sv is descending\n",
      "rank: tail vectors only below the bound (grey zone unseen)"),
    m(R, "        return float(NOISE_SAFETY * np.linalg.norm(eta) + self._floor())\n",
      "        return float(np.linalg.norm(eta) + self._floor())\n",
      "rank: level bound without NOISE_SAFETY"),
    m(A, "    if sv.shape[0] == spec.size or sv[0] >= GAP * spec.max_vector_noise():\n",
      "    if True:\n", "analysis: redraw's uncomputed values assumed clear"),
    m(A, "    if not failed and deps:\n", "    if not failed:\n",
      "analysis: not_injective without a relation"),
    m(A, "    except ResourceError as err:\n", "    except ZeroDivisionError as err:\n",
      "analysis: screen verdict lost when the core does not fit"),
    m(A, '        NOT_INJECTIVE, "exact" if exact else "numerical",\n            f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "',
      '        NOT_INJECTIVE, "exact",\n            f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "',
      "analysis: screen-only verdict always exact"),
    m(A, "        fit = int((limit - held - CERT_BYTES_PER_SQUARE * n * n - CERT_SCRATCH)\n",
      "        fit = int((limit - CERT_BYTES_PER_SQUARE * n * n - CERT_SCRATCH)\n",
      "analysis: certificate memory ignores what is held"),
    m(A, "CERT_BYTES_PER_ENTRY = 4 * 8", "CERT_BYTES_PER_ENTRY = 2 * 8",
      "analysis: certificate memory per entry halved"),
    m(C, "    e_c = float(_up(_gamma(n) * fro_a * fro_y + np.sqrt(float(M) * n) * n * 2 * _ETA, 4))\n",
      "    e_c = 0.0\n", "certify: rounding of C = A Y ignored"),
    m(C, "        if eta <= REFINE_ETA or refinement == 2:\n", "        if True:\n",
      "certify: no CholeskyQR2 refinement"),
    m("ntkcheck/rank.py", "    keep = np.abs(c) > ZERO_COEF_RTOL * np.abs(c).max()\n",
      "    keep = np.abs(c) > 0.0\n", "rank: round-off coefficients kept after verification"),
    # equivalent for what is printed and decided: values converge to 1e-9 instead of 1e-10
    # relative (reported to 3-6 digits; the values near the round-off level converge first)
    m("ntkcheck/rank.py", "PARTIAL_RTOL = 1e-10", "PARTIAL_RTOL = 1e-9",
      "rank: partial convergence tolerance x 10", equivalent=True),
    m("ntkcheck/rank.py", "    work = min(N, 2 * count)\n", "    work = count\n",
      "rank: partial spectrum without oversampling"),
    # ---- certify.py (rigorous certificate)
    m(C, "    lower = sig - radn\n", "    lower = sig\n", "certify: entry radii ignored (no Weyl)"),
    m(C, "LIBM_ULPS = 4", "LIBM_ULPS = 0", "certify: libm assumed exact"),
    m(C, "    if Mp < n_cols:\n", "    if Mp < 0:\n", "certify: too few rows accepted"),
    # ---- screen.py (structural screen)
    m(S, "ULPS = 4", "ULPS = 400", "screen: numerical match 100x wider"),
]
