"""Settings of the ``yolo_ocr`` pipeline: which detector, how big, how sure, and OCR knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vidjobs.settings import Settings, setting

__all__ = ["FIXTURE_WEIGHTS", "OCR_DET_INT8", "PipelineSettings", "TrackerName"]

#: The object trackers ``track.py`` can run.
TrackerName = Literal["bytetrack", "botsort"]

#: The detector this project trains itself (``scripts/train_detector.py``): circles, squares,
#: triangles and stars. Used by the tests and the offline demo, where no weights can be downloaded.
FIXTURE_WEIGHTS = Path(__file__).resolve().parent / "assets" / "shapes-yolo.pt"
FIXTURE_IMGSZ = 320

#: RapidOCR's text detector quantised to int8 by ``scripts/quantize_ocr.py`` (CPU only).
OCR_DET_INT8 = Path(__file__).resolve().parent / "assets" / "ocr-det-int8.onnx"


class PipelineSettings(Settings):
    """Settings of the video pipeline, shared by every job of one worker process."""

    detector_weights: str = setting(
        "yolo11n.pt",
        env="VIDJOBS_DETECTOR_WEIGHTS",
        min_length=1,
        help="Ultralytics weights: a path (``.pt`` or an exported ``.onnx``) or a model name such "
        "as ``yolo11n.pt`` that Ultralytics downloads where there is internet.",
    )
    detector_imgsz: int | None = setting(
        None,
        env="VIDJOBS_DETECTOR_IMGSZ",
        ge=32,
        le=4096,
        help="Inference image size (the longer side); smaller is faster, larger finds smaller "
        "objects. None uses the size the weights were trained at (640 for the Ultralytics "
        "models, 320 for the fixture).",
    )
    detector_conf: float = setting(
        0.25,
        env="VIDJOBS_DETECTOR_CONF",
        ge=0.0,
        le=1.0,
        help="Confidence floor of the detector; a job's ``min_confidence`` can only raise it.",
    )
    detector_device: str = setting(
        "cpu",
        env="VIDJOBS_DETECTOR_DEVICE",
        help="Torch device for ``.pt`` weights (``cpu``, ``cuda:0``).",
    )
    ocr_limit_side_len: int = setting(
        640,
        env="VIDJOBS_OCR_LIMIT_SIDE_LEN",
        ge=32,
        le=8192,
        help="The OCR text detector scales frames so the longer side is at most this; RapidOCR's "
        "default scales the *shorter* side up to 736, which costs ~3x on 640x360 video for no "
        "recall we measured.",
    )
    ocr_use_cls: bool = setting(
        False,
        env="VIDJOBS_OCR_USE_CLS",
        help="Run the 180-degree text-angle classifier (upside-down text only).",
    )
    ocr_threads: int = setting(
        0,
        env="VIDJOBS_OCR_THREADS",
        ge=0,
        help="ONNX Runtime intra-op threads for OCR; 0 lets it use every core.",
    )
    ocr_device: str = setting(
        "cpu",
        env="VIDJOBS_OCR_DEVICE",
        help="ONNX Runtime device for OCR: ``cpu``, or ``cuda``/``cuda:N`` (CUDA execution "
        "provider; needs the ``gpu`` extra, onnxruntime-gpu). A GPU asked for and missing fails "
        "the worker's start instead of running on the CPU.",
    )
    ocr_spin_wait: bool = setting(
        False,
        env="VIDJOBS_OCR_SPIN_WAIT",
        help="Let ONNX Runtime's OCR threads spin while they wait for work (its default): a "
        "little faster on idle dedicated cores, several times slower where the cores are "
        "shared (measured, docs/pipeline.md).",
    )
    ocr_det_int8: bool = setting(
        True,
        env="VIDJOBS_OCR_DET_INT8",
        help="On the CPU, run the OCR's text detector quantised to int8 (the project's "
        "``assets/ocr-det-int8.onnx``, from ``scripts/quantize_ocr.py``): faster at the same "
        "recall on the project's videos (docs/pipeline.md); off: RapidOCR's float model.",
    )
    ocr_reuse_regions: bool = setting(
        True,
        env="VIDJOBS_OCR_REUSE_REGIONS",
        help="Between sampled frames of one video, detect and read text again only where the "
        "picture changed; text lines elsewhere are kept from the previous read.",
    )
    detector_threads: int = setting(
        0,
        env="VIDJOBS_DETECTOR_THREADS",
        ge=0,
        help="Torch intra-op threads for ``.pt`` weights; 0 keeps Ultralytics' choice (one less "
        "than the cores, at most 8).",
    )
    overlap_stages: bool = setting(
        True,
        env="VIDJOBS_OVERLAP_STAGES",
        help="Decode the next sampled frame in a thread of its own while the models read this "
        "one, and run the detector beside the OCR on each frame (measured, docs/pipeline.md); "
        "off: one stage after the other, in the analysing thread.",
    )
    skip_unchanged: bool = setting(
        True,
        env="VIDJOBS_SKIP_UNCHANGED",
        help="Reuse the previous sampled frame's results when a frame is visually unchanged "
        "(slides, static shots); the check is a cheap thumbnail difference.",
    )

    tracker: TrackerName = setting(
        "bytetrack",
        env="VIDJOBS_TRACKER",
        help="Object tracker over the sampled frames: ``bytetrack`` or ``botsort`` "
        "(Ultralytics' implementations, without camera-motion compensation or re-identification; "
        "docs/pipeline.md compares them).",
    )
    track_lost_seconds: float = setting(
        2.0,
        env="VIDJOBS_TRACK_LOST_SECONDS",
        ge=0.0,
        le=60.0,
        help="How long a track whose object disappeared (occluded, missed) waits for it to come "
        "back before a reappearance counts as a new object.",
    )
    track_buffer_per_second: float = setting(
        1.0,
        env="VIDJOBS_TRACK_BUFFER_PER_SECOND",
        ge=0.0,
        le=10.0,
        help="Boxes are widened by this share of their size on each side, per second between "
        "sampled frames, before the tracker matches them by overlap (buffered IoU): at 1 "
        "frame/s an object that moves its own width between samples still overlaps itself.",
    )
    text_gap_seconds: float = setting(
        1.0,
        env="VIDJOBS_TEXT_GAP_SECONDS",
        ge=0.0,
        le=60.0,
        help="How long a text may go unread (a missed read, a moment hidden) and still be the "
        "same text event when it is read again.",
    )
    text_brief_min_confidence: float = setting(
        0.9,
        env="VIDJOBS_TEXT_BRIEF_MIN_CONFIDENCE",
        ge=0.0,
        le=1.0,
        help="A text read in one sampled frame only is kept as an event at this OCR confidence "
        "or more (and two letters or digits); a job's ``keep_brief_text`` keeps every read.",
    )
    shot_cut_threshold: float = setting(
        0.1,
        env="VIDJOBS_SHOT_CUT_THRESHOLD",
        ge=0.0,
        le=1.0,
        help="Colour-histogram (Bhattacharyya) distance between consecutive sampled frames above "
        "which the picture changed enough to be a cut; 1.0 turns cut detection off.",
    )
    track_and_merge: bool = setting(
        True,
        env="VIDJOBS_TRACK_AND_MERGE",
        help="Build object tracks, text events and shots (schema 2). Off only to measure their "
        "cost: the document then has no tracks, events or shots.",
    )
    segment_above_seconds: float = setting(
        300.0,
        env="VIDJOBS_SEGMENT_ABOVE_SECONDS",
        ge=0.0,
        help="A video longer than this is analysed as segment jobs that any worker may take, "
        "then merged into one result (docs/architecture.md, 'Long videos as segments'); 0 "
        "never splits.",
    )
    segment_seconds: float = setting(
        120.0,
        env="VIDJOBS_SEGMENT_SECONDS",
        ge=10.0,
        help="Length of each segment job of a split video (the last one takes the remainder); "
        "a crash repeats at most one segment. Also where a frame's reuse of the frame before "
        "restarts, split or not: give every worker the same value.",
    )

    @classmethod
    def fixture(cls, **overrides: Any) -> PipelineSettings:
        """Settings for the project's own shapes detector (tests, benchmark, offline demo)."""
        return cls(
            **{
                "detector_weights": str(FIXTURE_WEIGHTS),
                "detector_imgsz": FIXTURE_IMGSZ,
                **overrides,
            }
        )
