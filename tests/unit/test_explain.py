"""Explanations of alerts (client/explain.py): attribution, nearest families, campaigns, cache."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from client import explain
from client.explain import campaigns, explain_alerts, explain_names
from client.site import Intel
from common.features import ALPHABET, PAD_ID
from common.model import CharCNN, ModelFileError, ModelSpec, build_model, model_to_bytes
from experiments.generator import dga

SMALL = ModelSpec(embedding_dim=8, filters_per_width=8, widths=(2, 3), hidden=8)
DAY = dt.date(2026, 1, 5)


def _char_id(char: str) -> int:
    return ALPHABET.index(char) + 2


def _z_detector() -> CharCNN:
    """A hand-set model whose score only the letter z raises: logit 5.2 with a z, -0.8 without.

    Every character embeds to (0, 1) and z to (1, 1); one width-1 filter weighs them (3, 0.1),
    so after the max pool a name with a z reads 3.1 and one without 0.1; padding reads 0.
    """
    model = build_model(
        ModelSpec(embedding_dim=2, filters_per_width=1, widths=(1,), hidden=1, dropout=0.0),
        seed=0,
    )
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[PAD_ID + 1 :, 1] = 1.0
        model.embedding.weight[_char_id("z"), 0] = 1.0
        model.convs[0].weight.copy_(torch.tensor([[[3.0], [0.1]]]))
        model.convs[0].bias.zero_()
        model.hidden.weight.fill_(1.0)
        model.hidden.bias.zero_()
        model.output.weight.fill_(2.0)
        model.output.bias.fill_(-1.0)
    return model.eval()


def _logits(model: CharCNN, names: list[str]) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(model.spec.encode(names))).double().numpy()


def _padding_logit(model: CharCNN) -> float:
    row = torch.full((1, model.spec.max_chars), PAD_ID, dtype=torch.int64)
    with torch.no_grad():
        return float(model.eval()(row))


def test_the_character_that_drives_the_score_gets_the_attribution() -> None:
    model = _z_detector()
    [found] = explain_names(model, ["www.abzcd.com"])
    # The model reads the registered domain; the whole name is shown, www. with weight 0.
    assert "".join(char for char, _ in found["attribution"]) == "www.abzcd.com"
    weights = dict(enumerate(weight for _, weight in found["attribution"]))
    top = max(weights, key=weights.__getitem__)
    assert found["attribution"][top][0] == "z"
    assert weights[top] == pytest.approx(5.2 - (-1.0), abs=0.05)
    assert all(abs(weight) < 1e-6 for index, weight in weights.items() if index != top)
    assert found["substrings"][0]["text"] == "z"
    assert found["score"] == pytest.approx(1 / (1 + np.exp(-5.2)), abs=1e-6)


def test_attributions_add_up_to_the_logit_above_padding(monkeypatch) -> None:
    model = build_model(SMALL, seed=3)
    # A few names per Captum call, so rows are matched back across calls of mixed lengths.
    per_row = SMALL.max_chars * (SMALL.embedding_dim + SMALL.filters_per_width * 2)
    monkeypatch.setattr(explain, "ACTIVATION_BUDGET", per_row * explain.ATTRIBUTION_STEPS * 4)
    names = dga.family_pool(dga.FAMILY_BY_NAME["randalpha"], seed=1, epoch=0, day=DAY, size=12)
    names += ["google.com", "x.y.example.co.uk", "a"]
    found = explain_names(model, names)
    expected = _logits(model, names) - _padding_logit(model)
    for item, gap in zip(found, expected, strict=True):
        total = sum(weight for _, weight in item["attribution"])
        assert total - gap == pytest.approx(item["convergence_delta"], abs=1e-4)
        assert abs(item["convergence_delta"]) <= explain.DELTA_TOLERANCE * 2


def test_the_model_mode_is_restored_and_scores_match_the_model() -> None:
    model = build_model(SMALL, seed=4)
    model.train()
    names = ["qxzvkwpl.net", "mail.example.org"]
    [first, second] = explain_names(model, names)
    assert model.training
    scores = 1 / (1 + np.exp(-_logits(model, names)))
    assert [first["score"], second["score"]] == pytest.approx(scores.tolist(), abs=1e-6)


def test_positive_runs_become_the_substrings() -> None:
    pairs = [["a", 1.0], ["b", 2.0], [".", -1.0], ["c", 0.5], ["d", 0.0], ["e", 4.0], ["f", 0.1]]
    assert explain._substrings(pairs) == [
        {"text": "ef", "weight": pytest.approx(4.1)},
        {"text": "ab", "weight": 3.0},
        {"text": "c", "weight": 0.5},
    ]


def test_features_are_the_shortcut_baselines() -> None:
    [found] = explain_names(build_model(SMALL, seed=0), ["A1B2.co.uk."])
    assert found["features"] == {
        "length": 4,
        "entropy": pytest.approx(2.0),
        "digit_share": 0.5,
        "vowel_share": 0.25,
        "labels": 3,
        "tld": "uk",
    }
    assert found["nearest_families"] == [] and found["evidence"] == {}


def _pools(families: tuple[str, ...], size: int) -> dict[str, list[str]]:
    return {
        family: dga.family_pool(dga.FAMILY_BY_NAME[family], seed=3, epoch=0, day=DAY, size=size)
        for family in families
    }


def test_a_generated_name_is_nearest_to_its_own_family(monkeypatch) -> None:
    monkeypatch.setattr(explain, "NAMES_PER_COMPARISON", 7)  # 20 names: three blocks
    pools = _pools(("hexhash", "seedmutate", "wordconcat"), 120)
    intel = Intel(
        blocklist={name: family for family, names in pools.items() for name in names[:100]},
        allowlist=frozenset(),
    )
    model = build_model(ModelSpec(), seed=0)
    for family, names in pools.items():
        found = explain_names(model, names[100:], intel=intel)
        nearest = [item["nearest_families"][0] for item in found]
        right = [top for top in nearest if top["family"] == family]
        assert len(right) >= 0.8 * len(found), (family, nearest)
        assert all(intel.blocklist[top["example"]] == family for top in right)
        assert all(len(item["nearest_families"]) == 3 for item in found)


def test_the_family_sample_is_bounded_and_deterministic(monkeypatch) -> None:
    monkeypatch.setattr(explain, "FAMILY_SAMPLE", 7)
    pools = _pools(("hexhash", "cvsyll"), 30)
    blocklist = {name: family for family, names in pools.items() for name in names}
    model = build_model(SMALL, seed=1)
    index = explain._family_index(model, Intel(blocklist=blocklist, allowlist=frozenset()))
    reordered = dict(reversed(list(blocklist.items())))
    again = explain._family_index(model, Intel(blocklist=reordered, allowlist=frozenset()))
    assert index.families == ["cvsyll", "hexhash"] and index.bounds == [(0, 7), (7, 14)]
    assert index.names == again.names


def _explained(families: dict[str, str]) -> dict[str, dict]:
    return {
        name: {"nearest_families": [{"family": family, "similarity": 0.5, "example": "x.com"}]}
        for name, family in families.items()
    }


def test_campaigns_group_hosts_by_their_names_dominant_family() -> None:
    explanations = _explained(
        {"a1.com": "alpha", "a2.com": "alpha", "a3.com": "alpha", "b1.com": "beta"}
    )
    explanations["a3.com"]["nearest_families"][0]["similarity"] = 0.8
    groups = [
        {"rank": 1, "host": "10.0.0.1", "names": ["a1.com", "b1.com", "a2.com"]},
        {"rank": 2, "host": "10.0.0.2", "names": ["b1.com", "unexplained.com"]},
        {"rank": 3, "host": "10.0.0.3", "names": ["a3.com"]},
        {"rank": 4, "host": None, "names": ["unexplained.com", "other.net"]},
    ]
    assert campaigns(groups, explanations) == [
        {
            "family": "alpha",
            "hosts": ["10.0.0.1", "10.0.0.3"],
            "names": 4,
            "similarity": pytest.approx((0.5 + 0.5 + 0.8) / 3),
            "ranks": [1, 3],
        },
        {"family": "beta", "hosts": ["10.0.0.2"], "names": 2, "similarity": 0.5, "ranks": [2]},
        {"family": "unknown", "hosts": [], "names": 2, "similarity": 0.0, "ranks": [4]},
    ]
    assert campaigns([], explanations) == []


# --- explain_alerts ------------------------------------------------------------------------


def _site(tmp_path: Path, blocklist: str) -> Path:
    site = tmp_path / "site"
    (site / "intel").mkdir(parents=True)
    (site / "intel" / "blocklist.csv").write_text(blocklist, encoding="utf-8")
    (site / "intel" / "allowlist.txt").write_text("google.com\n", encoding="utf-8")
    (site / "site.toml").write_text(
        'site_id = "site-a"\n[logs]\npaths = ["logs/*.log"]\n'
        "[deployment]\nbenign_events_per_day = 1000.0\n"
        "[analysts]\ncount = 1\nproductive_hours_per_day = 6.0\nminutes_per_alert = 5.0\n",
        encoding="utf-8",
    )
    return site


def _alert(rank: int, domain: str) -> dict:
    return {
        "rank": rank,
        "domain": domain,
        "registered_domain": domain,
        "score": 0.9,
        "query_count": 10 + rank,
        "priority": 9.0,
        "first_seen": "2026-01-05T00:00:00Z",
        "last_seen": "2026-01-05T01:00:00Z",
        "host_count": 2,
        "host_count_capped": False,
        "hosts": ["10.0.0.1", "10.0.0.2"],
        "nxdomain_share": 0.75,
    }


def _write_alerts(path: Path, domains: list[str]) -> Path:
    lines = [json.dumps(_alert(rank, domain)) for rank, domain in enumerate(domains, start=1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Path, Path, Path]:
    pools = _pools(("hexhash", "seedmutate"), 12)
    rows = [f"{name},{family}" for family, names in pools.items() for name in names[:10]]
    site = _site(tmp_path, "domain,family\n" + "\n".join(rows) + "\nbad..name,x\n")
    model_path = tmp_path / "model.npz"
    model_path.write_bytes(model_to_bytes(build_model(SMALL, seed=5)))
    alerts = _write_alerts(tmp_path / "alerts.jsonl", [names[11] for names in pools.values()])
    return model_path, site, alerts


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = explain.explain_names

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(explain, "explain_names", counted)
    return calls


def test_explain_alerts_writes_explanations_with_the_logs_evidence(scored, monkeypatch) -> None:
    model_path, site, alerts = scored
    out = explain_alerts(model_path, site, alerts, limit=1)
    assert out == alerts.with_name("alerts.explained.json")
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["limit"] == 1 and len(document["model_sha256"]) == 64
    [(domain, found)] = document["explanations"].items()
    assert domain == found["domain"] == _alert(1, domain)["domain"]
    assert found["evidence"] == {key: _alert(1, domain)[key] for key in explain.EVIDENCE_FIELDS}
    assert found["nearest_families"][0]["family"] in {"hexhash", "seedmutate"}
    quarantined = site / "work" / "quarantine" / "explain" / "blocklist.csv.tsv"
    assert "bad..name" in quarantined.read_text(encoding="utf-8")
    blocklist = site / "intel" / "blocklist.csv"
    blocklist.write_text(blocklist.read_text().replace("bad..name,x\n", ""), encoding="utf-8")
    explain_alerts(model_path, site, alerts, limit=1)
    assert not quarantined.exists()  # a fixed list leaves no stale quarantine behind


def test_explain_alerts_reuses_until_model_alerts_intel_or_limit_change(
    scored, monkeypatch
) -> None:
    model_path, site, alerts = scored
    calls = _counting(monkeypatch)
    out = explain_alerts(model_path, site, alerts)
    assert len(calls) == 1 and len(json.loads(out.read_text())["explanations"]) == 2
    assert explain_alerts(model_path, site, alerts) == out and len(calls) == 1

    _write_alerts(alerts, ["other.com", "more.net"])
    explain_alerts(model_path, site, alerts)
    assert len(calls) == 2
    assert set(json.loads(out.read_text())["explanations"]) == {"other.com", "more.net"}

    model_path.write_bytes(model_to_bytes(build_model(SMALL, seed=6)))
    explain_alerts(model_path, site, alerts)
    assert len(calls) == 3

    with (site / "intel" / "blocklist.csv").open("a", encoding="utf-8") as stream:
        stream.write("newfamily.com,newfamily\n")
    explain_alerts(model_path, site, alerts)
    assert len(calls) == 4

    explain_alerts(model_path, site, alerts, limit=1)
    assert len(calls) == 5
    out.write_text("{not json", encoding="utf-8")  # a damaged file is rewritten, not trusted
    explain_alerts(model_path, site, alerts, limit=1)
    assert len(calls) == 6 and json.loads(out.read_text())["limit"] == 1


def test_explain_alerts_refuses_bad_arguments_naming_them(scored, tmp_path: Path) -> None:
    model_path, site, alerts = scored
    with pytest.raises(ModelFileError, match="missing.npz"):
        explain_alerts(tmp_path / "missing.npz", site, alerts)
    with pytest.raises(FileNotFoundError, match="gone.jsonl"):
        explain_alerts(model_path, site, tmp_path / "gone.jsonl", limit=0)
    for limit in (-1, explain.MAX_LIMIT + 1, True):
        with pytest.raises(ValueError, match="limit"):
            explain_alerts(model_path, site, alerts, limit=limit)


def test_the_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    from experiments import bench_explain

    out = tmp_path / "bench_explain.json"
    assert bench_explain.main(["--names", "20", "--steps", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["names"] == 20 and result["families"] == len(dga.FAMILIES)
    assert result["cpu_seconds"] > 0 and 0.0 <= result["nearest_family_is_own"] <= 1.0
    assert result["max_abs_delta"] >= result["mean_abs_delta"] >= 0.0
