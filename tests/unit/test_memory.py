"""A process that served many sites gives its freed heap back (common/memory.py)."""

from __future__ import annotations

import platform

import psutil
import pytest

from common.memory import release_free_heap


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_freed_fragmented_heap_goes_back_to_the_system():
    process = psutil.Process()
    # Many small blocks with every other one kept: the heap cannot shrink from its top alone.
    blocks = [bytearray(32 * 1024) for _ in range(8_000)]
    kept = blocks[::2]
    del blocks
    before = process.memory_info().rss
    assert release_free_heap()
    after = process.memory_info().rss
    assert before - after > 64 * 2**20  # 125 MiB of freed 32 KiB blocks, most returned
    assert len(kept) == 4_000
