"""An `oci://` deposit store reads records into memory only up to a cap: a registry that
holds (or streams) an enormous blob under a record's digest cannot exhaust memory."""

from __future__ import annotations

import os
import uuid

import pytest

from escrow.errors import InputError
from escrow.registry.errors import RegistryIntegrityError

pytestmark = [pytest.mark.registry]


def test_a_blob_beyond_the_cap_is_refused_whole_or_as_it_arrives(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.deposit import oci

    store = oci.OciDepositStore(f"oci://{registry}/escrow-test/cap-{uuid.uuid4().hex[:8]}")
    small = store.put(b'{"record": 1}')
    big = store.put(os.urandom(4096))
    monkeypatch.setattr(oci, "MAX_IN_MEMORY", 1024)

    assert store.get(small) == b'{"record": 1}'
    with pytest.raises(InputError, match="more than the 0 MiB a record or index"):
        store.get(big)

    # a registry that announces a small size and streams more: stopped as it arrives
    store2 = oci.OciDepositStore(store.location)
    store2._sizes[big] = 10  # what a lying HEAD answer would have said
    with pytest.raises(RegistryIntegrityError, match="sent more than"):
        store2.get(big)
