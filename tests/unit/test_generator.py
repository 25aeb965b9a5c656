"""Tests for the synthetic site generator: determinism, layout, Zeek format, truth, label noise."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import parse_site_config
from experiments.generator import generate_sites
from experiments.generator import sites as sites_module
from experiments.generator.dga import FAMILIES, FAMILY_BY_NAME, family_pool
from experiments.generator.profiles import assign_families, draw_profiles
from experiments.generator.responses import zeek_escape
from experiments.generator.world import build_dga_world, is_listable, registered_domain
from experiments.generator.zeek_writer import FIELDS, TYPES

SMALL = {"n_sites": 4, "n_days": 2, "scale": 0.1}
SEED = 7
ESCAPE = re.compile(rb"\\x([0-9a-f]{2})")


def unescape(field: str) -> str:
    return ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), field.encode("ascii")).decode(
        "utf-8"
    )


def read_log(path: Path) -> tuple[list[str], list[list[str]], int]:
    """(header lines, valid data rows, lines a strict reader must reject)."""
    headers, rows, rejected = [], [], 0
    text = gzip.decompress(path.read_bytes()).decode("ascii")  # Zeek escapes every other byte
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            headers.append(line)
            continue
        fields = line.split("\t")
        try:
            float(fields[0])
        except ValueError:
            rejected += 1
            continue
        if len(fields) != len(FIELDS):
            rejected += 1
            continue
        rows.append(fields)
    return headers, rows, rejected


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def load_truth(root: Path) -> dict[str, tuple[str, str]]:
    with open(root / "truth.csv", encoding="utf-8", newline="") as handle:
        return {row["domain"]: (row["label"], row["family"]) for row in csv.DictReader(handle)}


def site_queries(site_dir: Path) -> Counter:
    counts: Counter = Counter()
    for path in sorted((site_dir / "logs").glob("*.log.gz")):
        counts.update(unescape(row[FIELDS.index("query")]) for row in read_log(path)[1])
    return counts


@pytest.fixture(scope="module")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("a") / "sites"
    generate_sites(out, seed=SEED, **SMALL)
    return out


@pytest.fixture(scope="module")
def manifest(run_a: Path) -> dict:
    return json.loads((run_a / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def truth(run_a: Path) -> dict[str, tuple[str, str]]:
    return load_truth(run_a)


def test_layout_and_return_value(tmp_path: Path) -> None:
    out = tmp_path / "new"
    site_dirs = generate_sites(out_dir=out, n_sites=3, n_days=2, seed=1, scale=0.05)
    assert site_dirs == [out / f"site-{i:02d}" for i in range(3)]
    for site_dir in site_dirs:
        assert sorted(p.name for p in (site_dir / "logs").iterdir()) == [
            "dns.2026-01-01.log.gz",
            "dns.2026-01-02.log.gz",
        ]
        assert (site_dir / "intel" / "blocklist.csv").read_text().startswith("domain,family\n")
        assert (site_dir / "intel" / "allowlist.txt").exists() and (site_dir / "site.toml").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["new"]  # no staging folder left behind


def test_same_seed_gives_identical_bytes(run_a: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_sites(again, seed=SEED, **SMALL)
    first, second = all_files(run_a), all_files(again)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_output_does_not_depend_on_string_hashing(run_a: Path, tmp_path: Path) -> None:
    """A fresh interpreter with another PYTHONHASHSEED writes the same bytes (no set order)."""
    out = tmp_path / "hashed"
    code = (
        "import sys; from pathlib import Path; from experiments.generator import generate_sites; "
        f"generate_sites(Path(sys.argv[1]), seed={SEED}, **{SMALL!r})"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", code, str(out)], check=True, cwd=root, env=env, timeout=120
    )
    first, second = all_files(run_a), all_files(out)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_different_seed_gives_different_output(run_a: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_sites(other, seed=SEED + 1, **SMALL)
    first, second = all_files(run_a), all_files(other)
    assert first["truth.csv"] != second["truth.csv"]
    assert (
        first["site-00/logs/dns.2026-01-01.log.gz"] != second["site-00/logs/dns.2026-01-01.log.gz"]
    )


def test_gzip_is_deterministic_and_nameless(run_a: Path) -> None:
    for path in run_a.rglob("*.log.gz"):
        head = path.read_bytes()[:10]
        assert head[:3] == b"\x1f\x8b\x08"
        assert head[3] & 0x08 == 0, "no embedded file name"
        assert head[4:8] == b"\x00\x00\x00\x00", "mtime must be 0"


def test_refuses_non_empty_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="taken"):
        generate_sites(out, n_sites=3, n_days=1, seed=0, scale=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_empty_existing_out_dir_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    generate_sites(out, n_sites=3, n_days=1, seed=0, scale=0.05)
    assert (out / "truth.csv").exists()


def test_failure_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sites_module, "_write_intel", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_sites(tmp_path / "out", n_sites=3, n_days=1, seed=0, scale=0.05)
    assert list(tmp_path.iterdir()) == []


def test_zeek_header_and_sorted_lines(run_a: Path, manifest: dict) -> None:
    malformed = {site["site_id"]: site["malformed_lines"] for site in manifest["sites"]}
    for path in sorted(run_a.glob("site-*/logs/*.log.gz")):
        headers, rows, rejected = read_log(path)
        day = path.name.split(".")[1]
        assert headers[:6] == [
            "#separator \\x09",
            "#set_separator\t,",
            "#empty_field\t(empty)",
            "#unset_field\t-",
            "#path\tdns",
            f"#open\t{day}-00-00-00",
        ]
        assert headers[6] == "#fields\t" + "\t".join(FIELDS)
        assert headers[7] == "#types\t" + "\t".join(TYPES)
        assert len(FIELDS) == len(TYPES) == 24
        assert headers[8].startswith("#close\t") and len(headers) == 9
        timestamps = [float(row[0]) for row in rows]
        assert timestamps == sorted(timestamps)
        start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
        assert start <= timestamps[0] and timestamps[-1] < start + 86_400
        recorded = malformed[path.parent.parent.name][path.name]
        assert (
            rejected
            == recorded["total"]
            == sum(recorded[k] for k in ("truncated", "too_few_fields", "bad_timestamp"))
        )
        assert rejected >= 1
        assert all(re.fullmatch(r"C[0-9A-Za-z]{17}", row[1]) for row in rows)
        assert all(row[2].startswith("10.") for row in rows)


def test_zeek_values_are_realistic(run_a: Path) -> None:
    rows = [row for path in sorted(run_a.glob("site-*/logs/*.log.gz")) for row in read_log(path)[1]]
    column = {name: Counter(row[i] for row in rows) for i, name in enumerate(FIELDS)}
    assert {"A", "AAAA", "HTTPS", "PTR", "TXT", "SRV"} <= set(column["qtype_name"])
    assert {"NOERROR", "NXDOMAIN", "SERVFAIL", "-"} <= set(column["rcode_name"])
    assert column["rtt"]["-"] > 0 and column["answers"]["(empty)"] > 0
    for row in rows:
        if row[FIELDS.index("rcode_name")] in ("NXDOMAIN", "-"):
            assert row[FIELDS.index("answers")] == "-" and row[FIELDS.index("TTLs")] == "-"
        if row[FIELDS.index("rcode_name")] == "-":
            assert row[FIELDS.index("rtt")] == "-"
        answers, ttls = row[FIELDS.index("answers")], row[FIELDS.index("TTLs")]
        assert len(answers.split(",")) == len(ttls.split(","))
    escaped = [row[FIELDS.index("query")] for row in rows if "\\x" in row[FIELDS.index("query")]]
    assert 0 < len(escaped) < 0.01 * len(rows)


def test_truth_matches_logs_exactly(run_a: Path, truth: dict[str, tuple[str, str]]) -> None:
    seen: set[str] = set()
    for site_dir in sorted(run_a.glob("site-*")):
        queries = site_queries(site_dir)
        assert set(queries) <= set(truth), sorted(set(queries) - set(truth))[:5]
        seen |= set(queries)
    assert seen == set(truth), "truth.csv lists exactly the queried names"
    lines = (run_a / "truth.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "domain,label,family" and lines[1:] == sorted(lines[1:])
    for domain, (label, family) in truth.items():
        assert (label, family == "") in (("benign", True), ("dga", False)), domain


def test_dga_names_belong_to_their_family(run_a: Path, truth: dict, manifest: dict) -> None:
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(SMALL["n_days"])]
    world = build_dga_world(seed=SEED, days=days, scale=SMALL["scale"])
    for site in manifest["sites"]:
        queries = site_queries(run_a / site["site_id"])
        dga = {q for q in queries if truth[q][0] == "dga"}
        assert dga, site["site_id"]
        assert {truth[q][1] for q in dga} == set(site["families"])
        for query in dga:
            assert world.owner[query.removeprefix("www.")] == truth[query][1]
            assert registered_domain(query) == query.removeprefix("www.")


def test_families_are_a_strict_minority_and_all_covered(manifest: dict) -> None:
    assert len(FAMILIES) >= 8
    covered: set[str] = set()
    for site in manifest["sites"]:
        assert 2 <= len(site["families"]) <= 4
        assert len(site["families"]) < len(FAMILIES) / 2, "a strict minority"
        covered |= set(site["families"])
    assert covered == {family.name for family in FAMILIES}


@settings(max_examples=40, deadline=None)
@given(
    n_sites=st.integers(min_value=3, max_value=40), seed=st.integers(min_value=0, max_value=2**32)
)
def test_family_assignment_covers_every_family(n_sites: int, seed: int) -> None:
    names = tuple(family.name for family in FAMILIES)
    assigned = assign_families(np.random.default_rng(seed), n_sites, names)
    assert all(2 <= len(chosen) <= 4 and len(set(chosen)) == len(chosen) for chosen in assigned)
    assert set().union(*assigned) == set(names)


def test_sites_differ(manifest: dict, run_a: Path) -> None:
    sites = manifest["sites"]
    assert len({tuple(site["families"]) for site in sites}) > 1
    assert len({sum(site["volume"]["data_lines_by_file"].values()) for site in sites}) == len(sites)
    assert len({json.dumps(site["benign_mix"], sort_keys=True) for site in sites}) == len(sites)
    assert len({json.dumps(site["languages"], sort_keys=True) for site in sites}) == len(sites)
    tld_mix = []
    for site in sites:
        queries = site_queries(run_a / site["site_id"])
        tlds = Counter(q.rsplit(".", 1)[-1] for q in queries)
        tld_mix.append(tuple(sorted(t for t, _ in tlds.most_common(8))))
    assert len(set(tld_mix)) > 1


def test_volumes_and_dga_share(manifest: dict) -> None:
    for site in manifest["sites"]:
        assert 15_000 <= site["volume"]["lines_per_day_at_scale_1"] <= 60_000
        assert 0.0 < site["dga_share"] < 0.5, "benign dominates"


def test_heavy_tail(run_a: Path) -> None:
    for site_dir in sorted(run_a.glob("site-*")):
        counts = sorted(site_queries(site_dir).values(), reverse=True)
        top = counts[: max(1, len(counts) // 100)]
        # The one-off long tail (most names asked once or twice) dilutes the top 1%'s share of
        # all lines, but a few names still carry far more than their share.
        assert sum(top) / sum(counts) > 0.15, site_dir.name
        assert np.median(counts) <= 2, "the median name is the long tail's"
        assert counts[0] > 50 * np.median(counts)


def test_hard_benign_names_present(truth: dict[str, tuple[str, str]]) -> None:
    benign = [domain for domain, (label, _) in truth.items() if label == "benign"]
    patterns = {
        "punycode": r"(^|\.)xn--",
        "cloudfront": r"^d[a-z0-9]{13}\.cloudfront\.net$",
        "akamai": r"^e\d+\.[a-z]+\.akamaiedge\.net$",
        "googlevideo": r"^r\d+---sn-[a-z0-9]{8}\.googlevideo\.com$",
        "blob": r"\.blob\.core\.windows\.net$",
        "ptr": r"^(\d+\.){4}in-addr\.arpa$",
        "hex telemetry": r"[0-9a-f]{16}",
        "chrome probe": r"^[a-z]{7,15}$",
        "non-english tld": r"\.(de|com\.tr|pl|cn|ru|es|co\.id|id)$",
    }
    for name, pattern in patterns.items():
        assert any(re.search(pattern, domain) for domain in benign), name
    assert any(domain.count(".") >= 5 for domain in benign), "long multi-label names"
    assert any(not domain.isascii() for domain in benign), "raw UTF-8 names logged as \\xNN"
    punycode = [d for d in benign if "xn--" in d]
    assert all(d.encode("ascii").decode("idna") for d in punycode[:50])


def _rate_tolerance(rate: float, n: int) -> float:
    return 4 * math.sqrt(max(rate * (1 - rate), 1e-9) / max(n, 1)) + 1.0 / max(n, 1)


def test_blocklist_noise_matches_manifest(run_a: Path, truth: dict, manifest: dict) -> None:
    expected_errors = observed_errors = 0.0
    for site in manifest["sites"]:
        site_dir = run_a / site["site_id"]
        with open(site_dir / "intel" / "blocklist.csv", encoding="utf-8", newline="") as handle:
            listed = {row["domain"]: row["family"] for row in csv.DictReader(handle)}
        queries = site_queries(site_dir)
        dga = {registered_domain(q) for q in queries if truth[q][0] == "dga"}
        benign = {
            r for q in queries if truth[q][0] == "benign" if is_listable(r := registered_domain(q))
        }
        missed = len(dga - set(listed)) / len(dga)
        wrong = len(benign & set(listed))
        stats = site["blocklist"]
        assert stats["dga_registered_logged"] == len(dga) and stats[
            "benign_registered_logged"
        ] == len(benign)
        assert stats["realised_miss_rate"] == pytest.approx(missed, abs=1e-6)
        assert stats["benign_registered_listed"] == wrong
        assert 0.05 <= stats["miss_rate"] <= 0.30 and 0.001 <= stats["error_rate"] <= 0.01
        assert abs(missed - stats["miss_rate"]) <= _rate_tolerance(stats["miss_rate"], len(dga))
        assert abs(wrong / len(benign) - stats["error_rate"]) <= _rate_tolerance(
            stats["error_rate"], len(benign)
        )
        expected_errors += stats["error_rate"] * len(benign)
        observed_errors += wrong
        unlogged = set(listed) - dga - benign
        assert len(unlogged) == stats["listed_not_logged"] > 0, "feeds are broader than one site"
        assert {family for name, family in listed.items() if name in dga} - set(
            site["families"]
        ) <= {"unknown"}
    assert abs(observed_errors - expected_errors) <= 4 * math.sqrt(expected_errors) + 2


def test_allowlist_is_top_benign_subset(run_a: Path, truth: dict, manifest: dict) -> None:
    for site in manifest["sites"]:
        site_dir = run_a / site["site_id"]
        lines = (site_dir / "intel" / "allowlist.txt").read_text(encoding="utf-8").splitlines()
        allowed = [line for line in lines if line and not line.startswith("#")]
        assert any(line.startswith("#") for line in lines)
        counts: Counter = Counter()
        for query, count in site_queries(site_dir).items():
            if truth[query][0] == "benign" and is_listable(registered := registered_domain(query)):
                counts[registered] += count
        assert set(allowed) < set(counts), "a strict subset of the benign registered domains"
        least_allowed = min(counts[name] for name in allowed)
        assert sum(1 for count in counts.values() if count > least_allowed) < len(allowed) + 1


def test_site_toml_validates(run_a: Path, manifest: dict) -> None:
    for site in manifest["sites"]:
        path = run_a / site["site_id"] / "site.toml"
        config = parse_site_config(tomllib.loads(path.read_text(encoding="utf-8")), source=path)
        assert config.site_id == site["site_id"]
        assert config.logs.paths == ["logs/dns.*.log.gz"] and config.logs.format == "zeek-tsv"
        assert config.labels.unlisted == "benign"
        assert config.share.level in {"rates", "rates+volumes"}
        assert 1e6 <= config.deployment.benign_events_per_day <= 2e9
        assert 1e-5 <= config.deployment.base_rate <= 1e-3
        assert 2 <= config.analysts.count <= 12 and config.analysts.productive_hours_per_day == 5.6
        assert 10 <= config.analysts.minutes_per_alert <= 30
        assert sorted(p.name for p in (path.parent / "logs").glob("dns.*.log.gz"))


@given(st.text(max_size=40))
def test_zeek_escape_round_trips(text: str) -> None:
    escaped = zeek_escape(text)
    assert escaped.isascii() and "\t" not in escaped and "\n" not in escaped
    assert unescape(escaped) == text


def test_dga_families_differ_in_shape() -> None:
    day = dt.date(2026, 1, 1)
    shapes = {}
    for family in FAMILIES:
        pool = family_pool(family, seed=0, epoch=0, day=day, size=300)
        assert len(pool) == 300 and len(set(pool)) == 300
        assert all(
            re.fullmatch(r"[a-z0-9-]{3,63}(\.[a-z0-9-]{2,12})?\.[a-z]{2,8}", name) for name in pool
        ), family.name
        labels = [name.split(".")[0] for name in pool]
        shapes[family.name] = (
            round(float(np.mean([len(label) for label in labels])), 1),
            frozenset(name.split(".", 1)[1] for name in pool),
        )
    assert len({length for length, _ in shapes.values()}) >= 6
    assert len({tlds for _, tlds in shapes.values()}) == len(FAMILIES)
    assert len(shapes["shortmulti"][1]) >= 15


def test_date_seeded_family_depends_on_the_date_only() -> None:
    family = FAMILY_BY_NAME["dateseed"]
    day1, day2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    assert family_pool(family, seed=0, epoch=0, day=day1, size=50) == family_pool(
        family, seed=9, epoch=0, day=day1, size=50
    )
    assert not set(family_pool(family, seed=0, epoch=0, day=day1, size=50)) & set(
        family_pool(family, seed=0, epoch=1, day=day2, size=50)
    )


# --- non-IID knobs: families per site and benign-mix spread ----------------------------------


def _mix_distance(mix: dict[str, float], typical: dict[str, float]) -> float:
    return 0.5 * sum(abs(mix[name] - typical[name]) for name in typical)


def test_default_knobs_passed_explicitly_give_identical_bytes(run_a: Path, tmp_path: Path) -> None:
    explicit = tmp_path / "explicit"
    generate_sites(explicit, seed=SEED, families_per_site=(2, 4), benign_mix_spread=1.0, **SMALL)
    first, second = all_files(run_a), all_files(explicit)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


@pytest.mark.parametrize(
    ("knobs", "changed"),
    [
        ({"families_per_site": 1}, {"families", "dga_unique_per_day"}),
        ({"families_per_site": len(FAMILIES)}, {"families", "dga_unique_per_day"}),
        ({"families_per_site": (3, 5)}, {"families", "dga_unique_per_day"}),
        ({"benign_mix_spread": 0.0}, {"benign_mix"}),
        ({"benign_mix_spread": 3.0}, {"benign_mix"}),
    ],
)
def test_knobs_change_only_what_they_name(knobs: dict, changed: set[str]) -> None:
    base = draw_profiles(seed=SEED, n_sites=8)
    other = draw_profiles(seed=SEED, n_sites=8, **knobs)
    differing: set[str] = set()
    for before, after in zip(base, other, strict=True):
        differing |= {
            field.name
            for field in dataclasses.fields(before)
            if getattr(before, field.name) != getattr(after, field.name)
        }
        # a family a site keeps keeps its daily volume
        for name in set(before.families) & set(after.families):
            assert before.dga_unique_per_day[name] == after.dga_unique_per_day[name]
        assert set(after.dga_unique_per_day) == set(after.families)
    assert differing == changed


def test_one_family_per_site_and_every_family_everywhere() -> None:
    names = {family.name for family in FAMILIES}
    single = draw_profiles(seed=SEED, n_sites=8, families_per_site=1)
    assert all(len(profile.families) == 1 for profile in single)
    assert len({profile.families for profile in single}) == 8, "dealt without repeats"
    every = draw_profiles(seed=SEED, n_sites=4, families_per_site=len(FAMILIES))
    assert all(set(profile.families) == names for profile in every)


@settings(max_examples=40, deadline=None)
@given(
    n_sites=st.integers(min_value=1, max_value=30),
    low=st.integers(min_value=1, max_value=10),
    width=st.integers(min_value=0, max_value=9),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_family_ranges_are_respected(n_sites: int, low: int, width: int, seed: int) -> None:
    names = tuple(family.name for family in FAMILIES)
    high = min(low + width, len(names))
    assigned = assign_families(np.random.default_rng(seed), n_sites, names, per_site=(low, high))
    for chosen in assigned:
        assert low <= len(chosen) <= high and len(set(chosen)) == len(chosen)
    if n_sites * high >= len(names):
        assert set().union(*assigned) == set(names)


def test_benign_mix_spread_orders_how_far_sites_lean() -> None:
    typical_profiles = draw_profiles(seed=SEED, n_sites=8, benign_mix_spread=0.0)
    typical = typical_profiles[0].benign_mix
    assert all(profile.benign_mix == typical for profile in typical_profiles)
    assert sum(typical.values()) == pytest.approx(1.0, abs=1e-3)
    distances = []
    for spread in (0.0, 0.5, 1.0, 3.0):
        profiles = draw_profiles(seed=SEED, n_sites=8, benign_mix_spread=spread)
        for profile in profiles:
            assert sum(profile.benign_mix.values()) == pytest.approx(1.0, abs=1e-3)
            assert min(profile.benign_mix.values()) > 0, "no category vanishes"
        distances.append(np.mean([_mix_distance(p.benign_mix, typical) for p in profiles]))
    assert distances[0] == 0.0
    assert distances == sorted(distances) and distances[3] > 2 * distances[2]


@pytest.mark.parametrize(
    ("knobs", "parameter"),
    [
        ({"families_per_site": 0}, "families_per_site"),
        ({"families_per_site": len(FAMILIES) + 1}, "families_per_site"),
        ({"families_per_site": (3, 2)}, "families_per_site"),
        ({"families_per_site": (1, 2, 3)}, "families_per_site"),
        ({"families_per_site": 2.5}, "families_per_site"),
        ({"families_per_site": True}, "families_per_site"),
        ({"families_per_site": "2"}, "families_per_site"),
        ({"benign_mix_spread": -0.5}, "benign_mix_spread"),
        ({"benign_mix_spread": float("nan")}, "benign_mix_spread"),
        ({"benign_mix_spread": float("inf")}, "benign_mix_spread"),
        ({"benign_mix_spread": "1"}, "benign_mix_spread"),
        ({"benign_mix_spread": True}, "benign_mix_spread"),
    ],
)
def test_invalid_knobs_are_refused_before_writing(
    tmp_path: Path, knobs: dict, parameter: str
) -> None:
    with pytest.raises(ValueError, match=rf"{parameter} must be .*\(fix: "):
        generate_sites(tmp_path / "out", n_sites=3, n_days=1, seed=0, scale=0.05, **knobs)
    assert list(tmp_path.iterdir()) == []


def test_knobs_reach_the_written_sites(tmp_path: Path) -> None:
    out = tmp_path / "single"
    generate_sites(
        out, n_sites=3, n_days=1, seed=1, scale=0.05, families_per_site=1, benign_mix_spread=0
    )
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    truth = load_truth(out)
    mixes = {json.dumps(site["benign_mix"], sort_keys=True) for site in manifest["sites"]}
    assert len(mixes) == 1
    for site in manifest["sites"]:
        assert len(site["families"]) == 1
        logged = {truth[q][1] for q in site_queries(out / site["site_id"]) if truth[q][0] == "dga"}
        assert logged == set(site["families"])


# --- the long tail: a test day big enough to resolve low FPRs --------------------------------


def test_tail_follows_the_scaling_law(manifest: dict) -> None:
    """The last (test) day holds the site's whole tail at this scale, training days a share."""
    scale = manifest["scale"]
    for site in manifest["sites"]:
        volume = site["volume"]
        files = sorted(volume["tail_names_by_file"])
        expected = volume["tail_names_per_day_at_scale_1"] * scale
        test_tail = volume["tail_names_by_file"][files[-1]]
        assert abs(test_tail - expected) <= 0.03 * expected + 2, site["site_id"]
        for name in files[:-1]:
            train_expected = expected * sites_module.TRAIN_DAY_TAIL_SHARE
            assert abs(volume["tail_names_by_file"][name] - train_expected) <= (
                0.03 * train_expected + 2
            )
        assert volume["distinct_names_by_file"][files[-1]] > test_tail
        lines = volume["data_lines_by_file"][files[-1]]
        assert lines < 1.5 * test_tail + volume["lines_per_day_at_scale_1"] * scale * 1.2, (
            "a tail name is a line or two, not many"
        )


