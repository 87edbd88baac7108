"""`escrow pack` / `escrow pack verify` refuse empty or unusable options instead of
ignoring them: an empty --since, --until, --generated-at or --entries (an unset shell
variable) used to widen the pack or the scope check silently, ``-o ""`` raised a traceback,
and an -o folder that cannot hold a file was named by the renderer's temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import PackLedger

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def test_an_empty_output_path_is_a_usage_error_not_a_traceback(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    size = pack_ledger.ledger.size()

    r = run_cli(["pack", "--project", "example", "-o", ""])

    assert r.exit_code == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "names no file to write the pack to" in r.stderr
    assert pack_ledger.ledger.size() == size


@pytest.mark.parametrize("entries", ["", ","])
def test_an_entry_list_naming_no_index_is_refused_not_read_as_all(
    pack_ledger: PackLedger, tmp_path: Path, entries: str
) -> None:
    pack_ledger.add(0)
    size = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "--entries", entries, "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert "names no index" in r.stderr
    assert not out.exists()
    assert pack_ledger.ledger.size() == size


@pytest.mark.parametrize("option", ["--since", "--until", "--generated-at"])
def test_an_empty_time_option_of_pack_is_refused_not_ignored(
    pack_ledger: PackLedger, tmp_path: Path, option: str
) -> None:
    pack_ledger.add(0)
    size = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", option, "", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert f"{option} '' is not a date" in r.stderr
    assert not out.exists()
    assert pack_ledger.ledger.size() == size


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_an_empty_scope_option_of_pack_verify_is_refused_not_skipped(
    pack_ledger: PackLedger, tmp_path: Path, option: str
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    assert run_cli(["pack", "--project", "example", "-o", str(out)]).exit_code == 0

    r = run_cli(["pack", "verify", str(out), option, ""])

    assert r.exit_code == 2, r.stderr
    assert f"{option} '' is not a date" in r.stderr
    assert "verified" not in r.stdout


def test_an_output_folder_that_cannot_hold_a_file_names_the_output_before_rendering(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import escrow.pack.render as render

    pack_ledger.add(0)
    size = pack_ledger.ledger.size()
    out = Path("/proc/escrow-review11d.pdf")  # an existing folder no file can be made in
    rendered: list[object] = []
    real = render.render_pdf
    monkeypatch.setattr(render, "render_pdf", lambda *a, **k: rendered.append(1) or real(*a, **k))

    r = run_cli(["pack", "--project", "example", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert f"Cannot write the pack to {out}:" in r.stderr
    assert ".tmp" not in r.stderr
    assert rendered == []
    assert pack_ledger.ledger.size() == size
