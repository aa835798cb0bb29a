"""Where the detector weights are, answered without importing Ultralytics (or torch).

A readiness probe runs every few seconds beside a worker that already holds its models; loading
a second copy of the ML stack (~1 GB) to learn that a file is missing is the wrong price. This
module follows the rules ``Detector`` and Ultralytics use to find weights, with the standard
library only.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightsCheck", "check_weights", "is_model_name", "ultralytics_weights_dir"]

_SETTING = "VIDJOBS_DETECTOR_WEIGHTS"
_FIX = f"set {_SETTING} to a local .pt or .onnx file"
_TRUE = {"1", "true", "yes", "on", "y", "t"}


def is_model_name(weights: str) -> bool:
    """True for a bare name such as ``yolo11n.pt``: Ultralytics looks it up and may download it.

    Anything else (a directory part, another suffix) is a path that must exist as given.
    """
    path = Path(weights).expanduser()
    return path.suffix in {".pt", ".onnx"} and len(path.parts) <= 1


def _settings_files(env: Mapping[str, str]) -> list[Path]:
    # Ultralytics' get_user_config_dir: YOLO_CONFIG_DIR, else the XDG config dir, else (when
    # that is not writable) a private directory under the temp dir.
    if env.get("YOLO_CONFIG_DIR"):
        base = Path(env["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    else:
        xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        base = Path(xdg) / "Ultralytics"
    fallback = Path(tempfile.gettempdir()) / f"Ultralytics-{os.getuid()}"
    return [base / "settings.json", fallback / "settings.json"]


def ultralytics_weights_dir(env: Mapping[str, str] | None = None) -> Path:
    """The ``weights_dir`` of Ultralytics' settings file (``./weights`` when there is none)."""
    e = os.environ if env is None else env
    for path in _settings_files(e):
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("weights_dir")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return Path(value)
    return Path.cwd() / "weights"


def _ultralytics_name(name: str) -> str:
    # Ultralytics' check_yolov5u_filename: legacy YOLOv5/v3 names load the "u" re-trains.
    if ("yolov3" in name or "yolov5" in name) and name.endswith(".pt") and "u" not in name:
        name = re.sub(r"(.*yolov5([nsmlx]))\.pt", "\\1u.pt", name)
        name = re.sub(r"(.*yolov5([nsmlx])6)\.pt", "\\1u.pt", name)
        name = re.sub(r"(.*yolov3(|-tiny|-spp))\.pt", "\\1u.pt", name)
    return name


@dataclass(frozen=True)
class WeightsCheck:
    """The outcome: ``ok`` and one line for the operator (naming the setting when not ok)."""

    ok: bool
    detail: str


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the weights file, or None when it looks loadable."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return f"not readable ({exc.strerror or exc})"
    if not head:
        return "is empty"
    # torch.save writes a zip archive; a truncated copy has no central directory.
    if path.suffix == ".pt" and not zipfile.is_zipfile(path):
        return "is not a PyTorch checkpoint (not a zip archive: truncated or the wrong file?)"
    return None


def check_weights(weights: str, env: Mapping[str, str] | None = None) -> WeightsCheck:
    """Whether the detector could load ``weights`` here without downloading anything.

    A path must be a readable, plausible weights file. A bare model name must be cached where
    Ultralytics looks (the working directory, then its ``weights_dir``); when it is not, the
    check fails if ``YOLO_OFFLINE`` is set (the download would fail) and passes with a note
    otherwise (Ultralytics downloads it on the first video job).
    """
    e = os.environ if env is None else env
    if not is_model_name(weights):
        path = Path(weights).expanduser()
        problem = _file_problem(path)
        if problem:
            return WeightsCheck(False, f"{weights!r} {problem} ({_FIX})")
        return WeightsCheck(True, f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    name = _ultralytics_name(weights)
    candidates = [Path.cwd() / name, ultralytics_weights_dir(e) / name]
    for path in candidates:
        if path.exists():
            problem = _file_problem(path)
            if problem:
                return WeightsCheck(False, f"{weights!r}: cached copy {path} {problem} ({_FIX})")
            return WeightsCheck(True, f"{weights!r} cached at {path}")
    looked = ", ".join(str(p) for p in candidates)
    if e.get("YOLO_OFFLINE", "").strip().lower() in _TRUE:
        return WeightsCheck(
            False,
            f"{weights!r} is not cached (looked in {looked}) and YOLO_OFFLINE forbids the "
            f"download ({_FIX})",
        )
    return WeightsCheck(
        True,
        f"{weights!r} is not cached (looked in {looked}); Ultralytics downloads it on the "
        f"first video job, which needs internet ({_FIX} to avoid that)",
    )
