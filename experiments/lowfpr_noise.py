"""Label-noise-aware mining: the highest-scoring benign names left out of the hard negatives,
against mining from the top, on real development names.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-noise [--tiny] [--out ROOT]
    python -m experiments.lowfpr_noise --real-dev PATH [--tiny] [--out ROOT]

Real safelists hold DGA names (about 2 in 10,000 of the real benign names look machine-made),
and those are exactly the benign names a trained model scores highest: mining from the top
teaches the model, every round, that they are benign. `hard-negatives-skip = 0.001` leaves
the top 0.1% of each site's scored benign names out (about five times that noise rate) and
mines the next ones. Two arms (16 rounds x 180 steps, mining on) on 3 run seeds no other
curve used, through lowfpr-budget's runner and tables. The test names keep their labels: the
noisy benign test names cost both arms alike, and the clean-names rows show the difference
without them.
"""

from __future__ import annotations

from experiments.lowfpr_budget import Curve, curve_entry_points, mining_arm_sizes

NAME = "lowfpr-noise"
TITLE = "Label-noise-aware mining on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-noise"

SKIP = (("hard-negatives-skip", 0.001),)
"""The arm against the defaults: the top 0.1% of the scored benign names left unmined."""
SIZES = mining_arm_sizes((), SKIP, seeds=(18, 19, 20))
NOISE = Curve(NAME, TITLE, COMMAND, SIZES)

run, measure, main = curve_entry_points(NOISE, module="experiments.lowfpr_noise", doc=__doc__)


if __name__ == "__main__":
    main()
