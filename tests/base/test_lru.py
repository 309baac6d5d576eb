"""The bounded map behind what the box keeps in memory to answer again."""
from __future__ import annotations

from appliance.lru import SizedLRU


def test_the_least_recently_used_make_way_by_count_and_by_bytes():
    kept = SizedLRU(max_bytes=100, count=3)
    for key in "abc":
        assert kept.put(key, key.upper(), 10)
    assert kept.get("a") == "A"  # now the most recently used
    kept.put("d", "D", 10)
    assert kept.get("b") is None and [kept.get(k) for k in "acd"] == ["A", "C", "D"]
    assert not kept.put("big", "B", 26)  # more than a quarter of the bytes
    assert kept.get("big") is None and len(kept) == 3
    kept.put("a", "A2", 25)  # replacing a value counts its new size only
    assert kept.bytes == 45 and kept.get("a") == "A2"
    kept2 = SizedLRU(max_bytes=100)
    for n in range(5):
        kept2.put(n, n, 25)
    assert kept2.bytes == 100 and kept2.get(0) is None and kept2.get(4) == 4
    kept2.clear()
    assert len(kept2) == 0 and kept2.bytes == 0 and kept2.get(4) is None
