"""A batch whose key event is not signed by the log key appends nothing."""

from __future__ import annotations

import base64
import json

from server_helpers import LiveServer


def test_a_batch_with_a_key_event_not_signed_by_the_log_key_appends_nothing(
    live_server: LiveServer,
) -> None:
    from escrow.signing.dsse import sign_statement

    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        first = c.get("/v1/entries/0").json()  # `escrow init` registered the build key
        event = json.loads(base64.b64decode(first["envelope"]["payload"]))
        event["predicate"]["name"] = "forged"
        forged = sign_statement(event, live_server.build_key()).to_dict()  # not the log key
        good = [live_server.envelope(), live_server.envelope()]

        r = c.post("/v1/entries", json={"envelopes": [*good, forged]})

        assert r.status_code == 422, r.text
        body = r.json()
        assert body["error"] == "signature"
        assert body["pointer"] == "/envelopes/2/signatures"
        assert "log key" in body["message"]
        # "all are checked before any is appended": the two good ones are not in the log
        assert c.get("/v1/checkpoint").json()["size"] == size0
    with live_server.ledger() as ledger:
        assert ledger.size() == size0
