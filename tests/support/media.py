"""The tiny MP4 bodies the tests upload: an ``ftyp`` box and filler, nothing a decoder can read.

It passes the API's header check (``api/uploads.py``), so a ``noop`` job accepts it and a video
pipeline fails it as ``invalid_video``. Tests that need a real video use
``vidjobs.devstack.synth.video`` instead.
"""

from __future__ import annotations

__all__ = ["MP4_HEAD", "mp4_bytes"]

MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
"""An ``ftyp`` box (brand ``isom``): what the API looks for at the start of an upload."""


def mp4_bytes(size: int = 4096, seed: int = 0) -> bytes:
    """``size`` bytes: :data:`MP4_HEAD`, then filler that ``seed`` varies (deterministic)."""
    body = bytes((i * 31 + seed) % 251 for i in range(max(0, size - len(MP4_HEAD))))
    return MP4_HEAD + body
