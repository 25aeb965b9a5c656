"""The triage page: the site's alerts grouped by host, explained, judged in a local browser.

`fedsec triage --site SITE --model MODEL` serves one page on 127.0.0.1 (standard library HTTP
server, no framework, no external assets: it works offline). Each verdict the analyst clicks is
appended through :func:`client.verdicts.append_verdict` to ``SITE/work/verdicts.jsonl`` and
acknowledged only once it is fsync'd. Nothing here leaves the site.

The page holds the site's names, so it defends itself against the other pages of the analyst's
browser: the Host header must name the loopback address and port (DNS rebinding), every POST
carries a per-run random token that only this page holds and a JSON content type (cross-site
forms), request bodies are capped, a strict Content-Security-Policy allows only this server's
own script, style and image, and every value is HTML-escaped: names, hosts, ``why`` texts and
intel family names are attacker-chosen strings.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hmac
import html
import http.server
import io
import ipaddress
import json
import math
import os
import secrets
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Names drawn on one page (~0.7 KB of HTML each): the page stays a few tens of MB at most
# whatever --limit and the group sizes; the groups past it are counted, not drawn.
MAX_PAGE_NAMES = 20_000
MAX_BODY = 32 * 1024  # a verdict is subject, target, verdict and <= 2,000 characters of why
REQUEST_TIMEOUT = 15.0  # seconds a connection may idle: a stalled client cannot pin a thread
TOKEN_HEADER = "X-Fedsec-Token"
VERDICT_PATH = "/api/verdict"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ATTRIBUTION_LEVELS = 4  # colour steps per sign (CSS classes p1..p4, n1..n4)
JUDGEMENTS = ("malicious", "benign", "unsure")


class TriageError(ValueError):
    """The page cannot start; the message is one line naming the file or option and the fix."""


# --- data ------------------------------------------------------------------------------------


@dataclass
class Explanations:
    """What the background explanation job has produced so far (read by every page view)."""

    state: str = "pending"  # pending | ready | failed
    detail: str = ""
    by_domain: dict[str, Mapping] = field(default_factory=dict)
    campaigns: list[Mapping] = field(default_factory=list)
    campaign_error: str = ""


@dataclass
class TriageData:
    """Everything the page shows that does not change while it runs (verdicts are re-read)."""

    site: Path
    alerts_path: Path
    verdicts_file: Path
    analyst: str
    alerts: dict[str, dict]
    groups: list[dict]
    budget_per_day: float | None
    plot_png: bytes | None
    explanations: Explanations = field(default_factory=Explanations)

    def __post_init__(self) -> None:
        self.by_target = {group_target(group): group for group in self.groups}
        self.shown_names = {name for group in self.groups for name in group_names(group)}


def group_target(group: Mapping) -> str:
    """A host group's verdict target: its client address, or its registered domain when the
    logs carry no client column (then the groups are one per registered domain)."""
    host = group.get("host")
    if isinstance(host, str) and host:
        return host
    registered = group.get("registered_domains") or [{}]
    return str(registered[0].get("registered_domain") or (group_names(group) or ["?"])[0])


def group_names(group: Mapping) -> list[str]:
    return [str(name) for name in group.get("names") or []]


def load_data(*, site: Path, model: Path, alerts: Path, analyst: str, limit: int) -> TriageData:
    """Read the score outputs and the site's alert budget; TriageError names what is missing."""
    from client.triage import hosts_path, read_alerts, read_host_groups
    from client.verdicts import verdicts_path

    if not (site / "site.toml").is_file():
        raise TriageError(f"--site {site}: no site.toml there (fix: give the site folder)")
    if not model.is_file():
        raise TriageError(f"--model {model}: not found (fix: give the model.npz that scored)")
    groups_file = hosts_path(alerts)
    for path in (alerts, groups_file):
        if not path.is_file():
            raise TriageError(
                f"{path}: not found (fix: run `fedsec score --site {site} --model {model} "
                "--logs ...` first, or give --alerts)"
            )
    records = read_alerts(alerts)
    groups = within_page(read_host_groups(groups_file, limit=limit))
    budget = alert_budget(site)
    return TriageData(
        site=site,
        alerts_path=alerts,
        verdicts_file=verdicts_path(site),
        analyst=analyst,
        alerts={str(record["domain"]): record for record in records},
        groups=groups,
        budget_per_day=budget,
        plot_png=alerts_plot(records, budget),
    )


