"""Run settings: the flwr run config (kebab-case keys), validated once for server and clients."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.config import ConfigError, describe_validation_error


class RunSettings(BaseModel):
    """Every knob of a training run; pyproject's `[tool.flwr.app.config]` mirrors the defaults."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, coerce_numbers_to_str=True)

    mode: Literal["secagg", "fedavg"] = "secagg"
    num_rounds: int = Field(default=5, ge=1, alias="num-rounds")
    seed: int = Field(default=0, ge=0)
    data_dir: str = Field(default="", alias="data-dir")
    out_dir: str = Field(default="runs/flwr", alias="out-dir")
    min_nodes: int = Field(default=2, ge=1, alias="min-nodes")
    local_steps: int = Field(default=60, ge=1, alias="local-steps")
    batch_size: int = Field(default=128, ge=1, alias="batch-size")
    learning_rate: float = Field(default=0.003, gt=0, alias="learning-rate")
    delta_clip_norm: float = Field(default=10.0, gt=0, alias="delta-clip-norm")
    num_shares: int = Field(default=0, ge=0, alias="num-shares")
    reconstruction_threshold: int = Field(default=0, ge=0, alias="reconstruction-threshold")
    max_weight: float = Field(default=10000.0, gt=0, alias="max-weight")
    round_timeout: float = Field(default=600.0, gt=0, alias="round-timeout")
    fail_sites: str = Field(default="", alias="fail-sites")
    fail_rounds: str = Field(default="", alias="fail-rounds")
    audit_replies: bool = Field(default=False, alias="audit-replies")
    resume: bool = False
    compare_local: bool = Field(default=False, alias="compare-local")

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> RunSettings:
        try:
            return cls.model_validate(dict(run_config))
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, source="run config")) from None

    def to_run_config(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    def fails_at(self, *, site_id: str, server_round: int) -> bool:
        """Fault injection for dropout tests and experiments: this site raises in this round."""
        sites = {name.strip() for name in self.fail_sites.split(",") if name.strip()}
        rounds = {int(r) for r in self.fail_rounds.split(",") if r.strip()}
        return site_id in sites and (not rounds or server_round in rounds)

    def secagg_shares(self, *, num_nodes: int) -> tuple[int, int]:
        """(num_shares, reconstruction_threshold) for a round over `num_nodes` nodes.

        An explicit integer beats flwr's fractional default, which makes large rounds ~60x
        slower than FedAvg; 0 means: min(15, nodes), odd, with a threshold just over half.
        """
        if num_nodes < 3:
            raise ConfigError(
                f"run config: secure aggregation needs at least 3 nodes, got {num_nodes} "
                "(fix: add sites, or set mode = \"fedavg\")"
            )
        shares = self.num_shares or min(15, num_nodes)
        shares = min(shares, num_nodes)
        if shares % 2 == 0 and shares < num_nodes:
            shares += 1
        shares = max(3, shares)
        threshold = self.reconstruction_threshold or shares // 2 + 1
        if not 1 <= threshold < shares:
            raise ConfigError(
                f"run config: reconstruction-threshold {threshold} must be in [1, {shares - 1}] "
                f"for {shares} shares (fix: lower reconstruction-threshold or set it to 0)"
            )
        return shares, threshold
