"""Image references: ``[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]``, the Docker way."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import NamedTuple

from escrow.errors import InputError, UsageError

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: what follows the ``@`` of a digest (``NAME@sha256:…``), never of credentials
_DIGEST_AFTER_AT = re.compile(r"sha(?:256|384|512):")


def masked_credentials(text: str) -> str | None:
    """``text`` with the credentials it holds (``[SCHEME://]USER[:PASSWORD]@HOST/…``)
    replaced by ``***``, or ``None`` when it holds none.

    A reference's only ``@`` is that of its digest; any other, before a ``/``, is a
    URL's user information, which must never be printed or recorded.
    """
    if "@" not in text:
        return None
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        scheme, rest = "", text.strip()
    cut = -1
    for i, ch in enumerate(rest):
        if ch == "@" and not _DIGEST_AFTER_AT.match(rest, i + 1) and "/" in rest[i + 1 :]:
            cut = i
    if cut < 0:
        return None
    return f"{scheme}{sep}***{rest[cut:]}"


def refuse_credentials(text: str) -> None:
    """:class:`InputError` (exit 2) naming ``text`` with its credentials masked, when it
    holds any: escrow takes a registry's credentials from ``docker login``, never from a
    reference it would print and record."""
    masked = masked_credentials(text)
    if masked is None:
        return
    host = masked.split("@", 1)[1].split("/", 1)[0]
    raise InputError(
        f"The image reference {masked} holds credentials (USER:PASSWORD@), which escrow "
        "never takes in a reference; nothing was done with it.",
        hint=f"Remove them and log in instead (docker login {host}); escrow uses the "
        "same credentials.",
    )


# A NamedTuple, not a frozen dataclass: made at import on the way to `escrow build`'s
# request, where a frozen dataclass costs ~0.5 ms of start-up and this ~0.1 ms
# (docs/DESIGN-NOTES.md, "Start-up of escrow build").
class Reference(NamedTuple):
    """A parsed image reference; ``registry`` is ``docker.io`` when none was named."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        refuse_credentials(text)
        rest, _, digest = text.strip().partition("@")
        if digest and not _DIGEST.match(digest):
            raise InputError(f"The image reference {text!r} has a malformed digest {digest!r}.")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        name, colon, tag = path.rpartition(":")
        if not colon or "/" in tag:
            name, colon, tag = path, "", ""
        if colon and not tag:
            raise InputError(f"The image reference {text!r} has an empty tag.")
        if registry == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"
        if not _REPO.match(name):
            raise InputError(f"The image reference {text!r} does not name a repository.")
        if tag and not _TAG.match(tag):
            raise InputError(f"The image reference {text!r} has a malformed tag {tag!r}.")
        return cls(registry, name, tag or None, digest or None)

    @property
    def name(self) -> str:
        """``HOST/REPO`` (without ``docker.io/library/`` for Docker Hub images)."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    @property
    def ref(self) -> str:
        """What to ask a manifest for: the digest if any, else the tag (``latest``)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_insecure(registry: str) -> bool:
    """Plain HTTP for loopback registries (as Docker Engine does) and for the hosts
    listed in ``ESCROW_INSECURE_REGISTRIES`` (comma-separated ``HOST[:PORT]``)."""
    if registry.startswith("["):  # [IPv6]:PORT
        host = registry[1:].split("]", 1)[0]
    else:
        host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    listed = {h.strip() for h in os.environ.get("ESCROW_INSECURE_REGISTRIES", "").split(",")}
    if registry in listed or host in listed or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_build_tag(tag: str) -> None:
    """A ``-t`` value is a valid image name (no digest), or :class:`UsageError` (exit 2).

    Checked before a build: the engine builds first and refuses the name after.
    """
    masked = masked_credentials(tag)
    if masked is not None:
        raise UsageError(
            f"The tag {masked} holds credentials (USER:PASSWORD@), which escrow never takes "
            "in a tag; nothing was built.",
            hint="Tag the build with -t HOST[:PORT]/REPO:TAG and log in to the registry "
            "with docker login, whose credentials escrow and the engine use.",
        )
    try:
        if "@" in tag:
            raise InputError(f"The image reference {tag!r} holds a digest.")
        _engine_refuses(tag)
        Reference.parse(tag)
    except InputError as e:
        reason = e.message.removeprefix(f"The image reference {tag!r} ").rstrip(".")
        raise UsageError(
            f"The tag {tag!r} is not a valid image name: it {reason}.",
            hint="Write -t [HOST[:PORT]/]name[:tag] in lowercase, e.g. "
            "registry.local/team/app:1.4.",
        ) from e


#: a registry host as the engine takes it: DNS labels (upper case too) and an optional port
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)


def _engine_refuses(tag: str) -> None:
    """:class:`InputError` naming what in ``tag`` the engine would refuse, which
    :meth:`Reference.parse` lets through or names only vaguely: a space or line break at
    an end (``parse`` strips them, and the engine then failed the build, exit 3), a
    character image names cannot hold, an upper-case letter in the name ("does not name a
    repository" said neither), a registry host that is not one."""
    prefix = f"The image reference {tag!r}"
    if tag != tag.strip():
        raise InputError(f"{prefix} begins or ends with a space or line break.")
    odd = next((c for c in tag if not c.isascii()), None)
    if odd is not None:
        raise InputError(
            f"{prefix} has the character {odd!r}, which image names cannot hold "
            "(ASCII letters, digits and . _ - / : only)."
        )
    first, slash, rest = tag.partition("/")
    is_host = slash and ("." in first or ":" in first or first == "localhost")
    untagged = tag.rpartition(":")[0] if ":" in tag.rpartition("/")[2] else tag
    # a host the engine cannot take is read by it as part of the path (``my_host.local/app``)
    if is_host and not _HOST.match(first) and not _REPO.match(untagged):
        raise InputError(f"{prefix} names the registry host {first!r}, which is not a host name.")
    name = untagged.partition("/")[2] if is_host else untagged
    if name != name.lower() and _REPO.match(name.lower()):
        raise InputError(
            f"{prefix} has upper-case letters in its name, which the engine refuses "
            "(only the tag after the colon may have them)."
        )
