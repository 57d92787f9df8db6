"""Benchmark or-score on a large file of realistic trajectories.

Reports records/s and MB/s for `or-score` and for a baseline measured in the same run: a bare
Python loop that parses and re-serialises each line with orjson (the floor any JSONL tool pays).
Memory flatness: the peak RSS on the full file against the peak on a file 1/10 of its size.

    uv run python bench/score.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mib, write_trajectories  # noqa: E402

BASELINE = "import sys, orjson\nw = sys.stdout.buffer.write\nfor line in sys.stdin.buffer:\n    w(orjson.dumps(orjson.loads(line)) + b'\\n')\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to write the generated file")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        big, small = Path(tmp) / "big.jsonl", Path(tmp) / "small.jsonl"
        n_big = write_trajectories(big, args.size_mb << 20)
        n_small = write_trajectories(small, (args.size_mb << 20) // 10)
        base_s, base_rss = peak_rss_mib([sys.executable, "-c", BASELINE], big)
        score_s, score_rss = peak_rss_mib([str(bindir / "or-score"), "-q"], big)
        _, small_rss = peak_rss_mib([str(bindir / "or-score"), "-q"], small)
    mb = args.size_mb
    result = {
        "records": n_big,
        "size_mb": mb,
        "baseline_orjson_roundtrip": {
            "seconds": round(base_s, 2),
            "records_per_s": round(n_big / base_s),
            "mb_per_s": round(mb / base_s, 1),
            "peak_rss_mib": round(base_rss, 1),
        },
        "or_score": {
            "seconds": round(score_s, 2),
            "records_per_s": round(n_big / score_s),
            "mb_per_s": round(mb / score_s, 1),
            "peak_rss_mib": round(score_rss, 1),
        },
        "or_score_speed_vs_baseline": round(base_s / score_s, 3),
        "peak_rss_full_vs_tenth": round(score_rss / small_rss, 3),
        "small_file_records": n_small,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
