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

from experiments.lowfpr_budget import Budget, Curve, _mining, curve_entry_points
from experiments.lowfpr_rate import LOWER_END

NAME = "lowfpr-end"
TITLE = "The local rate ending at a thirtieth, measured again on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-end"

SIZES = {
    "tiny": Budget(
        rounds=3,
        batch=32,
        arms=(_mining(6, 32), _mining(6, 32, *LOWER_END)),
        seeds=(0,),
        shape="tiny",
    ),
    "default": Budget(
        rounds=16,
        batch=128,
        arms=(_mining(180, 128), _mining(180, 128, *LOWER_END)),
        seeds=(15, 16, 17),
        shape="default",
    ),
}
SIZES["full"] = SIZES["default"]
END = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(END, module="experiments.lowfpr_end", doc=__doc__)


if __name__ == "__main__":
    main()
