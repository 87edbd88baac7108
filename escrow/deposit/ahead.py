"""What ``escrow build`` stores in the deposit while the engine is still building.

Both run in daemon threads (an interrupted build does not wait for them) and report
no failure of their own: whatever they could not store is stored after the build, as
it would have been without them.  What they did store is used only once checked to be
what the build recorded, and still in the store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from escrow.deposit.store import DepositStore

if TYPE_CHECKING:
    from escrow.capture.engine import DockerEngine


class SaveAhead:
    """Store the layers of one image of a build that is still running, in a daemon thread:
    read from the engine's layer store (:func:`escrow.deposit.images.local_layers`), or
    with a ``docker save`` when this process cannot read it.

    ``escrow build`` offers the image of the step after which only instructions
    that add no layer remain (``ENV``, ``CMD``, ``LABEL``, ...): the built image will
    have exactly its layers, so they are in the store by the time the build ends and
    :func:`saved_config` needs no ``docker save`` then.  Only the first offer is
    taken.  A failure here is not reported: it only means the save happens after
    the build, where any problem is reported as usual.
    """

    def __init__(self, engine: DockerEngine, store: DepositStore) -> None:
        self._engine = engine
        self._store = store
        self._thread: threading.Thread | None = None

    def offer(self, image_ref: str) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(image_ref,), name="escrow-save-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, image_ref: str) -> None:
        try:
            found = self._engine.inspect_image(image_ref)
            if not found or not str(found.get("Id", "")).startswith("sha256:"):
                return
            diff_ids = [str(d) for d in (found.get("RootFS") or {}).get("Layers") or []]
            from escrow.deposit.images import local_layers, save_images

            with self._store.lock(exclusive=False):
                # from the engine's layer store (the new layers only), else one save
                if not local_layers(self._engine, self._store, diff_ids):
                    save_images(self._engine, self._store, [str(found["Id"])])
        except Exception:  # noqa: BLE001 - the save after the build reports problems
            return

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


@dataclass(frozen=True)
class StoredContext:
    """A build context archived and stored, ahead of the record that references it."""

    tree_digest: str
    archive_digest: str
    archive_size: int
    index: str  # the context index blob
    blobs: tuple[str, ...]  # every blob the index names, itself included
    dockerfile: bytes | None


class ContextAhead:
    """Archive and store a build context in a daemon thread while the engine builds it.

    ``escrow build`` starts it once the engine has the context; :func:`deposit_entry`
    then finds the context stored (a 1 GiB context is read and hashed during the
    build, not after it).  It archives the folder again, as a deposit always did:
    what it stores is used only if its tree digest is the one recorded and all its
    blobs are still there (a ``gc --apply`` may run in between); otherwise the
    deposit archives the folder after the build, as before.  Failures here are not
    reported: they only mean that.
    """

    def __init__(
        self,
        store: DepositStore,
        context_dir: Path,
        dockerfile: Path | None = None,
        leave_out: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._context_dir = context_dir
        self._dockerfile = dockerfile
        self._leave_out = leave_out  # escrow's own folders, as the build left them out
        self._thread: threading.Thread | None = None
        self._result: StoredContext | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="escrow-context-ahead", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        from escrow.capture.context import make_context
        from escrow.deposit import deposit  # noqa: F401 - for the deposit after the build
        from escrow.deposit.context import context_blobs, store_context

        try:
            ctx = make_context(
                self._context_dir,
                self._dockerfile,
                require_dockerfile=True,
                embed_dockerfile=True,
                leave_out=self._leave_out,
            )
            try:
                known = {str(f["path"]): str(f["sha256"]) for f in ctx.files if f.get("sha256")}
                with self._store.lock(exclusive=False):
                    digest, index = store_context(self._store, ctx.rewind(), known)
            finally:
                ctx.close()
            self._result = StoredContext(
                tree_digest=ctx.tree_digest,
                archive_digest=str(index["archiveDigest"]),
                archive_size=int(index["archiveSize"]),
                index=digest,
                blobs=(digest, *context_blobs(index)),
                dockerfile=ctx.dockerfile_bytes,
            )
        except Exception:  # noqa: BLE001 - the deposit after the build does it then
            return

    def result(self) -> StoredContext | None:
        """What was stored (waiting for it), or None when nothing usable was."""
        if self._thread is None:
            return None
        self._thread.join()
        return self._result
