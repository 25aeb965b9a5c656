"""More of every batch for the hard negatives: three eighths against today's quarter, on real
development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-share [--tiny] [--out ROOT]
    python -m experiments.lowfpr_share --real-dev PATH [--tiny] [--out ROOT]

lowfpr-noise found that the benign names a site scores highest are what moves TPR at FPR
1e-4: leaving the top 0.1% of them out of the mining cost a third of it. Today mining fills
a quarter of every batch (half of its benign slots; 5,760 names a round at the defaults).
This arm gives it three eighths (`hard-negatives-share = 0.375`: three quarters of the benign
slots, 8,640 names), against the defaults, 16 rounds x 180 steps on 3 run seeds no other
curve used, through lowfpr-budget's runner and tables.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes

NAME = "lowfpr-share"
TITLE = "Three eighths of every batch for the hard negatives, on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-share"

WIDER = (("hard-negatives-share", 0.375),)
"""The arm against the defaults: mining fills three eighths of every batch (and
`mining_arm_sizes` mines as many names as that holds)."""
SIZES = mining_arm_sizes((), WIDER, seeds=(21, 22, 23))
SHARE_CURVE = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(SHARE_CURVE, module="experiments.lowfpr_share", doc=__doc__)


if __name__ == "__main__":
    main()
