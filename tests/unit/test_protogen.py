"""The committed peer/gen matches what `make proto` would generate from proto/."""

from __future__ import annotations

from pathlib import Path

from peer import _protogen


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "gen"
    _protogen.generate(fresh)
    committed = _protogen.generated_files(_protogen.GEN_DIR)
    regenerated = _protogen.generated_files(fresh)
    stale = sorted(k for k in committed.keys() | regenerated.keys()
                   if committed.get(k) != regenerated.get(k))
    assert not stale, f"peer/gen is stale, run `make proto`: {stale}"
