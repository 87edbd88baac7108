"""Layers read out of the Docker Engine with ``docker save``, for file-level comparison."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.errors import EscrowError, InputError
from escrow.rebuild.layers import LayerIndex, SavedImage, save_image

if TYPE_CHECKING:
    from escrow.capture.engine import Endpoint


class EngineLayers:
    """A :class:`~escrow.rebuild.compare.LayerSource` over two images in the engine.

    Each image is saved at most once, on first use; its layer blobs are spooled
    under ``workdir`` (the system temporary directory by default) and deleted by
    :meth:`close`.  When an image cannot be saved, every layer asked of it
    raises the same error (the comparison records it as a note).
    """

    def __init__(
        self,
        api: Any,
        images: Mapping[str, str | None],
        want: dict[str, set[str]] | None = None,
        workdir: str | Path | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self._api = api
        self._endpoint = endpoint  # the engine's address, named when it cannot be reached
        self._images = images
        self._want = want or {}
        self._workdir = workdir
        self._saved: dict[str, SavedImage] = {}
        self._failed: dict[str, EscrowError] = {}

    def _image(self, side: str) -> SavedImage:
        if side in self._saved:
            return self._saved[side]
        if side in self._failed:
            raise self._failed[side]
        ref = self._images.get(side)
        try:
            if ref is None:
                raise InputError(f"There is no {side} image to read layers from.")
            saved = save_image(
                self._api,
                ref,
                want=self._want.get(side),
                workdir=self._workdir,
                endpoint=self._endpoint,
            )
        except EscrowError as e:
            self._failed[side] = e
            raise
        self._saved[side] = saved
        return saved

    def prefetch(self) -> None:
        """Save both images at once (the engine tars one while escrow reads the other).

        Errors are kept and raised by :meth:`index`, as when saving lazily.
        """
        from concurrent.futures import ThreadPoolExecutor

        sides = [s for s in self._images if s not in self._saved and s not in self._failed]
        if len(sides) < 2:
            return

        def attempt(side: str) -> None:
            try:
                self._image(side)
            except EscrowError:
                pass  # remembered in self._failed

        with ThreadPoolExecutor(max_workers=len(sides)) as pool:
            list(pool.map(attempt, sides))

    def index(self, side: str, diff_id: str) -> LayerIndex:
        return self._image(side).index(diff_id)

    def close(self) -> None:
        for saved in self._saved.values():
            saved.close()
        self._saved.clear()

    def __enter__(self) -> EngineLayers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
