"""Embedded Postgres runs as an unprivileged OS user when we are root: it must reach its files."""

from __future__ import annotations

from pathlib import Path

from vidjobs.devstack.embedded import _let_server_user_reach


def test_private_folders_above_the_binaries_become_traversable(tmp_path: Path) -> None:
    # A clone under `mktemp -d` (0700) used to stop initdb with "Permission denied".
    private = tmp_path / "clone"
    bin_dir = private / ".venv" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    private.chmod(0o700)
    _let_server_user_reach(bin_dir)
    for folder in (bin_dir, private):
        assert folder.stat().st_mode & 0o011 == 0o011, oct(folder.stat().st_mode)
    assert private.stat().st_mode & 0o004 == 0  # traverse only: nothing becomes listable
