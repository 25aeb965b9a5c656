"""A data holder's site folder: its validated `site.toml` and its intel lists."""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass
from pathlib import Path

from client.domains import normalise_domain
from client.quarantine import Quarantine
from common.config import ConfigError, SiteConfig, parse_site_config

SITE_FILE = "site.toml"
# A site configuration is a few hundred bytes; reading stops past this, whatever the file is.
MAX_SITE_FILE_BYTES = 2**20


def load_site_config(site_dir: Path) -> SiteConfig:
    """Read and validate `SITE_DIR/site.toml`; every failure names the file and the fix.

    A UTF-8 byte-order mark at the start (some Windows editors write one) is skipped.
    """
    if not site_dir.is_dir():
        raise ConfigError(
            f"{site_dir}: site folder does not exist (fix: pass the folder that holds {SITE_FILE})"
        )
    path = site_dir / SITE_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: missing (fix: write the site configuration, see README)")
    try:
        data = tomllib.loads(_read_site_text(path))
    except tomllib.TOMLDecodeError as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid TOML: {reason} (fix: correct the syntax)") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML: arrays or tables nested too deeply (fix: correct the syntax)"
        ) from None
    return parse_site_config(data, source=path)


def _read_site_text(path: Path) -> str:
    """The file's text, at most MAX_SITE_FILE_BYTES of it, without a leading byte-order mark."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_SITE_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot be read: {error.strerror or type(error).__name__} "
            "(fix: make it readable by this user)"
        ) from None
    if len(raw) > MAX_SITE_FILE_BYTES:
        raise ConfigError(
            f"{path}: more than {MAX_SITE_FILE_BYTES} bytes; a site configuration is a few "
            "hundred (fix: point at the right folder or shorten the file)"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (fix: save it as UTF-8)") from None


@dataclass(frozen=True)
class Intel:
    """The site's own labels: blocklisted names with their family, and allowlisted names."""

    blocklist: dict[str, str]
    allowlist: frozenset[str]

    def lookup(self, name: str, registered: str) -> tuple[str, str]:
        """(label, family) with label in {'dga', 'benign', 'unlisted', 'conflict'}.

        The more specific listing wins: a blocklisted name under an allowlisted
        registered domain (abuse of a hosting provider) is malicious; a name listed on
        both lists at the same level is a conflict the site must resolve.
        """
        block_exact, allow_exact = name in self.blocklist, name in self.allowlist
        if block_exact and allow_exact:
            return "conflict", ""
        if block_exact:
            return "dga", self.blocklist[name]
        if allow_exact:
            return "benign", ""
        block_reg, allow_reg = registered in self.blocklist, registered in self.allowlist
        if block_reg and allow_reg:
            return "conflict", ""
        if block_reg:
            return "dga", self.blocklist[registered]
        if allow_reg:
            return "benign", ""
        return "unlisted", ""


def _intel_path(site_dir: Path, relative: str, field: str) -> Path:
    path = site_dir / relative
    if not path.is_file():
        raise ConfigError(
            f"{site_dir / SITE_FILE}: field labels.{field}: {path} does not exist "
            f"(fix: create it or point labels.{field} at the right file)"
        )
    return path


def load_intel(site_dir: Path, config: SiteConfig, *, quarantine: Quarantine) -> Intel:
    """Read the blocklist CSV (`domain,family`) and the allowlist; bad lines go to quarantine."""
    block_path = _intel_path(site_dir, config.labels.blocklist, "blocklist")
    allow_path = _intel_path(site_dir, config.labels.allowlist, "allowlist")
    blocklist: dict[str, str] = {}
    rows = csv.reader(io.StringIO(block_path.read_text(encoding="utf-8", errors="replace")))
    for line_number, row in enumerate(rows, start=1):
        if not row or (line_number == 1 and row[0].strip().lower() == "domain"):
            continue
        name, reason = normalise_domain(row[0].strip())
        if name is None:
            quarantine.add(
                source=block_path,
                line_number=line_number,
                reason=f"invalid-domain:{reason}",
                raw=",".join(row),
            )
            continue
        blocklist[name] = row[1].strip() if len(row) > 1 and row[1].strip() else "unknown"
    allowlist: set[str] = set()
    lines = allow_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line_number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, reason = normalise_domain(text)
        if name is None:
            quarantine.add(
                source=allow_path,
                line_number=line_number,
                reason=f"invalid-domain:{reason}",
                raw=line,
            )
            continue
        allowlist.add(name)
    return Intel(blocklist=blocklist, allowlist=frozenset(allowlist))


def find_site_dirs(data_dir: Path) -> list[Path]:
    """The site folders (each holding a `site.toml`) directly inside `data_dir`, sorted."""
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir}: data folder does not exist (fix: pass --data DIR)")
    sites = sorted(p for p in data_dir.iterdir() if (p / SITE_FILE).is_file())
    if not sites:
        raise ConfigError(
            f"{data_dir}: no site folders found (fix: each site needs DIR/<site>/{SITE_FILE})"
        )
    return sites
