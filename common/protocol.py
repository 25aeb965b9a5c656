"""What client and server say to each other: every fedsec message and metric key, in one place.

flwr's own keys (SecAgg+'s config record, its stage names) are imported from flwr where they
are used, never retyped here: this module stays free of flwr so `common/` stays pure.
"""

from __future__ import annotations

from typing import Final

# --- message config and reply metadata ---------------------------------------------------------

SERVER_ROUND: Final = "server-round"
"""Fit/evaluate config: the round number (it seeds each site's training)."""

SITE_ID: Final = "site-id"
"""Fit/evaluate reply metrics: which site replied (`site_id` of its site.toml)."""

TASK: Final = "fedsec-task"
"""Fit config: what a train message asks for; absent means "train on the global model"."""

TASK_EVALUATION_SUM: Final = "evaluation-sum"
"""`TASK` value: reply with this round's masked figures (share level `aggregate`), no training."""

# --- what a site's train reply carries beside the (masked) delta -------------------------------

TRAIN_LOSS: Final = "train_loss"
TRAIN_FINAL_LOSS: Final = "train_final_loss"
DELTA_NORM: Final = "delta_norm"
DELTA_CLIP_SCALE: Final = "delta_clip_scale"
WEIGHT_CAPPED: Final = "weight_capped"
TRAIN_METRICS: Final = frozenset(
    {TRAIN_LOSS, TRAIN_FINAL_LOSS, DELTA_NORM, DELTA_CLIP_SCALE, WEIGHT_CAPPED}
)

# --- what a site's evaluate reply may carry ----------------------------------------------------

ACK: Final = "ack"
"""The whole evaluate reply of a site that shares nothing: "evaluated", not "failed"."""

AGGREGATE_ONLY: Final = "aggregate_only"
"""Evaluate reply of a site at share level `aggregate`, beside `ACK`: its figures for this round
travel only inside the masked evaluation sum, so the coordinator knows whom to ask."""

FAMILY_RECALL_PREFIX: Final = "recall_family_"
"""`recall_family_<slug>`: recall on one DGA family at the operating threshold."""

RATE_METRICS: Final = frozenset(
    {
        # Dimensionless: rates, ratios, scores and 0/1 flags. Nothing here scales with volume.
        "auc",
        "pauc_fpr_1e-3",
        "tpr_at_fpr_1e-3",
        "tpr_at_fpr_1e-4",
        "tpr_at_fpr_1e-5",
        "tpr_at_fpr_1e-3_resolvable",
        "tpr_at_fpr_1e-4_resolvable",
        "tpr_at_fpr_1e-5_resolvable",
        "fpr",
        "fpr_upper95",
        "fpr_query",
        "fpr_unique",
        "precision_at_base_rate",
        "recall_at_budget",
        "budget_utilisation",
        "threshold_feasible",
        "ece",
        "brier",
        "churn",
        "new_fp_rate",
        "unseen_family_recall",
        "psi_score",
        "shortcut_ratio",
        "malformed_rate",
        "duplicate_rate",
        "label_conflict_rate",
        "leakage_rate",
        "federated_gain_tpr_at_fpr_1e-4",
        "federated_gain_recall_at_budget",
        # Per host (docs/metrics.md "Hosts"): a share of host-days, and whether the test days
        # hold enough of them to resolve one false-positive host a day.
        "host_fpr",
        "host_fpr_upper95",
        "host_fp_per_day_resolvable",
    }
)

VOLUME_METRICS: Final = frozenset(
    {
        # They reveal how big a site is (traffic, team, data set).
        "fp_per_day",
        "fp_per_day_upper95",
        "alerts_per_day",
        "alerts_per_incident",
        "alert_budget_per_day",
        "analyst_hours_per_day",
        "test_domains",
        "test_positives",
        "test_queries",
        "unseen_families",
        "federated_gain_fp_per_day",
        # A count of hosts is a volume, and so is everything scaled by the site's hosts/day.
        "host_days",
        "hosts_per_day",
        "host_alerts_per_day",
        "host_fp_per_day",
        "host_fp_per_day_upper95",
    }
)

# --- what the coordinator records per site -----------------------------------------------------

NUM_EXAMPLES: Final = "num_examples"
"""results.json: the weight a site's delta carried in the mean (its capped example count)."""

# --- what a site says when it cannot reply -----------------------------------------------------

SITE_ERRORS: Final = {
    # code: the generic sentence the coordinator sees; the detail stays in the site's own log.
    "E1": "the site's configuration is unusable",
    "E2": "the site's logs could not be read",
    "E3": "the site refused to train: its data failed its own quality gate",
    "E4": "the site's privacy guard withheld the reply",
    "E5": "fault injected for testing (fail-sites)",
    "E9": "internal error at the site",
}
"""Every error a site can send: a fixed code and sentence, never an exception's own text."""
