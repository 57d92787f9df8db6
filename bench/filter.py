"""Benchmark or-filter (correct + decontaminate + golden) and or-annotate (rules) on a large
file of realistic trajectories: records/s and peak memory, against a baseline measured in the
same run (parse and re-serialise each line with orjson). Memory flatness: peak RSS on the full
file against a file a tenth of its size.

    uv run python bench/filter.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from score import BASELINE  # noqa: E402

from common import peak_rss_mib, write_trajectories  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    result: dict = {"size_mb": args.size_mb}
    with tempfile.TemporaryDirectory() as tmp:
        big, small, ref = (
            Path(tmp) / "big.jsonl",
            Path(tmp) / "small.jsonl",
            Path(tmp) / "test.jsonl",
        )
        n = write_trajectories(big, args.size_mb << 20)
        write_trajectories(small, (args.size_mb << 20) // 10)
        ref.write_text(
            "".join(
                json.dumps(
                    {"id": f"t{i}", "question": f"An unrelated test problem number {i} about {w}."}
                )
                + "\n"
                for i, w in enumerate(["trucks", "nurses", "diets", "bakeries"] * 50)
            )
        )
        result["records"] = n
        base_s, base_rss = peak_rss_mib([sys.executable, "-c", BASELINE], big)
        result["baseline_orjson_roundtrip"] = {
            "records_per_s": round(n / base_s),
            "peak_rss_mib": round(base_rss, 1),
        }
        commands = {
            "or-filter --correct --decontaminate": [
                str(bindir / "or-filter"),
                "--correct",
                "--decontaminate",
                str(ref),
                "-q",
            ],
            "or-annotate (rules)": [str(bindir / "or-annotate"), "-q"],
        }
        for name, cmd in commands.items():
            seconds, rss = peak_rss_mib(cmd, big)
            _, small_rss = peak_rss_mib(cmd, small)
            result[name] = {
                "records_per_s": round(n / seconds),
                "mb_per_s": round(args.size_mb / seconds, 1),
                "peak_rss_mib": round(rss, 1),
                "speed_vs_baseline": round(base_s / seconds, 3),
                "peak_rss_full_vs_tenth": round(rss / small_rss, 3),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