def within_page(groups: list[dict], *, max_names: int = MAX_PAGE_NAMES) -> list[dict]:
    """The leading groups whose names fit the page (the first always does: <= 200 names)."""
    kept, names = [], 0
    for group in groups:
        names += len(group_names(group))
        if kept and names > max_names:
            break
        kept.append(group)
    return kept


def alert_budget(site: Path) -> float | None:
    """Alerts per day the site's analysts can triage (site.toml [analysts]); None if unreadable."""
    from client.site import load_site_config
    from common.config import ConfigError
    from common.fragility import alert_budget_per_day

    try:
        analysts = load_site_config(site).analysts
        return alert_budget_per_day(
            analysts=analysts.count,
            productive_hours_per_day=analysts.productive_hours_per_day,
            minutes_per_alert=analysts.minutes_per_alert,
        )
    except (ConfigError, ValueError, OSError):
        return None


def alerts_plot(records: Sequence[Mapping], budget: float | None) -> bytes | None:
    """PNG: the alerts' score distribution, and alerts per day (first seen) against the budget."""
    if not records:
        return None
    from matplotlib.figure import Figure

    scores = [float(record["score"]) for record in records]
    days = Counter(str(record.get("first_seen", ""))[:10] for record in records)
    figure = Figure(figsize=(9, 2.6), dpi=90, layout="constrained")
    left, right = figure.subplots(1, 2)
    left.hist(scores, bins=30, color="#b2182b")
    left.set(xlabel="model score", ylabel="alerting domains", title="Scores of the alerts")
    labels = sorted(days)
    right.bar(range(len(labels)), [days[label] for label in labels], color="#4d4d4d")
    right.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    if budget is not None and math.isfinite(budget):
        right.axhline(budget, color="#2166ac", linewidth=1.5, label=f"budget {budget:,.0f}/day")
        right.legend(loc="upper left", fontsize=7)
    right.set(ylabel="new alerting domains", title="Alerts per day (first seen) vs budget")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def explain_in_background(data: TriageData, *, model: Path, limit: int) -> threading.Thread:
    """Explain the top alerts in a daemon thread: the page serves at once, without them until
    they are ready, and keeps working (saying so) if explaining fails."""

    def run() -> None:
        state = data.explanations
        try:
            from client.explain import explain_alerts

            path = explain_alerts(model, data.site, data.alerts_path, limit=limit)
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            explained = document.get("explanations")
            if not isinstance(explained, dict):
                raise ValueError(f"{path}: no 'explanations' object")
            state.by_domain = explained
            state.state = "ready"
            _say(f"explanations ready: {len(explained)} alerts ({path})")
        except Exception as error:  # noqa: BLE001 - the page must outlive any explainer failure
            state.detail = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            state.state = "failed"
            _say(f"explanations unavailable: {state.detail}", err=True)
            return
        try:
            from client.explain import campaigns

            state.campaigns = list(campaigns(data.groups, state.by_domain))
        except Exception as error:  # noqa: BLE001
            state.campaign_error = f"{type(error).__name__}: {error}".splitlines()[0]

    thread = threading.Thread(target=run, name="fedsec-explain", daemon=True)
    thread.start()
    return thread


