"""The local rate ending at a thirtieth against today's tenth, measured a second time on real
development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-end [--tiny] [--out ROOT]
    python -m experiments.lowfpr_end --real-dev PATH [--tiny] [--out ROOT]

lowfpr-rate found `learning-rate-final = 0.03` above the default 0.1 on AUC by 0.001, beyond
its seed ranges, with no low-FPR figure moving (run seeds 12-14). A default changes only when
a second measurement agrees (as server momentum did not): this runs the same two arms (16
rounds x 180 steps, mining on) on 3 run seeds no other curve used, through lowfpr-budget's
runner and tables.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes
from experiments.lowfpr_rate import LOWER_END

NAME = "lowfpr-end"
TITLE = "The local rate ending at a thirtieth, measured again on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-end"

SIZES = mining_arm_sizes((), LOWER_END, seeds=(15, 16, 17))
END = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(END, module="experiments.lowfpr_end", doc=__doc__)


if __name__ == "__main__":
    main()