def test_split_keeps_the_test_day_tail(run_a: Path, manifest: dict, tmp_path: Path) -> None:
    """The product's time split keeps nearly every tail name of the test day as a benign test
    example (its registered domain is new that day)."""
    from client.pipeline import load_site

    site = manifest["sites"][0]
    data = load_site(run_a / site["site_id"], work_dir=tmp_path / "work").require_data()
    test_tail = site["volume"]["tail_names_by_file"][max(site["volume"]["tail_names_by_file"])]
    test_benign = len(data.test) - data.test.positives
    assert test_benign >= 0.95 * test_tail


def test_default_scale_test_day_resolves_fpr_1e4() -> None:
    """At scale 1 every site's test day keeps >= 30,000 benign names (3 / 1e-4) after the split.

    Computed without writing logs: the smallest tail a profile can draw, the training days'
    tails it could collide with (a test name whose registered domain trained is dropped), and
    the worst intel error rate (a wrongly blocklisted benign name is not a benign example).
    """
    from experiments.generator import longtail
    from experiments.generator.profiles import TAIL_NAMES_PER_DAY_RANGE
    from experiments.generator.streams import stream

    smallest = TAIL_NAMES_PER_DAY_RANGE[0]
    for seed in (0, 1, SEED):
        assert min(p.tail_names_per_day for p in draw_profiles(seed=seed, n_sites=8)) >= smallest
    languages = draw_profiles(seed=0, n_sites=1)[0].languages
    trained: set[str] = set()
    for day in range(3):
        count = int(smallest * sites_module.TRAIN_DAY_TAIL_SHARE)
        _, registered, _, _ = longtail.tail_names(
            stream(0, "t", day), count, languages=languages, excluded=set()
        )
        trained |= set(registered)
    count = int(smallest * 0.97)  # the day-to-day jitter's low end
    _, registered, _, _ = longtail.tail_names(
        stream(0, "t", 3), count, languages=languages, excluded=set()
    )
    kept = sum(1 for name in registered if name not in trained)  # names, by registered domain
    assert kept * (1 - 0.01) >= 3 / 1e-4, kept


