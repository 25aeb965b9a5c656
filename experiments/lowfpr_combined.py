"""The product's defaults with the training knobs that helped one at a time, together, on real
development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-combined [--tiny] [--out ROOT]
    python -m experiments.lowfpr_combined --real-dev PATH [--tiny] [--out ROOT]

Each knob of lowfpr-budget, lowfpr-momentum, lowfpr-families and lowfpr-decay was measured
against the defaults of its day. Knobs interact: server momentum amplifies the mean step that
a falling local rate shrinks. This runs today's defaults (16 rounds x 180 steps, mining on, the
local rate falling to a tenth) alone and with server momentum at the best pair measured
(0.7, 0.9), 3 run seeds no other curve used, through lowfpr-budget's runner and tables.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes

NAME = "lowfpr-combined"
TITLE = "Today's defaults with server momentum on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-combined"
MOMENTUM = (("server-momentum", 0.7), ("server-learning-rate", 0.9))

SIZES = mining_arm_sizes((), MOMENTUM, seeds=(9, 10, 11))
COMBINED = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(COMBINED, module="experiments.lowfpr_combined", doc=__doc__)


if __name__ == "__main__":
    main()
