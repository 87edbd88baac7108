"""Errors of registry work, each a subclass of the :mod:`escrow.errors` tree.

::

    EnvironmentProblem (exit 3)
    ├── RegistryUnavailable     the registry cannot be reached, or answered with a server error
    └── RegistryAuthError       the registry refused the credentials (401/403)
    InputError (exit 2)
    └── RegistryNotFound        no such repository, tag, manifest or blob
    CheckFailed (exit 1)
    └── RegistryIntegrityError  bytes the registry served do not match their digest
"""

from __future__ import annotations

from escrow.errors import CheckFailed, EnvironmentProblem, InputError


class RegistryUnavailable(EnvironmentProblem):
    pass


class RegistryAuthError(EnvironmentProblem):
    pass


class RegistryNotFound(InputError):
    pass


class RegistryIntegrityError(CheckFailed):
    pass
