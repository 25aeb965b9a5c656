"""Model selection: which round's global model to deploy, read from the sites' own evaluations.

Every round each site scores the new global model on its held-out day and shares figures under
its share policy: a `full` site's reach the coordinator one by one, an `aggregate` site's only
inside the masked evaluation sum (`federation_means`, with the number of contributors per
figure). The signal of a round is the mean of one figure over every site that reported it,
both kinds weighted alike, and never a TPR at an FPR the site's test set cannot resolve (those
sites are left out of that round's mean, as in the round's aggregate).

The last round need not be the best one (a run can overshoot or drift), but choosing helps
only as far as the sites' held-out days resolve the figure: on real names with ~1,650 benign
names per site it never beat the last round (docs/training.md), so it is off by default. A
round is chosen by the highest signal, ties to the later round; rounds where no site reported
the figure are never chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.files import write_atomic
from server.rounds import is_number

if TYPE_CHECKING:
    from server.checkpoints import CheckpointStore

log = logging.getLogger("fedsec.server")
SELECTED_MODEL = "model-selected.npz"

SIGNALS = ("pauc_fpr_1e-3", "tpr_at_fpr_1e-3", "auc")
"""Figures a round can be selected by: partial AUC over FPR <= 1e-3 (McClish-standardised, as
the sites report it), TPR at FPR 1e-3 (resolvable sites only), AUC."""


@dataclass(frozen=True)
class Selection:
    signal: str
    round: int
    value: float
    sites: float  # how many site figures the chosen round's mean is over
    by_round: dict[int, float]  # every round's signal (rounds without one left out)

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "round": self.round,
            "value": self.value,
            "sites": self.sites,
            "by_round": {str(key): value for key, value in sorted(self.by_round.items())},
        }


def round_signal(entry: Mapping[str, Any], signal: str) -> tuple[float, float] | None:
    """(mean of `signal` over the sites that reported it, their number) for one results.json
    round entry, or None when none did."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    flag = f"{signal}_resolvable" if signal.startswith("tpr_at_fpr_") else None
    total, count = 0.0, 0.0
    for figures in (entry.get("sites") or {}).values():
        value = figures.get(signal)
        if is_number(value) and (flag is None or figures.get(flag, 1.0) == 1.0):
            total, count = total + float(value), count + 1
    # An aggregate site's TPR enters the masked sum only where resolvable (client side), so its
    # federation mean is over resolvable sites; contributors says how many.
    means = entry.get("federation_means") or {}
    contributors = (entry.get("federation_contributors") or {}).get(signal, 0)
    if is_number(means.get(signal)) and is_number(contributors) and contributors > 0:
        total += float(means[signal]) * contributors
        count += contributors
    return (total / count, count) if count else None


def select_round(rounds: Iterable[Mapping[str, Any]], signal: str) -> Selection | None:
    """The round whose global model the sites' figures rank highest, or None when no round
    has the figure (a run where every site shares nothing, or no round completed)."""
    by_round: dict[int, tuple[float, float]] = {}
    for entry in rounds:
        found = round_signal(entry, signal)
        if found is not None:
            by_round[int(entry["round"])] = found
    if not by_round:
        return None
    best = max(by_round, key=lambda key: (by_round[key][0], key))
    return Selection(
        signal=signal,
        round=best,
        value=by_round[best][0],
        sites=by_round[best][1],
        by_round={key: value for key, (value, _) in by_round.items()},
    )


def save_selected(
    rounds: list[Mapping[str, Any]],
    *,
    signal: str,
    checkpoints: CheckpointStore,
    path: Path,
) -> dict[str, Any] | None:
    """Copy the chosen round's checkpoint to `path` and say so in one line; the record for
    results.json. Without any round carrying the figure the last round's model is copied
    and the record says why; without any completed round (a privacy budget that stopped the
    run before its first) nothing is written and the line says so (None)."""
    completed = checkpoints.completed_rounds()
    if not completed:
        log.warning("model selection: no completed round, so no %s", path.name)
        return None
    choice = select_round(rounds, signal)
    if choice is None or choice.round not in completed:
        chosen = completed[-1]
        record = {"signal": signal, "round": chosen, "value": None, "sites": 0, "by_round": {}}
        record["reason"] = (
            f"no completed round carried {signal} from any site: the last round"
            if choice is None
            else f"round {choice.round}'s checkpoint is missing: the last round"
        )
        log.warning("model selection: %s; %s = round %d", record["reason"], path.name, chosen)
    else:
        chosen = choice.round
        record = choice.to_json()
        log.info(
            "model selection: round %d of %d by %s = %.4g (mean over %g sites) -> %s",
            chosen,
            completed[-1],
            signal,
            choice.value,
            choice.sites,
            path.name,
        )
    write_atomic(path, checkpoints.path_for(chosen).read_bytes())
    record["file"] = path.name
    return record
