"""The operator dashboard under ``/ui`` (``VIDJOBS_API_UI``): server-rendered Jinja pages."""

from __future__ import annotations

from vidjobs.api.ui.controller import UiController, ui_template_config

__all__ = ["UiController", "ui_template_config"]