def _say(line: str, *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


# --- rendering -------------------------------------------------------------------------------


def h(value: object) -> str:
    """HTML-escaped text (quotes too: values also go into attributes)."""
    return html.escape(str(value), quote=True)


def _number(value: object, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def _count(value: object, noun: str) -> str:
    return f"{_number(value)} {noun}{'' if value == 1 else 's'}"


def _share(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.0f}%"
    return "–"


def stored_text(verdict: Any) -> str:
    """The status line of a judged target; the page's script writes the same words."""
    why = f" — {verdict.why}" if verdict.why else ""
    return f"stored: {verdict.verdict} by {verdict.analyst} at {verdict.time}{why}"


def judge_controls(subject: str, target: str, current: Any) -> str:
    """The why field, the three verdict buttons and the status of one host group or domain."""
    status = (
        f'<span class="status stored {h(current.verdict)}">{h(stored_text(current))}</span>'
        if current is not None
        else '<span class="status">not judged</span>'
    )
    buttons = "".join(
        f'<button type="button" class="{verdict}" data-verdict="{verdict}">{verdict}</button>'
        for verdict in JUDGEMENTS
    )
    return (
        f'<div class="judge" data-subject="{h(subject)}" data-target="{h(target)}">'
        f'<input class="why" type="text" maxlength="2000" placeholder="why (optional)">'
        f"{buttons} {status}</div>"
    )


def render_attribution(explanation: Mapping) -> str:
    """The name's characters coloured by their signed contribution to the score."""
    pairs = [
        (str(pair[0]), float(pair[1]))
        for pair in explanation.get("attribution") or []
        if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[1], int | float)
    ]
    if not pairs:
        return h(explanation.get("domain", ""))
    scale = max((abs(weight) for _, weight in pairs if math.isfinite(weight)), default=0.0)
    spans = []
    for char, weight in pairs:
        level = 0
        if scale > 0 and math.isfinite(weight):
            level = min(ATTRIBUTION_LEVELS, math.ceil(abs(weight) / scale * ATTRIBUTION_LEVELS))
        kind = "z" if level == 0 else f"{'p' if weight > 0 else 'n'}{level}"
        spans.append(f'<span class="a {kind}" title="{weight:+.3f}">{h(char)}</span>')
    return f'<span class="attribution">{"".join(spans)}</span>'


def _pairs(mapping: object) -> str:
    if not isinstance(mapping, Mapping) or not mapping:
        return "–"
    return ", ".join(f"{h(key)}: {h(_plain(value))}" for key, value in mapping.items())


def _plain(value: object) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value[:10]) + (" …" if len(value) > 10 else "")
    return str(value)


def render_explanation(explanation: Mapping) -> str:
    """Why the model alerted on one name: substrings, nearest families, features, evidence."""
    substrings = ", ".join(
        f"<code>{h(item.get('text', ''))}</code> ({_number(item.get('weight'))})"
        for item in explanation.get("substrings") or []
        if isinstance(item, Mapping)
    )
    families = ", ".join(
        f"{h(item.get('family', ''))} ({_number(item.get('similarity'), 2)}, "
        f"e.g. <code>{h(item.get('example', ''))}</code>)"
        for item in explanation.get("nearest_families") or []
        if isinstance(item, Mapping)
    )
    rows = (
        ("pushed the score up", substrings or "–"),
        ("nearest known families (site intel)", families or "none in the site's intel"),
        ("simple features", _pairs(explanation.get("features"))),
        ("evidence in the logs", _pairs(explanation.get("evidence"))),
    )
    cells = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="explanation">{cells}</table>'


