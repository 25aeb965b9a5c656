"""A process's prepared sites stay within a memory bound however many sites it serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import pipeline
from client.local import SPEC
from client.pipeline import SiteCache, load_site, prepare_site, site_cache_limit, site_footprint
from client.site import find_site_dirs
from common.config import ConfigError


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> list[Path]:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("cache") / "sites"
    generate_sites(out_dir=out, n_sites=4, n_days=2, seed=5, scale=0.02)
    return find_site_dirs(out)


def test_footprint_counts_the_names_and_grows_with_the_site(sites, tmp_path):
    site = prepare_site(sites[0], work_dir=tmp_path / "w")
    size = site_footprint(site)
    data = site.require_data()
    names = len(data.train) + len(data.test)
    # At least the encoded ids and one string object per name; far below a MiB per name.
    assert names * 64 < size < names * 2**20
    from experiments.generator import generate_sites

    bigger = generate_sites(out_dir=tmp_path / "big", n_sites=1, n_days=2, seed=5, scale=0.1)[0]
    big = prepare_site(bigger, work_dir=tmp_path / "w2")
    more = len(big.require_data().train) + len(big.require_data().test)
    assert more > 2 * names
    assert site_footprint(big) > size * (more / names) / 2


def test_the_cache_evicts_least_recently_used_sites_beyond_its_bound(sites, tmp_path):
    prepared = [prepare_site(site, work_dir=tmp_path / site.name) for site in sites]
    sizes = [site_footprint(site) for site in prepared]
    cache = SiteCache(limit_bytes=sizes[0] + sizes[1] + sizes[2] // 2)
    for index, site in enumerate(prepared[:2]):
        cache.put((index,), ("f",), site)
    assert len(cache) == 2 and cache.bytes == sizes[0] + sizes[1]
    assert cache.get((0,), ("f",)) is prepared[0]  # 0 is now the most recently used
    cache.put((2,), ("f",), prepared[2])
    assert cache.get((1,), ("f",)) is None  # the least recently used left
    assert cache.get((0,), ("f",)) is prepared[0] and cache.get((2,), ("f",)) is prepared[2]
    assert cache.bytes <= cache.limit_bytes
    cache.put((1,), ("f",), prepared[1])  # served again: read again, and counted
    assert cache.rereads == 1
    assert cache.get((1,), ("f",)) is prepared[1]
    assert cache.get((1,), ("changed",)) is None  # a changed file is a new read


def test_a_site_bigger_than_the_bound_is_still_kept_alone(sites, tmp_path):
    cache = SiteCache(limit_bytes=0)
    for index, site in enumerate(sites):
        cache.put((index,), ("f",), prepare_site(site, work_dir=tmp_path / site.name))
        assert len(cache) == 1


def test_load_site_serves_many_sites_within_the_bound(sites, tmp_path, monkeypatch):
    first = prepare_site(sites[0], work_dir=tmp_path / "probe")
    monkeypatch.setattr(pipeline, "_cache", SiteCache(limit_bytes=2 * site_footprint(first)))
    for _ in range(2):
        for site in sites:
            load_site(site, work_dir=tmp_path / site.name)
            assert pipeline._cache.bytes <= pipeline._cache.limit_bytes or len(pipeline._cache) == 1
    assert len(pipeline._cache) < len(sites)
    assert pipeline._cache.rereads >= len(sites)  # the second pass read every site again


def test_the_counters_reach_a_file_only_when_asked(sites, tmp_path, monkeypatch):
    """What the scale experiment reads from its Ray actors: reads, re-reads, what is cached."""
    import json
    import os

    first = prepare_site(sites[0], work_dir=tmp_path / "probe")
    monkeypatch.setattr(pipeline, "_cache", SiteCache(limit_bytes=site_footprint(first)))
    monkeypatch.delenv("FEDSEC_SITE_CACHE_STATS", raising=False)
    load_site(sites[0], work_dir=tmp_path / "quiet")
    stats = tmp_path / "stats"
    assert not stats.exists()
    monkeypatch.setenv("FEDSEC_SITE_CACHE_STATS", str(stats))
    for site in [*sites, sites[0]]:
        load_site(site, work_dir=tmp_path / site.name)
    counters = json.loads((stats / f"{os.getpid()}.json").read_text())
    assert counters["reads"] == len(sites) + 2 and counters["rereads"] == 1
    assert counters["cached"] == 1 and counters["cached_bytes"] == pipeline._cache.bytes


@pytest.mark.parametrize("text", ["lots", "-1", "nan"])
def test_a_bad_cache_size_is_one_line_naming_the_variable(text, monkeypatch):
    monkeypatch.setenv("FEDSEC_SITE_CACHE_MIB", text)
    with pytest.raises(ConfigError, match=r"FEDSEC_SITE_CACHE_MIB=.*fix:"):
        site_cache_limit()


def test_the_cache_size_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FEDSEC_SITE_CACHE_MIB", "1.5")
    assert site_cache_limit() == int(1.5 * 2**20)
    monkeypatch.delenv("FEDSEC_SITE_CACHE_MIB")
    assert site_cache_limit() == 512 * 2**20


def test_a_new_read_starts_with_empty_name_caches(sites, tmp_path, monkeypatch):
    """Process-wide name caches hold one site's names, not a share of every site served."""
    from client.domains import registered_domain
    from common.features import _registered_psl

    monkeypatch.setattr(pipeline, "_cache", SiteCache())
    load_site(sites[0], work_dir=tmp_path / "a").encoded(SPEC)
    assert registered_domain.cache_info().currsize > 0 and _registered_psl.cache_info().currsize > 0
    load_site(sites[1], work_dir=tmp_path / "b")
    names_b = registered_domain.cache_info().currsize
    load_site(sites[0], work_dir=tmp_path / "a")  # cached: no read, the caches stay
    assert registered_domain.cache_info().currsize == names_b
    assert _registered_psl.cache_info().currsize == 0  # b's names are not encoded yet
