"""`fedsec triage` end to end: a real server process on a loopback port, a real headless
Chromium clicking a verdict that lands fsync'd in SITE/work/verdicts.jsonl, and the page's
local-only defences (Host header, token, JSON content type, body cap, escaping) refused at the
request level with nothing appended."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from common.model import ModelSpec, build_model, model_to_bytes
from tests.conftest import fedsec_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ANALYST = "alice"
MARKUP = '<img src=x onerror="document.title=1"><b>bold</b>'
STARTUP_GUARD_SECONDS = 120  # a hang guard for the server's first line, not a timing assertion


@pytest.fixture(scope="module")
def scored_site(tmp_path_factory) -> tuple[Path, Path]:
    """A small generated site scored by `fedsec score --site` (default --out) with a model;
    the threshold keeps the top 3% of names so the page is small."""
    from client.scoring import score_command
    from experiments.generator import generate_sites
    from fedsec.cli import app

    root = tmp_path_factory.mktemp("triage")
    site = generate_sites(out_dir=root / "sites", n_sites=1, n_days=2, seed=3, scale=0.1)[0]
    model = root / "model.npz"
    model.write_bytes(model_to_bytes(build_model(ModelSpec(), seed=0)))
    probe = root / "probe" / "alerts.jsonl"
    probe.parent.mkdir()
    logs = site / "logs"
    assert score_command(model=model, logs=[logs], out=probe, site_dir=site, threshold=0.0) == 0
    scores = [json.loads(line)["score"] for line in probe.read_text().splitlines()]
    threshold = float(np.quantile(scores, 0.97))
    args = ["score", "--site", str(site), "--model", str(model), "--logs", str(logs)]
    result = CliRunner().invoke(app, [*args, "--threshold", str(threshold)])
    assert result.exit_code == 0, result.output
    assert (site / "work" / "score" / "alerts.jsonl").is_file()
    return site, model


def start_triage(site: Path, model: Path, tmp_path: Path, *extra: str) -> tuple:
    """`fedsec triage` as a child process on a free port; returns (process, url, out path)."""
    out, err = tmp_path / "triage.out", tmp_path / "triage.err"
    command = [sys.executable, "-m", "fedsec", "triage", "--site", str(site)]
    command += ["--model", str(model), "--port", "0", "--limit", "8", "--analyst", ANALYST]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [*command, *extra], cwd=tmp_path, env=fedsec_env(tmp_path), stdout=stdout, stderr=stderr
        )
    guard = time.monotonic() + STARTUP_GUARD_SECONDS
    while time.monotonic() < guard and process.poll() is None:
        found = re.search(r"http://127\.0\.0\.1:\d+/", out.read_text())
        if found:
            return process, found.group(0), out
        time.sleep(0.1)
    stop(process)
    pytest.fail(f"fedsec triage printed no URL:\n{out.read_text()}\n{err.read_text()}")


def stop(process: subprocess.Popen) -> int:
    """SIGTERM by PID, then SIGKILL if it does not stop."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
    return process.wait()


@pytest.fixture(scope="module")
def server(scored_site, tmp_path_factory) -> Iterator[tuple[str, Path, Path, subprocess.Popen]]:
    site, model = scored_site
    process, url, out = start_triage(site, model, tmp_path_factory.mktemp("server"))
    try:
        yield url, site, out, process
    finally:
        stop(process)


def verdict_lines(site: Path) -> list[dict]:
    path = site / "work" / "verdicts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def host_groups(site: Path) -> list[dict]:
    from client.triage import hosts_path, read_host_groups

    return read_host_groups(hosts_path(site / "work" / "score" / "alerts.jsonl"))


