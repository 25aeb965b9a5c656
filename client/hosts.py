"""Which client host queried which test name, for a federated round's host-level figures.

`client.pipeline.prepare_site` holds a site's records in memory once; this module keeps from
them only the distinct (test day, client host, test name) pairs as integer arrays, so every
round can judge each host-day at its own threshold (docs/metrics.md, "Hosts") without the
records. `fedsec evaluate` reads the same figures from every test-day record in a stream
(`client.evaluate.HostPass`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.dataset import SECONDS_PER_DAY, Examples
from common.fragility import HostDays

if TYPE_CHECKING:
    from client.fragility import HostView

CLIENT_COLUMN = "id.orig_h"  # Zeek's client address; other formats map it in [logs] columns


@dataclass(frozen=True, eq=False)
class HostIncidence:
    """Distinct (host-day, test name) pairs: ``host_day`` numbers the host-days 0..n-1,
    ``name_index`` points into the test `Examples`, ``queries`` counts the pair's records."""

    host_day: np.ndarray  # int64
    name_index: np.ndarray  # int64
    queries: np.ndarray  # int64
    host_days: int
    test_days: int
    records_without_client: int


def host_incidence_on_test_days(
    records: pa.Table, names: pa.Array | pa.ChunkedArray, *, test: Examples, test_days: tuple
) -> HostIncidence | None:
    """The test days' host incidence from the site's records; None without a client column.

    ``names`` are the records' normalised names (null when invalid); ``test_days`` the
    'YYYY-MM-DD' labels of the split. Names outside the test set (held out, conflicts) drop.
    """
    if CLIENT_COLUMN not in records.column_names:
        return None
    days = pa.array(np.array(test_days, dtype="datetime64[D]").astype(np.int64), pa.int64())
    day = pc.cast(pc.floor(pc.divide(records["ts"], SECONDS_PER_DAY)), pa.int64())
    host = records[CLIENT_COLUMN]
    on_test_day = pc.and_(pc.fill_null(pc.is_in(day, value_set=days), False), pc.is_valid(names))
    index = pc.index_in(names, value_set=pa.array(test.domains.tolist(), pa.string()))
    in_test = pc.and_(on_test_day, pc.is_valid(index))
    has_host = pc.fill_null(pc.and_(pc.is_valid(host), pc.not_equal(host, "")), False)
    table = pa.table({"day": day, "host": host, "name": index}).filter(pc.and_(in_test, has_host))
    without = int(pc.sum(in_test).as_py() or 0) - table.num_rows
    if table.num_rows == 0:
        return None
    pairs = table.group_by(["day", "host", "name"], use_threads=False).aggregate(
        [("name", "count")]
    )
    host_days = pairs.group_by(["day", "host"], use_threads=False).aggregate([])
    host_day = pc.index_in(
        pc.binary_join_element_wise(pc.cast(pairs["day"], pa.string()), pairs["host"], "\t"),
        value_set=pc.binary_join_element_wise(
            pc.cast(host_days["day"], pa.string()), host_days["host"], "\t"
        ),
    )
    return HostIncidence(
        host_day=host_day.to_numpy().astype(np.int64),
        name_index=pairs["name"].to_numpy().astype(np.int64),
        queries=pairs["name_count"].to_numpy().astype(np.int64),
        host_days=host_days.num_rows,
        test_days=len(test_days),
        records_without_client=without,
    )


def host_days_at(incidence: HostIncidence, *, scores: np.ndarray, labels: np.ndarray) -> HostDays:
    """Each host-day's highest benign and blocklisted score and benign queries, for ``scores``
    (one per test name) and ``labels`` (1 = blocklisted)."""
    malicious = np.asarray(labels)[incidence.name_index] == 1
    pair_scores = np.asarray(scores, dtype=np.float64)[incidence.name_index]
    max_benign = np.full(incidence.host_days, -np.inf)
    max_malicious = np.full(incidence.host_days, -np.inf)
    np.maximum.at(max_benign, incidence.host_day[~malicious], pair_scores[~malicious])
    np.maximum.at(max_malicious, incidence.host_day[malicious], pair_scores[malicious])
    benign_queries = np.bincount(
        incidence.host_day,
        weights=np.where(malicious, 0, incidence.queries),
        minlength=incidence.host_days,
    )
    return HostDays(max_benign, max_malicious, benign_queries)


def round_host_view(
    incidence: HostIncidence | None, *, scores: np.ndarray, labels: np.ndarray, test_days: int
) -> HostView:
    """A round's `HostView`: the host-days at these scores, or "no client column"."""
    from client.fragility import NO_CLIENT_COLUMN, HostView  # plots: not for `fedsec check`

    if incidence is None:
        return HostView(host_days=None, reason=NO_CLIENT_COLUMN, test_days=test_days)
    return HostView(
        host_days=host_days_at(incidence, scores=scores, labels=labels),
        test_days=incidence.test_days,
        records_without_client=incidence.records_without_client,
    )
