"""`docker save` for a file-level comparison names the engine it could not reach.

Regression: ``escrow.rebuild.layers.save_image`` said "The Docker Engine is unreachable:
<the driver's exception>", naming no engine (and with no hint), where every other engine
failure names its address (``DOCKER_HOST``, a context's) and what to do.
"""

from __future__ import annotations

import docker
import pytest

from escrow.capture.engine import Endpoint
from escrow.errors import EngineUnavailable
from escrow.rebuild.engine import EngineLayers
from escrow.rebuild.layers import save_image
from tests.conftest import BASE_TAG


def test_an_engine_gone_during_the_comparison_is_named() -> None:
    gone = Endpoint("tcp://127.0.0.1:1")  # nothing listens there: refused at once
    api = docker.APIClient(base_url="http://127.0.0.1:1", version="1.41")

    with pytest.raises(EngineUnavailable) as caught:
        save_image(api, BASE_TAG, endpoint=gone)
    said = caught.value.diagnostics()
    assert said.startswith("The Docker Engine at tcp://127.0.0.1:1 is not reachable. "), said
    assert "DOCKER_HOST" in said  # and what to do

    with EngineLayers(api, {"original": BASE_TAG}, endpoint=gone) as layers:
        with pytest.raises(EngineUnavailable, match="at tcp://127.0.0.1:1 is not reachable"):
            layers.index("original", "sha256:" + "0" * 64)
