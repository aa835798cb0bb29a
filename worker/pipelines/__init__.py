"""The pipelines a worker runs: the contract, the registry, ``noop`` and ``yolo_ocr``."""
