"""Run settings: the flwr run config (kebab-case keys), validated once for server and clients."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.config import ConfigError, describe_validation_error

AUTO_MAX_SHARES = 15
"""fedsec's default (`num-shares = 0`): min(15, nodes) shares, threshold just over half."""
QUANTIZATION_RANGE = 2**22
"""SecAgg+ maps every value (and each site's weight ratio) to an integer below this."""
MODULUS_RANGE = 2**32
"""SecAgg+ sums those integers modulo this: n sites must keep n * QUANTIZATION_RANGE below it."""
MAX_SECAGG_NODES = MODULUS_RANGE // QUANTIZATION_RANGE - 1
"""1023: one more site and a round whose weights are all at `max-weight` wraps the modulus."""

MAX_ROUNDS = 10_000
MAX_NODES = 100_000
MAX_LOCAL_STEPS = 100_000
"""Local steps per round: about 30 s per 1,000 at the default batch on one core."""
MAX_BATCH_SIZE = 8192
"""A batch's activations: about 20 MB per 1,000 names for the default model."""
MAX_LEARNING_RATE = 10.0
MAX_CLIP_NORM = 1e6
MAX_WEIGHT = 1e9
MAX_ROUND_TIMEOUT = 86_400.0
POISON_ATTACKS = ("scale", "sign-flip", "nan", "huge-count")
"""What `poison-sites` can make a site do: its delta x100, its delta negated, NaN in its delta,
or a claimed example count of 10**12."""


