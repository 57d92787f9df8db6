"""The demo's generation set: the sample problems the scripted stand-in has a playbook entry
for, plus the OptMATH problem it does not know (so the funnel shows a failure too).

    python recipes/demo/pick_problems.py PROBLEMS.jsonl > problems.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from playbook import PLAYBOOK  # noqa: E402

WANTED = {entry["id"] for entry in PLAYBOOK} | {"optmath-31"}

for line in open(sys.argv[1], encoding="utf-8"):
    if json.loads(line)["id"] in WANTED:
        sys.stdout.write(line)
