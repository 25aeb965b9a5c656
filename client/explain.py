"""Why an alert fired: the characters that pushed its score, the site's nearest families, the
simple features a shortcut baseline reads, and the evidence from the logs.

An analyst who sees only a ranked list of names spends their time rediscovering why each one
was flagged. Every explanation here is computed on the site from the site's model, logs and
intel, written beside the alerts, and read by the local triage page; none of it ever leaves
the site (no reply, metric or report is built from this module).

- Attribution: Captum's integrated gradients on the embedding layer, from the all-padding
  name (the model's "no name" input) to the name; each character's share of
  logit(name) - logit(padding), with Captum's convergence delta per name as its error.
- Nearest families: cosine similarity of the model's pooled convolution features to a bounded,
  deterministic sample of each blocklist family, centred on that sample so the direction all
  generated names share does not make every family look alike.
- Features: the shortcut baseline's own (common.fragility.single_feature_scores), so the page
  shows exactly what a one-feature detector would have seen.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from client.quarantine import Quarantine
from client.site import Intel, load_intel, load_site_config
from client.triage import explained_path, read_alerts
from common.features import PAD_ID, model_view, normalise_domain
from common.files import write_json
from common.fragility import single_feature_scores
from common.model import CharCNN, load_model_file

__all__ = ["campaigns", "explain_alerts", "explain_names"]

# Integrated gradients: Gauss-Legendre steps first, then more for the names whose completeness
# error (Captum's convergence delta, in logits) is above the tolerance. Measured on a trained
# default model over 500 DGA names: 16 steps left a mean |delta| of 0.024 (max 0.12), 32 steps
# 0.013 (max 0.08), 64 steps 0.006 (max 0.035), where alerting names' logit(name) -
# logit(padding) had a median of 6. So 16 steps, and 64 for the ~1 in 10 names above the
# tolerance, cost the least for that error.
ATTRIBUTION_STEPS = 16
REFINED_STEPS = 64
DELTA_TOLERANCE = 0.05
# Floats of forward activations one Captum call may hold (names x steps rows; the backward
# holds about as much again): 64 MiB, ~900 rows of 64 characters for the default model.
# Explaining 500 names then adds ~190 MiB to the process at its peak (2**25: ~350 MiB) and
# took no more CPU on 2 cores.
ACTIVATION_BUDGET = 2**24
REPRESENTATION_BATCH = 1024
FAMILY_SAMPLE = 200  # blocklist names per family compared against, at most
MAX_REFERENCE = 20_000  # blocklist names compared against in all: memory stays bounded
NAMES_PER_COMPARISON = 256
NEIGHBOURS = 5  # a family's similarity: the mean of its NEIGHBOURS closest names
TOP_FAMILIES = 3
TOP_SUBSTRINGS = 3
EVIDENCE_FIELDS = (
    "host_count",
    "hosts",
    "query_count",
    "nxdomain_share",
    "first_seen",
    "last_seen",
)
UNKNOWN_FAMILY = "unknown"
# Alerts explained per file at most: ~2 KB of explanation each, and integrated gradients cost
# ~10 ms of CPU per name on 2 cores; the page shows the top of the ranking anyway.
MAX_LIMIT = 10_000
EXPLAIN_QUARANTINE = Path("work") / "quarantine" / "explain"


class _Uncropped(nn.Module):
    """CharCNN's forward without its shared-padding crop (and without dropout: eval only).

    Captum runs the model once on the names and once on the all-padding baseline; CharCNN
    crops the baseline to a few columns and the names to their own width, so the two embedding
    outputs Captum interpolates between would differ in shape. The caller cuts shared padding
    per batch instead (same rule, same output). `max` replaces `amax`: equal values, and its
    backward is a gather instead of amax's tie-splitting, which Captum runs thousands of times.
    """

    def __init__(self, model: CharCNN) -> None:
        super().__init__()
        self.model = model

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """The max-pooled convolution features: the representation families are compared in."""
        embedded = self.model.embedding(ids).transpose(1, 2)
        return torch.cat(
            [torch.relu(conv(embedded)).max(dim=2).values for conv in self.model.convs], dim=1
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.model.hidden(self.pooled(ids)))
        return self.model.output(hidden).squeeze(1)


def _first_real(ids: np.ndarray) -> np.ndarray:
    """Column of each row's first character (names are left-padded); max_chars if empty."""
    real = ids != PAD_ID
    return np.where(real.any(axis=1), real.argmax(axis=1), ids.shape[1])