def render_name(data: TriageData, name: str, latest: Mapping) -> str:
    alert = data.alerts.get(name, {})
    explanation = data.explanations.by_domain.get(name)
    if isinstance(explanation, Mapping):
        try:
            shown = render_attribution(explanation)
            detail = f"<details><summary>why</summary>{render_explanation(explanation)}</details>"
        except (TypeError, ValueError, AttributeError):
            shown, detail = h(name), '<span class="note">explanation unreadable</span>'
    elif data.explanations.state == "ready":
        shown, detail = h(name), '<span class="note"> (not among the alerts explained)</span>'
    else:
        shown, detail = h(name), ""
    return (
        f'<tr class="name"><td class="domain">{shown}{detail}</td>'
        f"<td>{_number(alert.get('score'))}</td><td>{_number(alert.get('query_count'))}</td>"
        f"<td>{_number(alert.get('host_count'))}</td><td>{_share(alert.get('nxdomain_share'))}"
        f"</td><td>{judge_controls('domain', name, latest.get(('domain', name)))}</td></tr>"
    )


def _time(value: object) -> str:
    """An alert time to the second (the files keep microseconds)."""
    text = str(value or "–")
    return text[:19].replace("T", " ") + (" UTC" if text.endswith("Z") else "")


def render_group(data: TriageData, group: Mapping, latest: Mapping) -> str:
    target = group_target(group)
    host = group.get("host")
    rank = _number(group.get("rank"))
    title = f"host {h(host)}" if host else f"registered domain {h(target)}"
    facts = (
        f"{_number(group.get('name_count'))} names · max score {_number(group.get('max_score'))}"
        f" · {_number(group.get('query_count'))} queries · NXDOMAIN "
        f"{_share(group.get('nxdomain_share'))} · first seen {h(_time(group.get('first_seen')))}"
        f" · priority {_number(group.get('priority'))}"
    )
    shown = group_names(group)
    covered = set(shown)  # the table lists exactly the names a host verdict covers
    rows = []
    for entry in group.get("registered_domains") or []:
        names = [str(name) for name in entry.get("names") or [] if str(name) in covered]
        rows.append(
            f'<tr class="registered"><th colspan="6">{h(entry.get("registered_domain", ""))} '
            f"({_count(entry.get('name_count', len(names)), 'name')})</th></tr>"
        )
        rows += [render_name(data, name, latest) for name in names]
    return (
        f'<section class="group" id="g-{h(rank)}" data-rank="{h(rank)}">'
        f'<h3><span class="rank">#{h(rank)}</span> {title}</h3>'
        f'<p class="facts">{facts}</p>'
        f"{judge_controls('host', target, latest.get(('host', target)))}"
        f"<details><summary>{len(shown)} names shown (a host verdict covers these)</summary>"
        '<table class="names"><tr><th>name</th><th>score</th><th>queries</th><th>hosts</th>'
        f"<th>NXDOMAIN</th><th>verdict</th></tr>{''.join(rows)}</table></details></section>"
    )


def render_campaigns(state: Explanations) -> str:
    if state.state != "ready":
        return '<p class="note">Campaigns need the explanations (nearest families).</p>'
    if state.campaign_error:
        return f'<p class="note">Campaigns unavailable: {h(state.campaign_error)}</p>'
    if not state.campaigns:
        return '<p class="note">No campaigns: no host group resembles a known family.</p>'
    rows = "".join(
        f"<tr><td>{h(item.get('family', ''))}</td><td>{h(_plain(item.get('hosts') or []))}</td>"
        f"<td>{_rank_links(item.get('ranks'))}</td><td>{_number(item.get('names'))}</td>"
        f"<td>{_number(item.get('similarity'), 2)}</td></tr>"
        for item in state.campaigns
        if isinstance(item, Mapping)
    )
    return (
        '<table class="campaigns"><tr><th>nearest family</th><th>hosts</th><th>groups</th>'
        f"<th>names</th><th>similarity</th></tr>{rows}</table>"
    )


def _rank_links(ranks: object) -> str:
    """Links to the campaign's host groups on this page (only whole-number ranks)."""
    if not isinstance(ranks, list):
        return "–"
    whole = [rank for rank in ranks if isinstance(rank, int) and not isinstance(rank, bool)]
    links = [f'<a href="#g-{rank}">#{rank}</a>' for rank in whole[:20]]
    return " ".join(links) + (" …" if len(whole) > 20 else "")