class RunSettings(BaseModel):
    """Every knob of a training run; pyproject's `[tool.flwr.app.config]` mirrors the defaults."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, coerce_numbers_to_str=True
    )

    mode: Literal["secagg", "fedavg"] = "secagg"
    # Upper bounds on every knob that sizes a site's memory or time (issue 18): a run config
    # comes from the model team, and a typo of a few digits must fail here, not in a round.
    # 16 rounds: read from the measured budget curve (docs/training.md); 5 and 8 detect less at
    # low FPR on real names. `fedsec simulate`'s demo runs its own 5 (`--rounds`).
    num_rounds: int = Field(default=16, ge=1, le=MAX_ROUNDS, alias="num-rounds")
    seed: int = Field(default=0, ge=0)
    data_dir: str = Field(default="", alias="data-dir")
    out_dir: str = Field(default="runs/flwr", alias="out-dir")
    min_nodes: int = Field(default=2, ge=1, le=MAX_NODES, alias="min-nodes")
    local_steps: int = Field(default=180, ge=1, le=MAX_LOCAL_STEPS, alias="local-steps")
    batch_size: int = Field(default=128, ge=1, le=MAX_BATCH_SIZE, alias="batch-size")
    learning_rate: float = Field(
        default=0.003, gt=0, le=MAX_LEARNING_RATE, allow_inf_nan=False, alias="learning-rate"
    )
    # Local learning rate decay over the run: the rate at the last round, as a fraction of
    # learning-rate, rounds between on a cosine (1 = constant). 0.1: measured on real names
    # (docs/training.md), AUC and TPR at FPR 1e-3 beyond the seed range of a constant rate.
    learning_rate_final: float = Field(
        default=0.1, gt=0, le=1, allow_inf_nan=False, alias="learning-rate-final"
    )
    # Hard-negative mining: each round a site's batches carry the benign training names the
    # incoming model scores highest, this many (0 = off). The default fills the batches' room
    # for required rows at the default steps and batch (180 x 128 / 4); docs/training.md.
    hard_negatives: int = Field(
        default=5760, ge=0, le=MAX_LOCAL_STEPS * MAX_BATCH_SIZE, alias="hard-negatives"
    )
    # Label noise in the benign lists: this fraction of the scored benign names, the highest
    # scores first, is left out of the mining as suspected DGA names in a safelist (real
    # safelists hold ~2 in 10,000); the next `hard-negatives` are mined. 0 = mine from the top.
    hard_negatives_skip: float = Field(
        default=0.0, ge=0, lt=0.5, allow_inf_nan=False, alias="hard-negatives-skip"
    )
    # The share of every batch that required rows (analysts' verdicts, then hard negatives)
    # may take; with half the batch benign, 0.25 leaves half the benign slots to random draws.
    hard_negatives_share: float = Field(
        default=0.25, gt=0, le=0.5, allow_inf_nan=False, alias="hard-negatives-share"
    )
    # Hard families: this share of the positive draws goes to the families the incoming model
    # misses at FPR 1e-3 on the site's own training names, re-judged every round (0 = off:
    # positives drawn uniformly); docs/training.md.
    hard_families: float = Field(
        default=0.0, ge=0, le=1, allow_inf_nan=False, alias="hard-families"
    )
    # Model selection (server/selection.py, docs/training.md): "last" deploys the last round's
    # model; a site figure makes the coordinator also write model-selected.npz, the round
    # whose mean of that figure over the sites' own held-out days is highest.
    select_by: Literal["last", "pauc_fpr_1e-3", "tpr_at_fpr_1e-3", "auc"] = Field(
        default="last", alias="select-by"
    )
    # Server momentum (FedAvgM, server/momentum.py): the coordinator keeps a velocity
    # v <- momentum * v + mean delta and moves the model by server-learning-rate * v.
    # 0 and 1 are plain FedAvg; docs/training.md has the measured arms.
    server_momentum: float = Field(
        default=0.0, ge=0, lt=1, allow_inf_nan=False, alias="server-momentum"
    )
    server_learning_rate: float = Field(
        default=1.0, gt=0, le=MAX_LEARNING_RATE, allow_inf_nan=False, alias="server-learning-rate"
    )
    delta_clip_norm: float = Field(
        default=10.0, gt=0, le=MAX_CLIP_NORM, allow_inf_nan=False, alias="delta-clip-norm"
    )
    # 0: fedsec's default; 0 < x <= 1: a fraction (of the sampled nodes for num-shares, of
    # the shares for the threshold), resolved by flwr each round; above 1: a whole count.
    num_shares: float = Field(default=0.0, ge=0, allow_inf_nan=False, alias="num-shares")
    reconstruction_threshold: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, alias="reconstruction-threshold"
    )
    max_weight: float = Field(
        default=10000.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False, alias="max-weight"
    )
    round_timeout: float = Field(
        default=600.0, gt=0, le=MAX_ROUND_TIMEOUT, allow_inf_nan=False, alias="round-timeout"
    )
    fail_sites: str = Field(default="", alias="fail-sites")
    fail_rounds: str = Field(default="", alias="fail-rounds")
    # Coordinator-side rule for FedAvg (docs/threat-model.md): "none" is the weighted mean;
    # "median" and "trimmed-mean" (cutting `trim-fraction` of the sites at each end, per value)
    # are flwr's own helpers and ignore the weights. SecAgg+ sees only the sum: mean only.
    robust_rule: Literal["none", "median", "trimmed-mean"] = Field(
        default="none", alias="robust-rule"
    )
    trim_fraction: float = Field(
        default=0.2, ge=0, lt=0.5, allow_inf_nan=False, alias="trim-fraction"
    )
    # Research knob for the poisoning experiment (experiments/poisoning.py): `SITE:ATTACK,...`
    # makes those sites misbehave in their train replies (ATTACK in POISON_ATTACKS). Read only
    # by client/local.py; a real site's run config never sets it.
    poison_sites: str = Field(default="", alias="poison-sites")
    audit_replies: bool = Field(default=False, alias="audit-replies")
    resume: bool = False
    compare_local: bool = Field(default=False, alias="compare-local")
    # Each site's HTML fragility report (5 plots) was half of a simulated round's work, so by
    # default a site renders it once, at the last round; every round still writes the JSON
    # report, and what a site sends is the same either way. A data holder who wants the page
    # after each round sets every-round (~1 s a round); experiments turn it off.
    site_html: Literal["every-round", "last-round", "off"] = Field(
        default="last-round", alias="site-html"
    )
    # The federation's HTML report (plots) at the end of the run; experiments that read only
    # results.json and report.json turn it off (it is most of a short in-process run's time).
    report_html: bool = Field(default=True, alias="report-html")
    # The model team's ed25519 signature of the app's hash (`fedsec app sign`), read by each
    # data holder's fedsec-clientapp before the app runs; the apps themselves ignore it.
    app_signature: str = Field(default="", alias="app-signature")
    # Distributed differential privacy (docs/differential-privacy.md): a noise multiplier z, or
    # a target ε over num-rounds from which z is calibrated; 0 for both = off.
    dp_noise_multiplier: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, alias="dp-noise-multiplier"
    )
    dp_epsilon: float = Field(default=0.0, ge=0, allow_inf_nan=False, alias="dp-epsilon")
    dp_delta: float = Field(default=1e-6, gt=0, lt=1, alias="dp-delta")
    # Stop before a round whose worst-case noise would take the ledger's ε past this; 0 = none.
    dp_epsilon_budget: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, alias="dp-epsilon-budget"
    )

    @model_validator(mode="after")
    def _one_dp_target(self) -> RunSettings:
        if self.dp_noise_multiplier > 0 and self.dp_epsilon > 0:
            raise ValueError(
                "dp-noise-multiplier and dp-epsilon are both set "
                "(fix: keep one, set the other to 0)"
            )
        if self.dp_epsilon_budget > 0 and not self.dp_enabled:
            raise ValueError(
                "dp-epsilon-budget needs differential privacy on "
                "(fix: set dp-epsilon or dp-noise-multiplier, or dp-epsilon-budget = 0)"
            )
        return self

    @property
    def dp_enabled(self) -> bool:
        return self.dp_noise_multiplier > 0 or self.dp_epsilon > 0

    def noise_multiplier(self) -> float:
        """z: `dp-noise-multiplier`, or the one dp-accounting calibrates to reach `dp-epsilon` at
        `dp-delta` after `num-rounds` worst-case rounds (every site in every round); 0 = off."""
        if self.dp_epsilon > 0:
            from common.dp import noise_multiplier_for_epsilon

            return noise_multiplier_for_epsilon(
                epsilon=self.dp_epsilon, delta=self.dp_delta, num_rounds=self.num_rounds
            )
        return self.dp_noise_multiplier

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> RunSettings:
        try:
            return cls.model_validate(dict(run_config))
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, source="run config")) from None

    def to_run_config(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    def round_learning_rate(self, server_round: int) -> float:
        """The local learning rate of a round: `learning-rate` at round 1, falling on a cosine
        to `learning-rate` x `learning-rate-final` at `num-rounds` (and after it, when a run
        is resumed for more rounds)."""
        if self.learning_rate_final == 1.0 or self.num_rounds == 1:
            return self.learning_rate
        progress = min(max(server_round - 1, 0), self.num_rounds - 1) / (self.num_rounds - 1)
        final = self.learning_rate_final
        return self.learning_rate * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))

    def site_html_at(self, server_round: int) -> bool:
        """Does a site render its HTML report in this round?"""
        return self.site_html == "every-round" or (
            self.site_html == "last-round" and server_round >= self.num_rounds
        )

    def fails_at(self, *, site_id: str, server_round: int) -> bool:
        """Fault injection for dropout tests and experiments: this site raises in this round."""
        sites = {name.strip() for name in self.fail_sites.split(",") if name.strip()}
        rounds = {int(r) for r in self.fail_rounds.split(",") if r.strip()}
        return site_id in sites and (not rounds or server_round in rounds)

    @field_validator("poison_sites")
    @classmethod
    def _poison_spec(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            site, _, attack = item.partition(":")
            if not site.strip() or attack.strip() not in POISON_ATTACKS:
                raise ValueError(
                    f"{item!r} is not SITE:ATTACK (fix: e.g. site-01:scale; attacks: "
                    f"{', '.join(POISON_ATTACKS)})"
                )
        return value

    def poison_attack(self, site_id: str) -> str | None:
        """The attack `poison-sites` asks this site to make (the poisoning experiment only)."""
        for item in filter(None, (part.strip() for part in self.poison_sites.split(","))):
            site, _, attack = item.partition(":")
            if site.strip() == site_id:
                return attack.strip()
        return None

    @field_validator("num_shares", "reconstruction_threshold")
    @classmethod
    def _fraction_or_whole_count(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(
                f"{value:g} is neither a fraction in (0, 1] nor a whole count "
                f"(fix: {math.ceil(value)}, a fraction such as 0.6, or 0 for fedsec's default)"
            )
        return value

    def secagg_shares(self, *, num_nodes: int) -> tuple[int | float, int | float]:
        """(num_shares, reconstruction_threshold) as `SecAggPlusWorkflow` takes them.

        An int is a count; a float is a fraction flwr resolves each round (shares of the
        sampled nodes, threshold of the shares). Checked against `num_nodes` first, so a
        setting that could never aggregate fails here and not inside a round.
        """
        shares, threshold = self.resolved_secagg_shares(num_nodes=num_nodes)
        passed_shares: int | float = float(self.num_shares) if 0 < self.num_shares <= 1 else shares
        passed_threshold: int | float = (
            float(self.reconstruction_threshold)
            if 0 < self.reconstruction_threshold <= 1
            else threshold
        )
        return passed_shares, passed_threshold

    def check_secagg_capacity(self, *, num_nodes: int) -> None:
        """Refuse a SecAgg+ round over more nodes than flwr's modulus can sum without wrapping.

        Each site adds its weight ratio, quantised to at most QUANTIZATION_RANGE, and its
        quantised values; the server sums them modulo MODULUS_RANGE. Past MAX_SECAGG_NODES the
        sum can wrap and the unmasked model would be silently wrong.
        """
        if num_nodes > MAX_SECAGG_NODES:
            raise ConfigError(
                f"run config: a SecAgg+ round over {num_nodes} nodes can wrap flwr's 2^32 "
                f"modulus (at most {MAX_SECAGG_NODES} nodes per round; fix: fewer sites per "
                'federation, or mode = "fedavg")'
            )

    def resolved_secagg_shares(self, *, num_nodes: int) -> tuple[int, int]:
        """The (shares, threshold) a round over `num_nodes` sampled nodes really uses.

        An explicit integer beats a large fraction, which makes big rounds ~60x slower than
        FedAvg (shares grow with the nodes); 0 means min(15, nodes), made odd when that stays
        below the node count (an even node count up to 15 keeps all its nodes as shares),
        threshold just over half. Fractions follow flwr 1.42's `SecAggPlusWorkflow.setup_stage`.
        """
        if num_nodes < 3:
            raise ConfigError(
                f"run config: secure aggregation needs at least 3 nodes, got {num_nodes} "
                '(fix: add sites, or set mode = "fedavg")'
            )
        if 0 < self.num_shares <= 1:
            shares = flwr_fraction_of_nodes(self.num_shares, num_nodes=num_nodes)
        else:
            shares = min(int(self.num_shares) or min(AUTO_MAX_SHARES, num_nodes), num_nodes)
            if shares % 2 == 0 and shares < num_nodes:
                shares += 1
            shares = max(3, shares)
        if 0 < self.reconstruction_threshold <= 1:
            threshold = max(round(self.reconstruction_threshold * shares), 2)
        else:
            threshold = int(self.reconstruction_threshold) or shares // 2 + 1
        if not 1 <= threshold < shares:
            raise ConfigError(
                f"run config: reconstruction-threshold {self.reconstruction_threshold:g} gives "
                f"{threshold} of {shares} shares over {num_nodes} nodes; it must be in "
                f"[1, {shares - 1}] (fix: lower reconstruction-threshold or set it to 0)"
            )
        return shares, threshold


def flwr_fraction_of_nodes(fraction: float, *, num_nodes: int) -> int:
    """Shares flwr 1.42 derives from a float `num_shares`: rounded, made odd, at least 3."""
    shares = round(fraction * num_nodes)
    if shares < num_nodes and shares % 2 == 0:
        shares += 1
    return num_nodes if shares <= 2 else shares