def test_long_tail_is_seeded_and_distinct() -> None:
    from experiments.generator import longtail
    from experiments.generator.streams import stream

    languages = {"en": 0.5, "de": 0.3, "zh": 0.2}

    def draw(seed: int) -> tuple:
        names, registered, kinds, counts = longtail.tail_names(
            stream(seed, "tail"), 3000, languages=languages, excluded={"excluded.com"}
        )
        return names, registered, kinds, counts.tolist()

    first, again, other = draw(1), draw(1), draw(2)
    assert first == again and first[0] != other[0]
    names, registered, kinds, counts = first
    assert len(names) == len(set(names)) == 3000
    assert 1500 < len(set(registered)) < 3000, "one to three names per registered domain"
    assert sum(name == reg for name, reg in zip(names, registered, strict=True)) > 1500, "bare"
    assert "excluded.com" not in registered
    assert all(registered_domain(name) == reg for name, reg in zip(names, registered, strict=True))
    assert set(kinds) == {"web", "nx"} and min(counts) == 1
    assert Counter(counts)[1] > 0.6 * len(counts), "most tail names are asked once"
    assert Counter(name.rsplit(".", 1)[-1] for name in registered).most_common(1)[0][0] == "com"


def test_long_tail_tlds_are_icann_public_suffixes() -> None:
    """label + "." + TLD is a registered domain in the ICANN section the product splits on."""
    from publicsuffixlist import PublicSuffixList

    from experiments.generator.lexicon import LANG_TLD_MIX

    icann = PublicSuffixList(only_icann=True)
    for language, mix in LANG_TLD_MIX.items():
        for tld, weight in mix:
            assert weight > 0 and icann.publicsuffix(f"label.{tld}") == tld, (language, tld)