def render_explanation_state(state: Explanations) -> str:
    if state.state == "ready":
        return f'<p class="note">Explanations: {len(state.by_domain):,} alerts explained.</p>'
    if state.state == "failed":
        return (
            '<p class="note warn">Explanations unavailable; the page works without them '
            f"({h(state.detail)}).</p>"
        )
    return (
        '<p class="note">Explanations are still being computed; the page works without them '
        "(reload to see them when ready).</p>"
    )


def render_page(data: TriageData, *, token: str, latest: Mapping, unreadable: int = 0) -> str:
    """The whole page; every value from the files goes through :func:`h`."""
    budget = (
        f"{data.budget_per_day:,.0f} alerts/day" if data.budget_per_day is not None else "unknown"
    )
    plot = (
        '<img class="plot" src="/plot.png" alt="alert scores and alerts per day vs budget">'
        if data.plot_png
        else ""
    )
    bad = (
        f'<p class="note warn">{unreadable} unreadable verdict line(s) ignored.</p>'
        if unreadable
        else ""
    )
    groups = "".join(render_group(data, group, latest) for group in data.groups)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="fedsec-token" content="{h(token)}">'
        "<title>fedsec triage</title>"
        '<link rel="stylesheet" href="/static/triage.css"></head><body>'
        "<h1>fedsec triage</h1>"
        f'<p class="meta">site {h(data.site)} · alerts {h(data.alerts_path)} · '
        f"{len(data.alerts):,} alerting domains; the top {len(data.groups):,} host groups "
        f"({len(data.shown_names):,} names) shown "
        f"· alert budget {budget} · analyst "
        f"<b>{h(data.analyst)}</b> · verdicts go to {h(data.verdicts_file)} (local only)</p>"
        f"{bad}{plot}{render_explanation_state(data.explanations)}"
        f"<h2>Campaigns</h2>{render_campaigns(data.explanations)}"
        f'<h2>Host groups, ranked</h2><div id="groups">{groups}</div>'
        '<script src="/static/triage.js"></script></body></html>'
    )


