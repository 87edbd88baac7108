"""Crafted layer archives and ``docker save`` archives for the comparison engine's unit tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class E:
    """One member of a crafted layer."""

    name: str
    data: bytes | None = None
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: float = 1_700_000_000
    linkname: str = ""
    uname: str = "root"
    gname: str = "root"
    pax: dict[str, str] = field(default_factory=dict)
    devmajor: int = 0
    devminor: int = 0

    def tarinfo(self) -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.mode = self.mode
        info.uid, info.gid = self.uid, self.gid
        info.uname, info.gname = self.uname, self.gname
        info.mtime = self.mtime
        info.linkname = self.linkname
        info.devmajor, info.devminor = self.devmajor, self.devminor
        info.pax_headers = dict(self.pax)
        data = self.data if self.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else None
        info.size = len(data) if data is not None else 0
        return info, data


def layer(entries: Sequence[E], fmt: int = tarfile.PAX_FORMAT, pad: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            info, data = e.tarinfo()
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue() + bytes(pad)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    t.addfile(info, io.BytesIO(data))


def config_for(tars: Sequence[bytes]) -> bytes:
    """An image config whose diff IDs are those of the (uncompressed) layer tars."""
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(t)}" for t in tars]},
            "history": [{"created_by": f"step {i}"} for i in range(len(tars))],
        }
    ).encode()


def classic_save(tars: Sequence[bytes]) -> bytes:
    """The layout of Engine <= 24: ``<v1-id>/layer.tar``, ``<id>.json``, ``manifest.json`` last."""
    config = config_for(tars)
    buf = io.BytesIO()
    paths = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        # directories are written in v1-ID order, not in layer order
        for i, data in sorted(enumerate(tars), key=lambda p: sha(b"v1" + p[1])):
            v1 = sha(b"v1" + data + bytes([i]))
            paths.append((i, f"{v1}/layer.tar"))
            _add(t, f"{v1}/VERSION", b"1.0")
            _add(t, f"{v1}/json", b"{}")
            _add(t, f"{v1}/layer.tar", data)
        _add(t, f"{sha(config)}.json", config)
        layers = [p for _, p in sorted(paths)]
        manifest = [{"Config": f"{sha(config)}.json", "RepoTags": ["x:latest"], "Layers": layers}]
        _add(t, "manifest.json", json.dumps(manifest).encode())
        _add(t, "repositories", b"{}")
    return buf.getvalue()


MEDIA = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def oci_save(
    tars: Sequence[bytes],
    compress: Sequence[str | None] | None = None,
    *,
    docker_manifest: bool = True,
    nested_index: bool = False,
) -> bytes:
    """The layout of Engine >= 25 (``blobs/sha256``, ``index.json``, ``oci-layout``,
    ``manifest.json``), or a plain OCI image layout without ``manifest.json``."""
    compress = compress or [None] * len(tars)
    config = config_for(tars)
    blobs: list[tuple[str, bytes]] = []
    descs = []
    for data, how in zip(tars, compress, strict=True):
        blob = gz(data) if how == "gzip" else zstd(data) if how == "zstd" else data
        blobs.append((sha(blob), blob))
        descs.append({"mediaType": MEDIA[how], "digest": f"sha256:{sha(blob)}", "size": len(blob)})
    blobs.append((sha(config), config))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{sha(config)}",
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    blobs.append((sha(manifest), manifest))
    top = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{sha(manifest)}",
        "size": len(manifest),
    }
    if nested_index:
        inner = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
        blobs.append((sha(inner), inner))
        top = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{sha(inner)}",
            "size": len(inner),
        }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for hexd, blob in blobs:
            _add(t, f"blobs/sha256/{hexd}", blob)
        _add(t, "index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
        _add(t, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        if docker_manifest:
            layers = [f"blobs/sha256/{d['digest'][7:]}" for d in descs]
            docker = [
                {
                    "Config": f"blobs/sha256/{sha(config)}",
                    "RepoTags": ["x:latest"],
                    "Layers": layers,
                }
            ]
            _add(t, "manifest.json", json.dumps(docker).encode())
    return buf.getvalue()
