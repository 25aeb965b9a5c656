"""Hard families (and server momentum, measured again) against low-FPR detection on real
development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-families [--tiny] [--out ROOT]
    python -m experiments.lowfpr_families --real-dev PATH [--tiny] [--out ROOT]

At the product's defaults 16 of the 33 real families stay below 0.5 recall at FPR 1e-3 under
SecAgg+ (lowfpr's table). They are not rare here (the development set caps every family at
3,000 names and most hold that many): they are the families the model misses. `hard-families`
sends a share of each site's positive draws to the families the incoming model misses on the
site's own training names (common.training.missed_family_probabilities; Sagawa et al. 2020's
group reweighting, judged at the operating point that matters). This experiment runs the
product's defaults with it off and at 0.5, each with server momentum off and at the best pair
of lowfpr-momentum (0.7, 0.9), 3 run seeds other than that experiment's, so the momentum
arm is a second, independent measurement. Same runner and tables as lowfpr-budget.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Budget, Curve, _mining, curve_entry_points

NAME = "lowfpr-families"
TITLE = "Hard families and server momentum against low-FPR detection on real development names"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-families"
MOMENTUM = (("server-momentum", 0.7), ("server-learning-rate", 0.9))
HARD_FAMILIES = ("hard-families", 0.5)

SIZES = {
    "tiny": Budget(
        rounds=3,
        batch=32,
        arms=(_mining(6, 32), _mining(6, 32, HARD_FAMILIES)),
        seeds=(0, 1),
        shape="tiny",
    ),
    "default": Budget(
        rounds=16,
        batch=128,
        arms=(
            _mining(180, 128),
            _mining(180, 128, HARD_FAMILIES),
            _mining(180, 128, *MOMENTUM),
            _mining(180, 128, HARD_FAMILIES, *MOMENTUM),
        ),
        seeds=(3, 4, 5),
        shape="default",
    ),
}
SIZES["full"] = SIZES["default"]
FAMILIES = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(FAMILIES, module="experiments.lowfpr_families", doc=__doc__)


if __name__ == "__main__":
    main()
