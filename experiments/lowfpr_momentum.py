"""Server momentum (FedAvgM) against low-FPR detection on real development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-momentum [--tiny] [--out ROOT]
    python -m experiments.lowfpr_momentum --real-dev PATH [--tiny] [--out ROOT]

The lowfpr-budget curve showed that rounds, not local steps, buy low-FPR recall under the
by-family split: 5, 8 and 16 rounds are seed ranges apart, while 540 local steps per round do
no better than 180 (site drift). Server momentum is the standard lever for that case (Hsu, Qi
and Brown 2019): the coordinator carries a velocity across rounds, so the directions the sites
agree on add up while their drift averages out. This experiment runs the product's defaults
(16 rounds x 180 steps, mining on) with momentum off and at a few (momentum, server learning
rate) pairs, 3 run seeds each, through lowfpr-budget's own runner and tables, so its figures
read the same way.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Budget, Curve, _mining, curve_entry_points

NAME = "lowfpr-momentum"
TITLE = "Server momentum (FedAvgM) against low-FPR detection on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-momentum"


def _momentum(steps: int, batch: int, beta: float, eta: float):
    return _mining(steps, batch, ("server-momentum", beta), ("server-learning-rate", eta))


SIZES = {
    "tiny": Budget(
        rounds=3,
        batch=32,
        arms=(_mining(6, 32), _momentum(6, 32, 0.5, 1.0)),
        seeds=(0, 1),
        shape="tiny",
    ),
    # The product's defaults (16 rounds x 180 steps x batch 128, mining on) with momentum off,
    # then three settings of the paper's two knobs: its "effective learning rate"
    # eta / (1 - beta) at 1 (the same mean step, smoothed over ~10 rounds), 2 and 3.
    "default": Budget(
        rounds=16,
        batch=128,
        arms=(
            _mining(180, 128),
            _momentum(180, 128, 0.9, 0.1),
            _momentum(180, 128, 0.5, 1.0),
            _momentum(180, 128, 0.7, 0.9),
        ),
        seeds=(0, 1, 2),
        shape="default",
    ),
}
SIZES["full"] = SIZES["default"]
MOMENTUM = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(MOMENTUM, module="experiments.lowfpr_momentum", doc=__doc__)


if __name__ == "__main__":
    main()
