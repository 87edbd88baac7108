"""escrow: a build-audit and provenance recorder for phoenix Docker builds.

Every build becomes a signed in-toto Statement (a DSSE envelope) appended to a
tamper-evident, RFC 9162 style transparency log, and rendered into signed PDF
audit packs that verify offline.
"""

__version__ = "0.1.0"
