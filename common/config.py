"""Site configuration: the one file a data holder writes, validated once at the boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

LogFormat = Literal["zeek-tsv", "zeek-json", "csv", "parquet"]
ShareLevel = Literal["none", "aggregate", "rates", "rates+volumes"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogsConfig(_Strict):
    paths: list[str] = Field(min_length=1, description="glob patterns relative to the site folder")
    format: LogFormat = "zeek-tsv"
    columns: dict[str, str] | None = Field(
        default=None,
        description="column -> the file's field/header name, e.g. {ts = 'timestamp', "
        "query = 'qname'}; csv, parquet, zeek-json (Zeek TSV names its own fields)",
    )

    @model_validator(mode="after")
    def _columns_fit_the_format(self) -> LogsConfig:
        if not self.columns:
            return self
        if self.format == "zeek-tsv" and any(k != v for k, v in self.columns.items()):
            raise ValueError(
                "columns does not apply to format 'zeek-tsv' (Zeek names its "
                "fields in '#fields'); remove it or set the right format"
            )
        if any(not k or not v for k, v in self.columns.items()) or len(
            set(self.columns.values())
        ) != len(self.columns):
            raise ValueError("columns must map each column to its own non-empty field name")
        return self


class LabelsConfig(_Strict):
    blocklist: str = "intel/blocklist.csv"
    allowlist: str = "intel/allowlist.txt"
    unlisted: Literal["benign", "ignore"] = "benign"


class DeploymentConfig(_Strict):
    benign_events_per_day: float = Field(gt=0)
    base_rate: float | Literal["measured"] = 1e-5

    @field_validator("base_rate")
    @classmethod
    def _rate_in_unit_interval(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("base_rate must be in (0, 1) or the string 'measured'")
        return value


class AnalystsConfig(_Strict):
    count: int = Field(ge=0)
    productive_hours_per_day: float = Field(gt=0, le=24)
    minutes_per_alert: float = Field(gt=0)


class ShareConfig(_Strict):
    level: ShareLevel = "rates"


class SplitConfig(_Strict):
    test_days: int = Field(default=1, ge=1, description="the last N log days are the test set")
    holdout_fraction: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="registered domains kept out of training, so popular names reach the test",
    )


class OperatingConfig(_Strict):
    target_fpr: float | None = Field(
        default=None, gt=0, lt=1, description="fixed FPR instead of the alert budget"
    )


class DqaConfig(_Strict):
    """The quality gate: a site outside these bounds refuses to train (and says why)."""

    max_malformed_rate: float = Field(default=0.05, ge=0, le=1)
    max_duplicate_rate: float = Field(default=0.10, ge=0, le=1)
    max_out_of_order_rate: float = Field(default=0.05, ge=0, le=1)
    max_missing_days: int = Field(default=1, ge=0)
    max_label_conflict_rate: float = Field(default=0.01, ge=0, le=1)
    max_leakage_rate: float = Field(default=0.0, ge=0, le=1)
    min_train_positives: int = Field(default=5, ge=0)
    min_train_negatives: int = Field(default=5, ge=0)
    gap_seconds: float = Field(default=3600.0, gt=0)
    reorder_tolerance_seconds: float = Field(default=60.0, ge=0)


class SiteConfig(_Strict):
    """The schema of `site.toml` (every field: docs/site-config.md)."""

    site_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    logs: LogsConfig
    labels: LabelsConfig = LabelsConfig()
    deployment: DeploymentConfig
    analysts: AnalystsConfig
    share: ShareConfig = ShareConfig()
    split: SplitConfig = SplitConfig()
    operating: OperatingConfig = OperatingConfig()
    dqa: DqaConfig = DqaConfig()


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file, the field and the fix."""


def describe_validation_error(error: ValidationError, *, source: str | Path) -> str:
    """One line per problem: `FILE: field a.b: what is wrong (fix: ...)`."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        kind = problem["type"]
        if kind == "missing":
            fix = f"add `{field}`"
        elif kind == "extra_forbidden":
            fix = f"remove `{field}` (unknown field; check its spelling)"
        else:
            fix = f"set `{field}` to a valid value"
        lines.append(f"{source}: field {field}: {problem['msg']} (fix: {fix})")
    return "\n".join(lines)


def parse_site_config(data: dict, *, source: str | Path) -> SiteConfig:
    """Validate an already-parsed mapping; raise ConfigError naming `source` on failure."""
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source=source)) from None
