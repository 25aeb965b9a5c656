"""Site configuration: the one file a data holder writes, validated once at the boundary."""

from __future__ import annotations

import math
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
    # strict: TOML has real types, so `count = true` or `count = "5"` is a mistake to report,
    # not a value to coerce; allow_inf_nan=False: `inf` and `nan` are never a site's figure.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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

    @field_validator("base_rate", mode="plain")
    @classmethod
    def _rate_in_unit_interval(cls, value: object) -> float | str:
        # One check instead of pydantic's union, which reports each member's error separately.
        if isinstance(value, str) and value == "measured":
            return value
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0.0 < value < 1.0:
            raise ValueError(
                "base_rate must be a finite number strictly between 0 and 1, or the string "
                "'measured'"
            )
        return float(value)


class AnalystsConfig(_Strict):
    count: int = Field(ge=0)
    productive_hours_per_day: float = Field(gt=0, le=24)
    minutes_per_alert: float = Field(gt=0)

    @model_validator(mode="after")
    def _budget_is_finite(self) -> AnalystsConfig:
        # A minutes_per_alert of 1e-310 is positive and finite, yet makes the budget infinite.
        try:
            budget = self.count * self.productive_hours_per_day * 60.0 / self.minutes_per_alert
        except OverflowError:
            budget = math.inf
        if not math.isfinite(budget):
            raise ValueError(
                "the alert budget count x productive_hours_per_day x 60 / minutes_per_alert is "
                "not a finite number; minutes_per_alert is too small or count too large"
            )
        return self


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


# pydantic error type -> how to write the value in TOML (the field name is filled in).
_FIXES = {
    "missing": "add `{field}`",
    "extra_forbidden": "remove `{field}` (unknown field; check its spelling)",
    "int_type": "write `{field}` as a whole number without quotes, e.g. 5",
    "int_from_float": "write `{field}` as a whole number without quotes, e.g. 5",
    "float_type": "write `{field}` as a number without quotes, e.g. 20 or 1.5e6",
    "finite_number": "write `{field}` as a finite number (not inf or nan)",
    "string_type": 'write `{field}` as a quoted string, e.g. "text"',
    "list_type": 'write `{field}` as a list, e.g. ["text"]',
    "dict_type": 'write `{field}` as a table, e.g. {{ key = "value" }}',
    "literal_error": "set `{field}` to one of the values named",
    "value_error": "correct `{field}` as described",
}


def describe_validation_error(error: ValidationError, *, source: str | Path) -> str:
    """One line per problem: `FILE: field a.b: what is wrong (fix: ...)`."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        fix = _FIXES.get(problem["type"], "set `{field}` to a valid value").format(field=field)
        message = " ".join(str(problem["msg"]).split()).removeprefix("Value error, ")
        lines.append(f"{source}: field {field}: {message} (fix: {fix})")
    return "\n".join(lines)


def parse_site_config(data: dict, *, source: str | Path) -> SiteConfig:
    """Validate an already-parsed mapping; raise ConfigError naming `source` on failure."""
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source=source)) from None