SCRIPT = """"use strict";
(function () {
  const token = document.querySelector('meta[name="fedsec-token"]').content;
  async function judge(button) {
    const box = button.closest(".judge");
    const status = box.querySelector(".status");
    const why = box.querySelector("input.why");
    const buttons = box.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    status.textContent = "saving…";
    status.className = "status saving";
    try {
      const response = await fetch("/api/verdict", {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-Fedsec-Token": token},
        body: JSON.stringify({subject: box.dataset.subject, target: box.dataset.target,
                              verdict: button.dataset.verdict, why: why ? why.value : ""}),
        credentials: "same-origin",
        cache: "no-store",
      });
      const answer = await response.json();
      if (!response.ok) { throw new Error(answer.error || String(response.status)); }
      const v = answer.stored;
      status.textContent = "stored: " + v.verdict + " by " + v.analyst + " at " + v.time +
        (v.why ? " — " + v.why : "");
      status.className = "status stored " + v.verdict;
    } catch (error) {
      status.textContent = "not stored: " + error.message;
      status.className = "status failed";
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".judge button[data-verdict]");
    if (button) { judge(button); }
  });
})();
"""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin: 0 0 .3em; } h3 { margin: .2em 0; } h4 { margin: .6em 0 .2em; }
.meta, .facts, .note { color: #555; } .warn { color: #8a4b00; }
.plot { max-width: 100%; border: 1px solid #ddd; }
.group { border: 1px solid #ccc; border-radius: 4px; padding: .5em .8em; margin: .7em 0; }
.rank { color: #888; }
table { border-collapse: collapse; } td, th { padding: .15em .5em; text-align: left; }
table.names td, table.names th { border-bottom: 1px solid #eee; vertical-align: top; }
.explanation th { font-weight: normal; color: #666; }
tr.registered th { padding-top: .6em; color: #444; }
.domain { font-family: ui-monospace, monospace; }
.judge { margin: .3em 0; white-space: nowrap; } .judge input.why { width: 14em; }
.names .judge input.why { width: 8em; }
button.malicious { color: #8b0000; } button.benign { color: #14532d; }
.status { margin-left: .5em; color: #666; }
.status.stored { font-weight: 600; } .status.malicious { color: #8b0000; }
.status.benign { color: #14532d; } .status.failed { color: #b00; }
.a.p1 { background: #fddbc7; } .a.p2 { background: #f4a582; } .a.p3 { background: #d6604d; }
.a.p4 { background: #b2182b; color: #fff; } .a.n1 { background: #d1e5f0; }
.a.n2 { background: #92c5de; } .a.n3 { background: #4393c3; }
.a.n4 { background: #2166ac; color: #fff; }
"""


# --- server ----------------------------------------------------------------------------------


class Refused(Exception):
    """A request the page will not serve: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TriageServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], data: TriageData, *, allow_remote: bool) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, TriageHandler)
        self.data = data
        self.token = secrets.token_urlsafe(32)
        port = self.server_address[1]
        self.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        if allow_remote:
            host = address[0]
            self.allowed_hosts.add(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


class TriageHandler(http.server.BaseHTTPRequestHandler):
    server: TriageServer
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return "fedsec-triage"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the command prints one line per verdict and per refusal, nothing per GET."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        try:
            self._check_host()
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, self._page().encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/static/triage.js":
                self._send(200, SCRIPT.encode("utf-8"), "text/javascript; charset=utf-8")
            elif path == "/static/triage.css":
                self._send(200, STYLE.encode("utf-8"), "text/css; charset=utf-8")
            elif path == "/plot.png" and self.server.data.plot_png:
                self._send(200, self.server.data.plot_png, "image/png")
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                raise Refused(404, "not found")
        except Refused as refusal:
            self._refuse(refusal)

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._check_host()
            if self.path != VERDICT_PATH:
                raise Refused(404, "not found")
            self._check_origin()
            self._check_token()
            payload = self._json_body()
            verdict = record_verdict(self.server.data, payload)
        except Refused as refusal:
            self._refuse(refusal)
            return
        _say(
            f"verdict {verdict.verdict} on {verdict.subject} {verdict.target} "
            f"({len(verdict.names)} names) by {verdict.analyst} -> {self.server.data.verdicts_file}"
        )
        body = json.dumps({"stored": verdict.record()}, ensure_ascii=False).encode("utf-8")
        self._send(200, body, "application/json; charset=utf-8")

    def _page(self) -> str:
        from client.verdicts import read_verdicts

        verdicts = read_verdicts(self.server.data.verdicts_file)
        return render_page(
            self.server.data,
            token=self.server.token,
            latest=verdicts.latest_by_target(),
            unreadable=verdicts.quarantined,
        )

    def _check_host(self) -> None:
        # DNS rebinding: a hostile site's name resolving to 127.0.0.1 arrives with its own Host.
        if self.headers.get("Host", "").strip().lower() not in self.server.allowed_hosts:
            raise Refused(421, "wrong Host header (open the URL fedsec triage printed)")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.allowed_hosts:
            raise Refused(403, "cross-origin request")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "cross-site request")

    def _check_token(self) -> None:
        sent = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), self.server.token.encode()):
            raise Refused(403, f"missing or wrong {TOKEN_HEADER} (reload the page)")

    def _json_body(self) -> Mapping:
        kind = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            raise Refused(415, "Content-Type must be application/json")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise Refused(411, "Content-Length required")
        length = int(length_text)
        if length > MAX_BODY:
            raise Refused(413, f"body over {MAX_BODY} bytes")
        try:
            payload = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise Refused(400, "body is not JSON") from None
        if not isinstance(payload, dict):
            raise Refused(400, "body must be a JSON object")
        return payload

    def _refuse(self, refusal: Refused) -> None:
        _say(
            f"refused {self.command} {self.path[:80]}: {refusal.status} {refusal.reason}", err=True
        )
        self.close_connection = True  # an unread body must not be parsed as the next request
        body = json.dumps({"error": refusal.reason}).encode("utf-8")
        self._send(refusal.status, body, "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def record_verdict(data: TriageData, payload: Mapping) -> Any:
    """Validate a clicked verdict against what the page shows, append it durably, return it.

    A host verdict covers the group's names exactly as the page shows them (taken from the
    server's copy, never from the request); a domain verdict only a name the page shows.
    """
    from client.verdicts import VerdictError, append_verdict, make_verdict

    subject, target = payload.get("subject"), payload.get("target")
    if subject == "host":
        group = data.by_target.get(target) if isinstance(target, str) else None
        if group is None:
            raise Refused(404, "unknown host group")
        names: list[str] = group_names(group)
    elif subject == "domain":
        if not isinstance(target, str) or target not in data.shown_names:
            raise Refused(404, "unknown domain")
        names = [target]
    else:
        raise Refused(400, "subject must be host or domain")
    try:
        verdict = make_verdict(
            analyst=data.analyst,
            subject=subject,
            target=target,
            verdict=payload.get("verdict"),
            names=names,
            why=payload.get("why"),
        )
        append_verdict(data.verdicts_file, verdict)
    except VerdictError as error:
        raise Refused(400, str(error)) from None
    except OSError as error:
        raise Refused(500, f"verdict not stored: {error.strerror or error}") from None
    return verdict


# --- command ---------------------------------------------------------------------------------


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def default_analyst() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "analyst"


def triage_command(
    *,
    site: Path,
    model: Path,
    alerts: Path,
    analyst: str | None,
    bind: str,
    port: int,
    limit: int,
    allow_remote: bool,
) -> int:
    """`fedsec triage`: serve the page until Ctrl-C or SIGTERM; 0 then, 2 on bad input."""
    from client.verdicts import VerdictError, make_verdict

    if not is_loopback(bind) and not allow_remote:
        _say(
            f"fedsec: error: --bind {bind} is not a loopback address and the page has no login "
            "(fix: keep 127.0.0.1, or add --allow-remote)",
            err=True,
        )
        return 2
    if not is_loopback(bind):
        _say(
            f"fedsec: warning: listening on {bind}: anyone who reaches it sees this site's alerts "
            "and can record verdicts",
            err=True,
        )
    who = analyst if analyst is not None else default_analyst()
    try:
        make_verdict(analyst=who, subject="domain", target="example.com", verdict="unsure")
        data = load_data(site=site, model=model, alerts=alerts, analyst=who, limit=limit)
        server = TriageServer((bind.strip("[]"), port), data, allow_remote=allow_remote)
    except VerdictError as error:
        _say(f"fedsec: error: --analyst: {str(error).split(': ', 1)[-1]}", err=True)
        return 2
    except (TriageError, ValueError, OSError) as error:
        _say(f"fedsec: error: {str(error).splitlines()[0] if str(error) else error!r}", err=True)
        return 2
    explaining = explain_in_background(data, model=model, limit=limit)
    code = serve(server)
    if explaining.is_alive():
        # Interpreter teardown under a running torch thread aborts ("terminate called ..."):
        # leave at once; the explanation file is written atomically, so nothing is half-done.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def serve(server: TriageServer) -> int:
    """Serve until Ctrl-C or SIGTERM, then close the socket and say so."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    started = dt.datetime.now(dt.UTC).strftime("%H:%M:%SZ")
    _say(f"triage page: http://{shown}:{port}/ (since {started}; Ctrl-C stops it)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    _say("triage page stopped")
    return 0