def _batches(ids: np.ndarray, *, size: int, keep: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(rows, their ids without shared padding) for rows of similar length, `size` at a time.

    Sorting by length is most of the speed: a batch of 12-character names runs on ~17 columns
    instead of 64. `keep` columns of padding stay, as CharCNN keeps them, so outputs match.
    """
    first = _first_real(ids)
    order = np.argsort(first, kind="stable")
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        cut = max(0, int(first[rows].min()) - keep)
        yield rows, torch.from_numpy(np.ascontiguousarray(ids[rows, cut:], dtype=np.int64))


@dataclass(frozen=True)
class _Attribution:
    """Per row: each column's attribution (0 on padding), logit, and convergence delta."""

    weights: np.ndarray  # [n, max_chars]
    logits: np.ndarray  # [n], float64
    deltas: np.ndarray  # [n]
    steps: np.ndarray  # [n], integration steps used


def _names_per_call(model: CharCNN, steps: int) -> int:
    """Names per Captum call such that its activations stay within ACTIVATION_BUDGET."""
    spec = model.spec
    per_row = spec.max_chars * (spec.embedding_dim + spec.filters_per_width * len(spec.widths))
    return max(1, ACTIVATION_BUDGET // (per_row * steps))


def _integrated_gradients(
    net: _Uncropped, ids: np.ndarray, rows: np.ndarray, *, steps: int, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Attributions [len(rows), max_chars] and deltas [len(rows)] with `steps` steps."""
    weights = np.zeros((len(rows), ids.shape[1]), dtype=np.float64)
    deltas = np.zeros(len(rows), dtype=np.float64)
    explainer = LayerIntegratedGradients(net, net.model.embedding)
    for local, batch in _batches(ids[rows], size=_names_per_call(net.model, steps), keep=keep):
        attributions, delta = explainer.attribute(
            batch,
            baselines=torch.full_like(batch, PAD_ID),
            n_steps=steps,
            method="gausslegendre",
            return_convergence_delta=True,
        )
        per_column = attributions.sum(dim=2).detach().double().numpy()
        weights[local, ids.shape[1] - per_column.shape[1] :] = per_column
        deltas[local] = delta.detach().double().numpy()
    return weights, deltas


def _attribute(model: CharCNN, ids: np.ndarray) -> _Attribution:
    """Integrated gradients for every row, refined where the completeness error is large."""
    net = _Uncropped(model)
    keep = max(model.spec.widths)
    logits = np.zeros(len(ids), dtype=np.float64)
    with torch.no_grad():
        for rows, batch in _batches(ids, size=REPRESENTATION_BATCH, keep=keep):
            logits[rows] = net(batch).double().numpy()
    everyone = np.arange(len(ids))
    weights, deltas = _integrated_gradients(net, ids, everyone, steps=ATTRIBUTION_STEPS, keep=keep)
    steps = np.full(len(ids), ATTRIBUTION_STEPS)
    rough = everyone[np.abs(deltas) > DELTA_TOLERANCE]
    if rough.size:
        weights[rough], deltas[rough] = _integrated_gradients(
            net, ids, rough, steps=REFINED_STEPS, keep=keep
        )
        steps[rough] = REFINED_STEPS
    return _Attribution(weights, logits, deltas, steps)


def _character_weights(name: str, view: str, row: np.ndarray) -> list[list]:
    """[[char, weight]] over the whole (lower-cased) name; what the model does not read is 0.

    The model reads `view` (its registered domain, its right end if too long); left-padding
    puts the view's characters in the row's last columns, one column per character.
    """
    shown = view[-row.shape[0] :]
    columns = row[row.shape[0] - len(shown) :] if shown else row[:0]
    whole = normalise_domain(name).lower()
    prefix = whole[: -len(shown)] if shown and whole.endswith(shown) else ""
    pairs = [[char, 0.0] for char in prefix]
    pairs += [[char, float(weight)] for char, weight in zip(shown, columns, strict=True)]
    return pairs


def _substrings(pairs: Sequence[Sequence]) -> list[dict]:
    """Contiguous runs of characters that raised the score, the TOP_SUBSTRINGS heaviest."""
    runs: list[tuple[float, int, str]] = []
    text, total, start = "", 0.0, 0
    for position, (char, weight) in enumerate([*pairs, ("", 0.0)]):
        if weight > 0.0:
            text, total = text + char, total + weight
            continue
        if text:
            runs.append((total, start, text))
        text, total, start = "", 0.0, position + 1
    heaviest = sorted(runs, key=lambda run: (-run[0], run[1]))[:TOP_SUBSTRINGS]
    return [{"text": text, "weight": weight} for weight, _, text in heaviest]


def _features(names: Sequence[str]) -> list[dict]:
    """The shortcut baseline's features of each name's registered label, plus labels and TLD."""
    scores = single_feature_scores(names)
    features = []
    for index, name in enumerate(names):
        labels = normalise_domain(name).lower().split(".")
        length = int(scores["label_length"][index])
        features.append(
            {
                "length": length,
                "entropy": float(scores["char_entropy"][index]),
                "digit_share": float(scores["digit_ratio"][index]),
                "vowel_share": 1.0 - float(scores["non_vowel_ratio"][index]) if length else 0.0,
                "labels": len(labels),
                "tld": labels[-1],
            }
        )
    return features


@dataclass(frozen=True)
class _FamilyIndex:
    """The blocklist sample the names are compared with: unit vectors grouped by family."""

    families: list[str]
    bounds: list[tuple[int, int]]  # each family's [start, end) rows in names/vectors
    names: list[str]
    vectors: np.ndarray  # [samples, features], centred, unit length
    centre: np.ndarray


def _sample_key(name: str) -> str:
    # Hash order: deterministic, independent of the file's order, and not alphabetical
    # (which would pick one corner of a family's names).
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _representations(model: CharCNN, names: Sequence[str]) -> np.ndarray:
    """Pooled convolution features [n, filters x widths] of what the model reads."""
    ids = model.spec.encode(names)
    net = _Uncropped(model)
    out = np.zeros((len(names), model.spec.filters_per_width * len(model.spec.widths)))
    with torch.no_grad():
        for rows, batch in _batches(ids, size=REPRESENTATION_BATCH, keep=max(model.spec.widths)):
            out[rows] = net.pooled(batch).double().numpy()
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _family_index(model: CharCNN, intel: Intel) -> _FamilyIndex | None:
    by_family: dict[str, list[str]] = defaultdict(list)
    for name, family in intel.blocklist.items():
        by_family[family or UNKNOWN_FAMILY].append(name)
    if not by_family:
        return None
    per_family = min(FAMILY_SAMPLE, max(1, MAX_REFERENCE // len(by_family)))
    families = sorted(by_family)
    names: list[str] = []
    bounds = []
    for family in families:
        sample = heapq.nsmallest(per_family, by_family[family], key=_sample_key)
        bounds.append((len(names), len(names) + len(sample)))
        names.extend(sample)
    vectors = _representations(model, names)
    # Centring needs a second family: with one, it would only remove that family's own mean.
    centre = vectors.mean(axis=0) if len(families) > 1 else np.zeros(vectors.shape[1])
    return _FamilyIndex(families, bounds, names, _unit(vectors - centre), centre)


def _nearest_families(index: _FamilyIndex, vectors: np.ndarray) -> list[list[dict]]:
    """Per name: up to TOP_FAMILIES families by mean similarity of their closest samples.

    NAMES_PER_COMPARISON names at a time: the similarity block stays under ~40 MB whatever the
    number of names and of blocklist families.
    """
    nearest: list[list[dict]] = []
    for start in range(0, len(vectors), NAMES_PER_COMPARISON):
        nearest += _nearest_in_block(index, vectors[start : start + NAMES_PER_COMPARISON])
    return nearest


def _nearest_in_block(index: _FamilyIndex, vectors: np.ndarray) -> list[list[dict]]:
    similarity = _unit(vectors - index.centre) @ index.vectors.T  # [names, samples]
    scores = np.zeros((len(vectors), len(index.families)))
    closest = np.zeros((len(vectors), len(index.families)), dtype=np.int64)
    for column, (start, end) in enumerate(index.bounds):
        block = similarity[:, start:end]
        k = min(NEIGHBOURS, end - start)
        scores[:, column] = np.sort(block, axis=1)[:, -k:].mean(axis=1)
        closest[:, column] = start + block.argmax(axis=1)
    # Highest similarity first, ties by family name (families are sorted): a stable order.
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_FAMILIES]
    return [
        [
            {
                "family": index.families[column],
                "similarity": float(scores[row, column]),
                "example": index.names[closest[row, column]],
            }
            for column in ranked[row]
        ]
        for row in range(len(vectors))
    ]


def explain_names(
    model: CharCNN,
    names: Sequence[str],
    *,
    intel: Intel | None = None,
    evidence: Mapping[str, Mapping] | None = None,
) -> list[dict]:
    """One explanation per name, in order (see the module docstring and interfaces §2).

    Each also carries `convergence_delta` (Captum's completeness error in logits: the
    attributions sum to logit(name) - logit(padding) minus it) and the `steps` it took.
    """
    if isinstance(names, str | bytes):
        raise TypeError("explain_names expects a sequence of names, not a single string")
    names = list(names)
    if not names:
        return []
    was_training = model.training
    model.eval()
    try:
        ids = model.spec.encode(names)
        attribution = _attribute(model, ids)
        index = _family_index(model, intel) if intel is not None else None
        nearest = (
            _nearest_families(index, _representations(model, names))
            if index is not None
            else [[] for _ in names]
        )
    finally:
        model.train(was_training)
    views = model_view(names, reads=model.spec.reads)
    features = _features(names)
    evidence = evidence or {}
    explanations = []
    for row, name in enumerate(names):
        pairs = _character_weights(name, views[row], attribution.weights[row])
        found = evidence.get(name, {})
        explanations.append(
            {
                "domain": name,
                "score": float(np.exp(-np.logaddexp(0.0, -attribution.logits[row]))),
                "attribution": pairs,
                "substrings": _substrings(pairs),
                "nearest_families": nearest[row],
                "features": features[row],
                "evidence": {key: found[key] for key in EVIDENCE_FIELDS if key in found},
                "convergence_delta": float(attribution.deltas[row]),
                "steps": int(attribution.steps[row]),
            }
        )
    return explanations


def _dominant_family(names: Sequence[str], explanations: Mapping[str, Mapping]) -> tuple[str, list]:
    """(the most common nearest family of the explained names, their similarities to it)."""
    tops = [
        explanations[name]["nearest_families"][0]
        for name in names
        if name in explanations and explanations[name].get("nearest_families")
    ]
    if not tops:
        return UNKNOWN_FAMILY, []
    counts = Counter(top["family"] for top in tops)
    family = min(counts, key=lambda item: (-counts[item], item))
    return family, [top["similarity"] for top in tops if top["family"] == family]


def campaigns(host_groups: Sequence[Mapping], explanations: Mapping[str, Mapping]) -> list[dict]:
    """Host groups clustered by the dominant nearest family of their names.

    A group whose names have no explanation (or no nearest family: no intel) falls under
    "unknown". `names` counts distinct names over the campaign's groups; `similarity` is the
    mean similarity of those names whose nearest family is the campaign's (0.0 for unknown);
    `ranks` are the groups' ranks (a group's `host` is null when the logs had no client
    column). Most names first, then family name: the same input gives the same order.
    """
    members: dict[str, dict] = {}
    for group in host_groups:
        family, similarities = _dominant_family(group.get("names", []), explanations)
        campaign = members.setdefault(
            family, {"hosts": [], "ranks": [], "names": set(), "similarities": []}
        )
        if group.get("host") is not None:
            campaign["hosts"].append(group["host"])
        campaign["ranks"].append(group.get("rank"))
        campaign["names"].update(group.get("names", []))
        campaign["similarities"].extend(similarities)
    found = [
        {
            "family": family,
            "hosts": campaign["hosts"],
            "names": len(campaign["names"]),
            "similarity": float(np.mean(campaign["similarities"]))
            if campaign["similarities"]
            else 0.0,
            "ranks": campaign["ranks"],
        }
        for family, campaign in members.items()
    ]
    return sorted(found, key=lambda campaign: (-campaign["names"], campaign["family"]))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _intel_sha256(intel: Intel) -> str:
    """The blocklist's content (nearest families come from it), independent of line order."""
    digest = hashlib.sha256()
    for name, family in sorted(intel.blocklist.items()):
        digest.update(f"{name}\t{family}\n".encode())
    return digest.hexdigest()


def _reusable(path: Path, key: Mapping[str, object]) -> bool:
    """True when `path` holds explanations made from the same model, alerts, intel and limit."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return (
        isinstance(document, dict)
        and isinstance(document.get("explanations"), dict)
        and all(document.get(field) == value for field, value in key.items())
    )


def explain_alerts(
    model_path: Path, site_dir: Path, alerts_path: Path, *, limit: int = 500
) -> Path:
    """Explain the top `limit` alerts into `<alerts stem>.explained.json`; reuse it if current.

    The file is current when the model, the alerts, the site's blocklist and `limit` are the
    ones it was made from (their hashes are stored in it). Bad intel lines go to
    SITE/work/quarantine/explain/, as the pipeline's go to its quarantine.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise ValueError(
            f"limit must be a whole number from 0 to {MAX_LIMIT}, got {limit!r} (fix: explain "
            "the top of the ranking; the rest can be explained after verdicts on the first)"
        )
    model_path, site_dir, alerts_path = Path(model_path), Path(site_dir), Path(alerts_path)
    model, _ = load_model_file(model_path)  # first: its errors name the file and the fix
    config = load_site_config(site_dir)
    quarantine_dir = site_dir / EXPLAIN_QUARANTINE
    shutil.rmtree(quarantine_dir, ignore_errors=True)  # what it holds is this reading's
    with Quarantine(quarantine_dir) as quarantine:
        intel = load_intel(site_dir, config, quarantine=quarantine)
    alerts = read_alerts(alerts_path, limit=limit)
    out = explained_path(alerts_path)
    key = {
        "model_sha256": _sha256(model_path),
        "alerts_sha256": _sha256(alerts_path),
        "intel_sha256": _intel_sha256(intel),
        "limit": limit,
    }
    if _reusable(out, key):
        return out
    names = [alert["domain"] for alert in alerts]
    evidence = {alert["domain"]: alert for alert in alerts}
    explanations = explain_names(model, names, intel=intel, evidence=evidence)
    document = {**key, "explanations": {item["domain"]: item for item in explanations}}
    return write_json(out, document)
