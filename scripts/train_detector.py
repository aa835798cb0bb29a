"""Train the fixture detector: a small YOLO that finds circles, squares, triangles and stars.

No pretrained weights can be downloaded on our machines, so tests and the offline demo use a
detector trained here from scratch on synthetic scenes (``vidjobs.devstack.synth``). It
writes ``worker/pipelines/yolo_ocr/assets/shapes-yolo.pt`` and ``shapes-yolo.json`` (classes,
imgsz, measured mAP on a held-out synthetic set, the command, the date).

Usage::

    .venv/bin/python scripts/train_detector.py --train 1200 --minutes 15

On the shared 2-core CPU it trains for ``--minutes`` of wall time (Ultralytics' ``time``
argument, which also shapes the learning-rate schedule), then evaluates and exports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vidjobs.devstack.synth.scenes import random_scene
from vidjobs.devstack.synth.shapes import CLASSES

REPO = Path(__file__).resolve().parents[1]

ASSETS = REPO / "worker" / "pipelines" / "yolo_ocr" / "assets"


def write_split(root: Path, split: str, count: int, seed: int) -> None:
    """Render ``count`` scenes with YOLO-format labels under ``root/images|labels/split``."""
    rng = np.random.default_rng(seed)
    img_dir = root / "images" / split
    lbl_dir = root / "labels" / split
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    for i in range(count):
        img, boxes = random_scene(rng)
        h, w = img.shape[:2]
        name = f"{split}_{i:05d}"
        cv2.imwrite(str(img_dir / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines = []
        for b in boxes:
            x1, y1, x2, y2 = b.box
            cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
            bw, bh = (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{b.class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        (lbl_dir / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov8n.yaml", help="Ultralytics model yaml (no weights)")
    ap.add_argument("--train", type=int, default=1200, help="training images")
    ap.add_argument("--val", type=int, default=150, help="validation images")
    ap.add_argument("--test", type=int, default=300, help="held-out test images for the mAP")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=40, help="upper bound; --minutes decides")
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-time budget for training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ASSETS / "shapes-yolo.pt")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vidjobs-train-"))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(work / "yolo-config")
    from ultralytics.models import YOLO  # after the env vars: settings are read at import

    data = work / "data"
    t0 = time.monotonic()
    write_split(data, "train", args.train, args.seed + 1)
    write_split(data, "val", args.val, args.seed + 2)
    write_split(data, "test", args.test, args.seed + 3)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    yaml_path = data / "shapes.yaml"
    yaml_path.write_text(
        f"path: {data}\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}\n"
    )
    print(f"dataset written in {time.monotonic() - t0:.1f}s to {data}", flush=True)

    model = YOLO(args.model)
    t1 = time.monotonic()
    model.train(
        data=str(yaml_path),
        epochs=args.epochs,
        time=args.minutes / 60.0,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        workers=0,
        amp=False,
        plots=False,
        val=False,
        cache="ram",
        seed=args.seed,
        deterministic=True,
        project=str(work / "runs"),
        name="shapes",
        exist_ok=True,
        verbose=False,
        fliplr=0.5,
        close_mosaic=2,
        nbs=args.batch,  # one optimiser step per batch: few steps fit in the budget
        warmup_epochs=1.0,
    )
    epochs_run = int(model.trainer.epoch) + 1 if model.trainer is not None else None
    train_s = time.monotonic() - t1
    best = work / "runs" / "shapes" / "weights" / "last.pt"
    trained = YOLO(str(best))
    metrics = trained.val(
        data=str(yaml_path),
        split="test",
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        plots=False,
        workers=0,
        project=str(work / "runs"),
        name="test",
        verbose=False,
    )
    map50 = float(metrics.box.map50)
    map5095 = float(metrics.box.map)
    per_class = {
        CLASSES[int(c)]: round(float(m), 4)
        for c, m in zip(
            metrics.box.ap_class_index, metrics.box.maps[metrics.box.ap_class_index], strict=True
        )
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.out)
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    meta = {
        "classes": list(CLASSES),
        "imgsz": args.imgsz,
        "model_yaml": args.model,
        "pretrained": False,
        "train_images": args.train,
        "test_images": args.test,
        "train_minutes": round(train_s / 60, 1),
        "epochs_run": epochs_run,
        "test_map50": round(map50, 4),
        "test_map50_95": round(map5095, 4),
        "test_map50_95_per_class": per_class,
        "weights_sha256": sha,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
