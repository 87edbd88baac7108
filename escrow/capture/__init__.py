"""Capture: turn a build (a Dockerfile build, an existing image, or any build
command) into a build manifest — an in-toto Statement dict.

Public face: :func:`escrow.capture.build.phoenix_build`,
:func:`escrow.capture.capture.capture_image`,
:func:`escrow.capture.record.record_command`; the engine boundary is
:class:`escrow.capture.engine.Engine`.
"""
