"""A pack job on the server holds as many builds as a local pack: 5,000.

The server held its jobs to 1,000 builds while it took a job still running 30 minutes after
its start for one whose renderer died; 5,000 builds take most of an hour.  Its runner now
keeps each job alive with a heartbeat (test_pack_job_heartbeat.py), so the server takes the
local limit (``escrow.pack.collect.MAX_BUILDS``): a larger scope fails its job as bad input,
in the same sentence a local pack gives, and `escrow pack` through the server exits 2 with
nothing written.  (A scope of 1,001 builds, over the old limit, is then within it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer

from tests.pack.synth import manifest_variant

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_scope_over_the_servers_limit_fails_its_job_as_bad_input(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escrow.ledger.store import Ledger
    from escrow.pack.collect import MAX_BUILDS
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    assert MAX_BUILDS == 5000
    key = SigningKey.load(live_server.settings.key_path)
    with Ledger.open(live_server.settings) as ledger:
        appended = list(
            ledger.append_many(
                sign_statement(manifest_variant(n, project="big"), key)
                for n in range(MAX_BUILDS + 1)
            )
        )
    assert not [a for a in appended if isinstance(a, Exception)]

    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "big.pdf"
    r = cli(["pack", "--project", "big", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert (
        "The server could not make the pack: The scope of this pack holds 5,001 builds, "
        "more than the 5,000 a pack holds"
    ) in r.stderr
    assert not out.exists()
