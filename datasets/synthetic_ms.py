"""An MS-like synthetic electronic health record, for vertical (and horizontal) demos.

No real multiple-sclerosis records ship with ppxgb, so this module draws patients from a
small, documented generative model whose feature *types* follow the published
early-diagnosis work that motivates PPXGBoost: diagnostic history (another
neurological disease such as ADEM), epidemiology (age, gender, number of hospital
visits), laboratory findings (hyperlipidemia, hyperglycemia) and medication
reimbursements that only an insurer holds. The numbers are invented to be plausible,
not fitted to any cohort; ``docs/datasets.md`` gives the model and its sources.

The generative model, in order (one row per patient, all draws from ``seed``):

1. ``female ~ Bernoulli(0.52)``, ``age ~ Normal(45, 15)`` clipped to 18..85 and rounded;
   a latent serum vitamin D level ``vitd ~ Normal(28, 9)`` ng/mL, clipped to 4..80.
2. MS status: ``logit P(ms) = b0 + 0.9*female - 0.9*((age-35)/15)**2 - 0.05*(vitd-28)``,
   with ``b0`` solved by bisection so that the mean probability equals ``prevalence``
   (female excess, onset peaking in the thirties, low vitamin D as a risk factor).
3. Prodromal diagnoses, given MS or not: ADEM 4% vs 0.3%, optic neuritis 20% vs 1%,
   paresthesia / sensory disturbance 35% vs 8%.
4. Hospital visits over two years: negative binomial (dispersion 2) with mean
   ``exp(1.0 + 0.012*(age-45) + 0.2*female + 0.4*ms + 0.6*(any prodromal diagnosis))``.
5. Labs, each ordered with probability ``1 - exp(-0.35*(visits+1))`` (vitamin D also
   more often when a neurological diagnosis was coded) and NaN when not ordered:
   LDL ~ Normal(112 + 0.6*(age-45) + 6*ms, 30) mg/dL, fasting glucose lognormal around
   ``92 + 0.45*(age-45) + 3*ms`` mg/dL; ``hyperlipidemia = LDL >= 160`` and
   ``hyperglycemia = glucose >= 126`` (NaN when the lab was not ordered); the measured
   vitamin D is the latent level plus Normal(0, 3) assay noise.
6. Insurer claims over two years: corticosteroid prescriptions
   ``Poisson(0.15 + 0.5*ms + 0.7*optic neuritis + 0.4*ADEM)``, neuropathic-pain
   prescriptions ``Poisson(0.10 + 0.3*ms + 0.4*paresthesia)``, and the total amount
   reimbursed for medication (EUR): a Gamma baseline growing with age plus a Gamma cost
   per claim.

Everything except ``patient_id`` is float64 with NaN for "not measured", ready for
xgboost; ``ms`` (0.0/1.0) is the label.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from ppxgb.errors import ParameterError

#: Every column of ``make_ms_ehr``'s frame, in order, with its meaning.
MS_COLUMNS: dict[str, str] = {
    "patient_id": "pseudonymous patient identifier shared by clinic, lab and insurer (str)",
    "age": "age in years at the index date (epidemiologic)",
    "female": "gender, 1 = female, 0 = male (epidemiologic)",
    "n_visits": "hospital visits in the two years before the index date (epidemiologic)",
    "dx_adem": "prior diagnosis of acute disseminated encephalomyelitis, 0/1 (diagnostic)",
    "dx_optic_neuritis": "prior diagnosis of optic neuritis, 0/1 (diagnostic)",
    "dx_paresthesia": "prior code for paresthesia or another sensory disturbance, 0/1 (diagnostic)",
    "ldl_cholesterol": "LDL cholesterol, mg/dL; NaN if not ordered (laboratory)",
    "fasting_glucose": "fasting plasma glucose, mg/dL; NaN if not ordered (laboratory)",
    "hyperlipidemia": "LDL >= 160 mg/dL, 0/1; NaN if not ordered (laboratory)",
    "hyperglycemia": "fasting glucose >= 126 mg/dL, 0/1; NaN if not ordered (laboratory)",
    "vitamin_d": "serum 25-hydroxy vitamin D, ng/mL; NaN if not ordered (laboratory)",
    "steroid_claims": "reimbursed corticosteroid prescriptions in two years (insurer)",
    "neuropathic_claims": "reimbursed neuropathic-pain prescriptions in two years (insurer)",
    "med_reimbursed_eur": "total medication reimbursement in two years, EUR (insurer)",
    "ms": "label: multiple sclerosis diagnosed after the index date, 0/1",
}

#: Default vertical layout: who holds which columns. The label stays with the clinic.
MS_BLOCKS: dict[str, list[str]] = {
    "clinic": ["age", "female", "n_visits", "dx_adem", "dx_optic_neuritis", "dx_paresthesia", "ms"],
    "lab": ["ldl_cholesterol", "fasting_glucose", "hyperlipidemia", "hyperglycemia", "vitamin_d"],
    "insurer": ["steroid_claims", "neuropathic_claims", "med_reimbursed_eur"],
}

MS_LABEL = "ms"
MS_ID = "patient_id"


def _solve_intercept(eta: np.ndarray, prevalence: float) -> float:
    """b0 such that mean(sigmoid(b0 + eta)) == prevalence (monotone, so bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(mid + eta)))) < prevalence:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def make_ms_ehr(n_patients: int = 5000, seed: int = 0, prevalence: float = 0.1) -> pd.DataFrame:
    """Draw ``n_patients`` synthetic MS-like EHR rows (columns: ``MS_COLUMNS``).

    The same ``seed`` always gives the same frame. ``prevalence`` is the expected
    share of MS cases (an enriched, case-control-like cohort; the population rate
    is far lower).
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, numbers.Integral) or n_patients < 10:
        raise ParameterError.bad("n_patients", "an int >= 10", n_patients)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError.bad("seed", "a non-negative int", seed)
    if isinstance(prevalence, bool) or not isinstance(prevalence, numbers.Real) or not 0.0 < prevalence < 1.0:
        raise ParameterError.bad("prevalence", "a float strictly between 0 and 1", prevalence)
    n = int(n_patients)
    rng = np.random.default_rng(int(seed))

    # 1. epidemiology and a latent risk factor
    female = (rng.random(n) < 0.52).astype(float)
    age = np.round(np.clip(rng.normal(45.0, 15.0, n), 18, 85))
    vitd = np.clip(rng.normal(28.0, 9.0, n), 4.0, 80.0)

    # 2. MS status
    eta = 0.9 * female - 0.9 * ((age - 35.0) / 15.0) ** 2 - 0.05 * (vitd - 28.0)
    b0 = _solve_intercept(eta, float(prevalence))
    ms = (rng.random(n) < 1.0 / (1.0 + np.exp(-(b0 + eta)))).astype(float)
    is_ms = ms == 1.0

    # 3. prodromal diagnoses
    def bern(p_ms: float, p_no: float) -> np.ndarray:
        return (rng.random(n) < np.where(is_ms, p_ms, p_no)).astype(float)

    adem = bern(0.04, 0.003)
    optic = bern(0.20, 0.01)
    pares = bern(0.35, 0.08)
    any_dx = np.maximum.reduce([adem, optic, pares])

    # 4. healthcare use: negative binomial as a gamma-Poisson mixture, dispersion 2
    mu = np.exp(1.0 + 0.012 * (age - 45.0) + 0.2 * female + 0.4 * ms + 0.6 * any_dx)
    visits = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(float)

    # 5. laboratory
    p_lab = 1.0 - np.exp(-0.35 * (visits + 1.0))
    ldl_ordered = rng.random(n) < p_lab
    glu_ordered = rng.random(n) < p_lab
    vitd_ordered = rng.random(n) < np.clip(0.25 * p_lab + 0.45 * any_dx, 0.0, 1.0)
    ldl = np.clip(rng.normal(112.0 + 0.6 * (age - 45.0) + 6.0 * ms, 30.0), 30.0, 320.0)
    glu = (92.0 + 0.45 * (age - 45.0) + 3.0 * ms) * np.exp(rng.normal(0.0, 0.15, n))
    vitd_measured = np.clip(vitd + rng.normal(0.0, 3.0, n), 3.0, 100.0)
    ldl = np.where(ldl_ordered, np.round(ldl), np.nan)
    glu = np.where(glu_ordered, np.round(glu), np.nan)
    hyperlip = np.where(ldl_ordered, (ldl >= 160.0).astype(float), np.nan)
    hyperglyc = np.where(glu_ordered, (glu >= 126.0).astype(float), np.nan)
    vitd_col = np.where(vitd_ordered, np.round(vitd_measured, 1), np.nan)

    # 6. insurer
    steroid = rng.poisson(0.15 + 0.5 * ms + 0.7 * optic + 0.4 * adem).astype(float)
    neuro = rng.poisson(0.10 + 0.3 * ms + 0.4 * pares).astype(float)
    baseline = rng.gamma(2.0, 60.0 + 4.0 * (age - 18.0))
    per_claim = rng.gamma(3.0, 40.0, n) * (steroid + neuro)
    reimbursed = np.round(baseline + per_claim, 2)

    ids = np.array([f"P{i:07d}" for i in rng.permutation(n) + 1], dtype=object)
    frame = pd.DataFrame({
        "patient_id": ids, "age": age, "female": female, "n_visits": visits,
        "dx_adem": adem, "dx_optic_neuritis": optic, "dx_paresthesia": pares,
        "ldl_cholesterol": ldl, "fasting_glucose": glu, "hyperlipidemia": hyperlip,
        "hyperglycemia": hyperglyc, "vitamin_d": vitd_col, "steroid_claims": steroid,
        "neuropathic_claims": neuro, "med_reimbursed_eur": reimbursed, "ms": ms,
    })
    return frame[list(MS_COLUMNS)]
