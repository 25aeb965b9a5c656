"""Where the falling local learning rate starts and ends, against low-FPR detection on real
development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-rate [--tiny] [--out ROOT]
    python -m experiments.lowfpr_rate --real-dev PATH [--tiny] [--out ROOT]

lowfpr-decay measured one schedule only: the default rate (3e-3) falling on a cosine to a
tenth of it. Two questions it left: does the model keep improving when the rate ends lower
(a thirtieth: `learning-rate-final = 0.03`), and does a faster start with the same end rate
(6e-3 falling to 3e-4: `learning-rate = 0.006`, `learning-rate-final = 0.05`) buy the early
rounds more progress? This runs the product's defaults and both schedules (16 rounds x 180
steps, mining on), 3 run seeds no other curve used, through lowfpr-budget's runner and tables.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes

NAME = "lowfpr-rate"
TITLE = "Where the falling local rate starts and ends, on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-rate"
LOWER_END = (("learning-rate-final", 0.03),)
FASTER_START = (("learning-rate", 0.006), ("learning-rate-final", 0.05))


SIZES = mining_arm_sizes((), LOWER_END, FASTER_START, seeds=(12, 13, 14))
RATE = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(RATE, module="experiments.lowfpr_rate", doc=__doc__)


if __name__ == "__main__":
    main()
