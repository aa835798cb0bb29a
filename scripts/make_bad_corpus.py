"""Write the malformed-video corpus (``worker.synth.corpus``) to a folder, with an index.

Each entry becomes ``NAME.mp4`` (whatever it really is: every client uploads ``.mp4``), and
``index.json`` lists name, description, size, SHA-256 and whether the job may complete (damage
a tolerant decoder conceals). The tests build the same corpus in memory; this script is for
trying the files by hand (``vidjobs submit DIR/NAME.mp4``) or feeding other tools.

Usage::

    .venv/bin/python scripts/make_bad_corpus.py var/bad-corpus
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from vidjobs.devstack.synth.corpus import build_corpus

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus into the folder named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write into (created if missing)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(out / "_sources")
    index = []
    for entry in corpus:
        (out / f"{entry.name}.mp4").write_bytes(entry.data)
        index.append(
            {
                "name": entry.name,
                "file": f"{entry.name}.mp4",
                "description": entry.description,
                "bytes": len(entry.data),
                "sha256": hashlib.sha256(entry.data).hexdigest(),
                "may_complete": entry.may_complete,
            }
        )
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    strict = sum(not e.may_complete for e in corpus)
    print(f"wrote {len(corpus)} files ({strict} must be refused or fail) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