def request(
    url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body) of one plain request; HTTP errors are answers here, not exceptions."""
    method = "GET" if body is None else "POST"
    call = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def token_of(url: str) -> str:
    status, page = request(url)
    assert status == 200
    return re.search(rb'name="fedsec-token" content="([^"]+)"', page).group(1).decode()


def post_verdict(url: str, payload: dict, **headers: str) -> tuple[int, bytes]:
    sent = {"Content-Type": "application/json", "X-Fedsec-Token": token_of(url), **headers}
    return request(url + "api/verdict", body=json.dumps(payload).encode(), headers=sent)


def browser():
    """Debian's headless Chromium through its chromedriver; skip (or, in CI, fail) without."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (
            f"the browser test needs {', '.join(missing)} (apt install chromium chromium-driver)"
        )
        if os.environ.get("FEDSEC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FEDSEC_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.mark.slow
def test_clicking_malicious_on_the_top_host_stores_the_verdict(server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, site, out, _ = server
    top = host_groups(site)[0]
    before = len(verdict_lines(site))
    driver = browser()
    try:
        driver.get(url)
        group = driver.find_element(By.CSS_SELECTOR, "#groups section.group")
        judge = group.find_element(By.CSS_SELECTOR, ":scope > .judge")
        assert judge.get_attribute("data-target") == top["host"]
        judge.find_element(By.CSS_SELECTOR, "input.why").send_keys(MARKUP)
        judge.find_element(By.CSS_SELECTOR, "button.malicious").click()
        status = judge.find_element(By.CSS_SELECTOR, ".status")
        WebDriverWait(driver, 30).until(lambda _: "stored: malicious" in status.text)
        # The why text came back as text: no element was made of it.
        assert MARKUP in status.text
        assert status.find_elements(By.CSS_SELECTOR, "*") == []
        lines = verdict_lines(site)
        assert len(lines) == before + 1
        stored = lines[-1]
        assert (stored["analyst"], stored["subject"], stored["verdict"]) == (
            ANALYST,
            "host",
            "malicious",
        )
        assert stored["target"] == top["host"]
        assert stored["names"] == top["names"]
        assert stored["why"] == MARKUP
        # On load the page shows what is already judged, still as text.
        driver.refresh()
        judge = driver.find_element(By.CSS_SELECTOR, "#groups section.group > .judge")
        shown = judge.find_element(By.CSS_SELECTOR, ".status")
        assert "stored: malicious by alice" in shown.text and MARKUP in shown.text
        assert shown.find_elements(By.CSS_SELECTOR, "*") == []
        assert driver.title == "fedsec triage"  # the onerror handler never ran
    finally:
        driver.quit()
    assert "verdict malicious on host" in out.read_text()


def test_a_domain_verdict_through_the_api_and_markup_renders_as_text(server) -> None:
    url, site, _, _ = server
    name = host_groups(site)[0]["names"][-1]
    before = len(verdict_lines(site))
    why = "<script>alert(1)</script>"
    status, body = post_verdict(
        url, {"subject": "domain", "target": name, "verdict": "benign", "why": why}
    )
    assert status == 200, body
    assert json.loads(body)["stored"]["names"] == [name]
    assert verdict_lines(site)[before:] == [json.loads(body)["stored"]]
    _, page = request(url)
    assert page.count(b"<script") == 1  # only the page's own script
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "case",
    ["wrong-host", "no-token", "wrong-token", "form-content-type", "oversized", "unknown-target"],
)
def test_refused_requests_append_nothing(server, case: str) -> None:
    url, site, _, _ = server
    host = host_groups(site)[0]["host"]
    payload = {"subject": "host", "target": host, "verdict": "benign", "why": "x"}
    headers = {"Content-Type": "application/json", "X-Fedsec-Token": token_of(url)}
    body = json.dumps(payload).encode()
    expected = {
        "wrong-host": 421,
        "no-token": 403,
        "wrong-token": 403,
        "form-content-type": 415,
        "oversized": 413,
        "unknown-target": 404,
    }[case]
    if case == "wrong-host":
        headers["Host"] = "rebound.example:" + url.rsplit(":", 1)[1].strip("/")
    elif case == "no-token":
        del headers["X-Fedsec-Token"]
    elif case == "wrong-token":
        headers["X-Fedsec-Token"] = "x" * 43
    elif case == "form-content-type":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif case == "oversized":
        body = json.dumps({**payload, "why": "x" * 40_000}).encode()
    else:
        body = json.dumps({**payload, "target": "10.255.255.254"}).encode()
    before = verdict_lines(site)
    status, answer = request(url + "api/verdict", body=body, headers=headers)
    assert status == expected, answer
    assert verdict_lines(site) == before


def test_wrong_host_cannot_read_the_page(server) -> None:
    url, _, _, _ = server
    port = url.rsplit(":", 1)[1].strip("/")
    status, page = request(url, headers={"Host": f"attacker.example:{port}"})
    assert status == 421 and b"fedsec-token" not in page
    status, _ = request(url, headers={"Host": f"localhost:{port}"})
    assert status == 200
    with urllib.request.urlopen(url, timeout=30) as answer:
        policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_names_hosts_and_explanations_with_markup_render_as_text(tmp_path: Path) -> None:
    """Score files and intel are attacker-influenced: a name, a host, a family with markup."""
    from client.triage_web import Explanations, TriageData, render_page
    from client.verdicts import make_verdict

    evil = "<img src=x onerror=alert(1)>"
    group = {
        "rank": 1,
        "host": f"10.0.0.1{evil}",
        "name_count": 1,
        "names": [f"a{evil}.example"],
        "registered_domains": [
            {"registered_domain": f"{evil}.example", "names": [f"a{evil}.example"]}
        ],
        "max_score": 0.9,
        "query_count": 3,
        "nxdomain_share": 0.5,
        "first_seen": "2026-01-01T00:00:00Z",
        "priority": 2.7,
    }
    explanation = {
        "domain": f"a{evil}.example",
        "attribution": [[char, 0.1] for char in f"a{evil}.example"],
        "substrings": [{"text": evil, "weight": 1.0}],
        "nearest_families": [{"family": evil, "similarity": 0.5, "example": evil}],
        "features": {evil: evil},
        "evidence": {"hosts": [evil]},
    }
    data = TriageData(
        site=tmp_path,
        alerts_path=tmp_path / "alerts.jsonl",
        verdicts_file=tmp_path / "verdicts.jsonl",
        analyst=evil,
        alerts={},
        groups=[group],
        budget_per_day=10.0,
        plot_png=None,
        explanations=Explanations(state="ready", by_domain={explanation["domain"]: explanation}),
    )
    judged = make_verdict(
        analyst=evil, subject="host", target=group["host"], verdict="benign", names=["a.example"]
    )
    page = render_page(data, token="t", latest={("host", group["host"]): judged})
    tags = Tags()
    tags.feed(page)
    assert "img" not in tags.seen and not tags.handlers
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 8


class Tags(HTMLParser):
    """Every element and event-handler attribute a browser would build from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_bind_refuses_a_non_loopback_address_and_score_needs_out_or_site(tmp_path: Path) -> None:
    from fedsec.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["triage", "--site", str(tmp_path), "--model", "m.npz", "--bind", "0.0.0.0"]
    )
    assert result.exit_code == 2
    assert "--bind 0.0.0.0 is not a loopback address" in result.output
    result = runner.invoke(app, ["score", "--model", "m.npz", "--logs", str(tmp_path)])
    assert result.exit_code == 2
    assert "--out is required without --site" in result.output


def test_sigterm_stops_the_server_cleanly(server) -> None:
    url, _, out, process = server
    assert stop(process) == 0
    assert out.read_text().rstrip().endswith("triage page stopped")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


@pytest.mark.parametrize("state", ["pending", "failed"])
def test_the_page_works_without_explanations_and_says_so(tmp_path: Path, state: str) -> None:
    from client.triage_web import Explanations, TriageData, render_page

    group = {"rank": 1, "host": "10.0.0.1", "names": ["qxkz.example"], "registered_domains": []}
    data = TriageData(
        site=tmp_path,
        alerts_path=tmp_path / "alerts.jsonl",
        verdicts_file=tmp_path / "verdicts.jsonl",
        analyst="alice",
        alerts={},
        groups=[group],
        budget_per_day=None,
        plot_png=None,
        explanations=Explanations(state=state, detail="RuntimeError: explainer broke"),
    )
    page = render_page(data, token="t", latest={})
    assert "the page works without them" in page
    assert ("explainer broke" in page) == (state == "failed")
    assert 'data-target="10.0.0.1"' in page


def test_the_page_draws_whole_groups_up_to_its_name_cap() -> None:
    from client.triage_web import within_page

    groups = [{"names": [f"n{index}-{name}.example" for name in range(150)]} for index in range(5)]
    assert len(within_page(groups, max_names=400)) == 2
    assert len(within_page(groups[:1], max_names=10)) == 1  # the top group is always shown
