"""The file primitives client and server share: atomic writes, and JSON with null for NaN.

The one place in `common/` that touches the filesystem, and only to write whole files
atomically: a reader (or a crash) never sees half a report, checkpoint or results file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_ready", "write_atomic", "write_json"]


def json_ready(value: Any) -> Any:
    """Plain JSON data: NaN and +-inf become null, numpy scalars and paths plain values.

    Strict JSON has no NaN; a metric that could not be computed is written as null.

    >>> json_ready({"auc": float("nan"), "n": np.int64(3), "xs": (1.5, np.float32(2))})
    {'auc': None, 'n': 3, 'xs': [1.5, 2.0]}
    """
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write via a temporary sibling and rename, so nobody ever reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp_name, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the team
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def write_json(
    path: Path, document: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """`document` as strict JSON (NaN as null), atomically, with a final newline."""
    text = json.dumps(json_ready(document), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return write_atomic(path, text + "\n")
