"""The scope guard catches planted out-of-scope terms and passes on the real tree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scope_guard", ROOT / "scripts/scope_guard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scope_guard", module)
    spec.loader.exec_module(module)
    return module


guard = _guard()


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_planted_terms_are_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plant(
        tmp_path,
        {
            "api/live.py": "import json\nfrom litestar import WebSocket\n",
            "worker/placement.py": "class GpuScheduler:\n    pass\n",
            "db/nodes.py": "\n\ncluster_manager = None\n",
            "deploy/docker-compose.yml": "services:\n  api:\n    command: serve --ws\n"
            "    environment: {PUSH_URL: 'ws://api/events'}\n",
            "vidjobs/cli/gpus.py": "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '1'\n",
        },
    )
    rc = guard.main(["--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "api/live.py:2: websocket — no websocket endpoints" in out
    assert "worker/placement.py:1: gpu scheduling layer — " in out
    assert "db/nodes.py:3: home-made cluster manager — " in out
    assert "deploy/docker-compose.yml:4: websocket — " in out
    assert "vidjobs/cli/gpus.py:2: gpu scheduling layer — " in out
    assert "5 hit(s)" in out


def test_docs_tests_and_ordinary_words_are_not_hits(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "docs/roadmap.md": "A WebSocket feed and a GPU scheduler may come later.\n",
            "tests/test_x.py": "WEBSOCKET = 'websocket'\ncluster_manager = 1\n",
            "api/tests/fixture.py": "websocket = True\n",
            "vidjobs/devstack/pg.py": "import socket\n# initdb creates the Postgres cluster\n",
            "worker/detect.py": "DEVICE = 'cuda:0'  # one worker, the device it is given\n",
            "deploy/k8s/worker.yaml": "resources: {limits: {nvidia.com/gpu: 1}}\n",
            "README.md": "no websockets here\n",
        },
    )
    config = guard.load_terms(ROOT / "scripts/scope_terms.yaml")
    assert guard.scan(tmp_path, config) == []


def test_an_allowed_path_is_not_a_hit(tmp_path: Path) -> None:
    _plant(tmp_path, {"api/compat.py": "# websocket: refused with 404\n"})
    terms = tmp_path / "terms.yaml"
    terms.write_text(
        "scan: {paths: [api]}\n"
        "terms:\n"
        "  - term: websocket\n"
        "    pattern: '(?i)websocket'\n"
        "    why: out of scope\n"
        "    allow: [{path: 'api/compat.py', why: 'documents the refusal'}]\n",
        encoding="utf-8",
    )
    assert guard.main(["--root", str(tmp_path), "--terms", str(terms)]) == 0


def test_the_real_tree_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    rc = guard.main([])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "scope guard: clean" in out
