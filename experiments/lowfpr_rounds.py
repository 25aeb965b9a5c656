"""32 rounds against today's 16, on real development names: is the federation's low-FPR
curve still rising where the defaults stop?

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-rounds [--tiny] [--out ROOT]
    python -m experiments.lowfpr_rounds --real-dev PATH [--tiny] [--out ROOT]

lowfpr-budget found rounds to be where the low-FPR gains were (TPR at FPR 1e-3 0.418, 0.454,
0.494 at 5, 8 and 16 rounds, constant rate) and never measured 32. Since then the local rate
falls on a cosine over the run, so 32 rounds also fall more slowly. This runs the defaults (16
rounds x 180 steps, mining on) and the same with `num-rounds = 32` on 3 run seeds no other
curve used, through lowfpr-budget's runner and tables. If 32 rounds do not move the operating
point beyond the seed noise, more of the same training is not what the targets lack.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes

NAME = "lowfpr-rounds"
TITLE = "32 rounds against 16, on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-rounds"

LONGER = (("num-rounds", 32),)
"""The arm against the defaults: twice the rounds, the same local work per round."""
SIZES = {
    **mining_arm_sizes((), LONGER, seeds=(24, 25, 26)),
    # The tiny size checks the logic in seconds: 3 rounds against 4.
    "tiny": mining_arm_sizes((), (("num-rounds", 4),), seeds=(0,))["tiny"],
}
ROUNDS_CURVE = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(
    ROUNDS_CURVE, module="experiments.lowfpr_rounds", doc=__doc__
)


if __name__ == "__main__":
    main()
