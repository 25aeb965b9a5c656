"""Peak memory and outcome of loading each hostile model file of the issue-18 probes.

    python -m experiments.hostile_models [--limit-mib 1536] [--probe NAME ...]

Every probe (tests/unit/test_hostile_models.py builds them) is loaded by `model_from_bytes`
in its own child process under RLIMIT_AS; the table gives what happened (refused with
ModelFileError, loaded, or crashed with another exception) and the child's peak resident
memory, against the same child loading the default model. Before the checks in
`common.model`, `vocab-size-10**13` crashed in torch's allocator, `max-chars-10**7` loaded
(and then took 9.3 GB to score), and the archive probes ended in zipfile tracebacks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path.insert(0, {root!r})
from common.model import ModelFileError, model_from_bytes
data = open(sys.argv[1], "rb").read()
try:
    model_from_bytes(data, source="probe")
    outcome = "loaded"
except ModelFileError:
    outcome = "refused"
except BaseException as error:  # what the table is for: anything but a clean refusal
    outcome = "crashed:" + type(error).__name__
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(outcome, f"{{peak:.0f}}")
"""


def measure(data: bytes, *, limit: int) -> tuple[str, str]:
    """(outcome, peak RSS in MiB) of loading `data` in a child capped at `limit` bytes."""
    with tempfile.NamedTemporaryFile(suffix=".npz") as handle:
        handle.write(data)
        handle.flush()
        result = subprocess.run(
            [sys.executable, "-c", _CHILD.format(limit=limit, root=str(ROOT)), handle.name],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 2:
        return f"died (exit {result.returncode})", "-"
    return fields[0], fields[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mib", type=int, default=1536)
    parser.add_argument("--probe", action="append", help="only these probes (repeatable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.unit.test_hostile_models import PROBES, _good

    names = args.probe or sorted(PROBES)
    rows = [("(default model)", *measure(_good(), limit=args.limit_mib * 2**20))]
    rows += [(name, *measure(PROBES[name][0](), limit=args.limit_mib * 2**20)) for name in names]
    print(f"{'probe':<24} {'outcome':<24} peak RSS MiB (RLIMIT_AS {args.limit_mib} MiB)")
    for name, outcome, peak in rows:
        print(f"{name:<24} {outcome:<24} {peak}")
    return 0 if all(row[1] in {"loaded", "refused"} for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
