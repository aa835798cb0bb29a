"""worker.pipeline.weights: find the detector weights as Ultralytics would, without loading it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS
from vidjobs.worker.pipelines.yolo_ocr.weights import (
    check_weights,
    is_model_name,
    ultralytics_weights_dir,
)


@pytest.fixture
def yolo_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An Ultralytics settings file whose weights_dir is tmp/weights; cwd is tmp/run."""
    config = tmp_path / "config" / "Ultralytics"
    config.mkdir(parents=True)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (config / "settings.json").write_text(json.dumps({"weights_dir": str(weights_dir)}))
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    return {"YOLO_CONFIG_DIR": str(tmp_path / "config")}


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data.pkl", b"x")
    return path


def test_bare_names_are_model_names_and_everything_else_a_path() -> None:
    assert is_model_name("yolo11n.pt")
    assert is_model_name("yolo11n.onnx")
    assert not is_model_name("models/yolo11n.pt")
    assert not is_model_name("/models/detector.pt")
    assert not is_model_name("detector.bin")


def test_the_fixture_weights_pass() -> None:
    found = check_weights(str(FIXTURE_WEIGHTS), {})
    assert found.ok, found.detail
    assert str(FIXTURE_WEIGHTS) in found.detail


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"PK\x03\x04 truncated", "is not a PyTorch checkpoint"),
    ],
)
def test_a_bad_weights_path_fails_naming_the_setting(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    path = tmp_path / "detector.pt"
    if content is not None:
        path.write_bytes(content)
    found = check_weights(str(path), {})
    assert not found.ok
    assert why in found.detail
    assert "VIDJOBS_DETECTOR_WEIGHTS" in found.detail


def test_a_directory_is_not_weights(tmp_path: Path) -> None:
    (tmp_path / "detector.pt").mkdir()
    found = check_weights(str(tmp_path / "detector.pt"), {})
    assert not found.ok
    assert "is a directory" in found.detail


def test_weights_dir_comes_from_the_ultralytics_settings_file(yolo_config: dict[str, str]) -> None:
    expected = Path(yolo_config["YOLO_CONFIG_DIR"]).parent / "weights"
    assert ultralytics_weights_dir(yolo_config) == expected


def test_a_model_name_cached_in_weights_dir_or_cwd_passes(yolo_config: dict[str, str]) -> None:
    weights_dir = ultralytics_weights_dir(yolo_config)
    _zip(weights_dir / "yolo11n.pt")
    found = check_weights("yolo11n.pt", yolo_config)
    assert found.ok
    assert f"cached at {weights_dir / 'yolo11n.pt'}" in found.detail
    _zip(Path.cwd() / "yolo11n.pt")
    assert (
        f"cached at {Path.cwd() / 'yolo11n.pt'}" in check_weights("yolo11n.pt", yolo_config).detail
    )


def test_legacy_yolov5_names_look_for_the_u_retrain(yolo_config: dict[str, str]) -> None:
    _zip(ultralytics_weights_dir(yolo_config) / "yolov5nu.pt")
    assert check_weights("yolov5n.pt", yolo_config).ok


def test_an_uncached_model_name_fails_offline_and_passes_with_a_note_online(
    yolo_config: dict[str, str],
) -> None:
    offline = check_weights("yolo11n.pt", {**yolo_config, "YOLO_OFFLINE": "1"})
    assert not offline.ok
    assert "not cached" in offline.detail
    assert "YOLO_OFFLINE" in offline.detail
    assert "VIDJOBS_DETECTOR_WEIGHTS" in offline.detail
    online = check_weights("yolo11n.pt", yolo_config)
    assert online.ok
    assert "downloads it on the first video job" in online.detail


def test_a_truncated_cached_copy_fails(yolo_config: dict[str, str]) -> None:
    (ultralytics_weights_dir(yolo_config) / "yolo11n.pt").write_bytes(b"PK\x03\x04 cut")
    found = check_weights("yolo11n.pt", yolo_config)
    assert not found.ok
    assert "cached copy" in found.detail
