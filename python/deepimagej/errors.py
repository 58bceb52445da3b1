"""Errors raised by deepimagej.

Every error a user can provoke is a :class:`DeepImageJError` whose message is one
line that names the file or field at fault and says what is expected.
"""

from __future__ import annotations


class DeepImageJError(Exception):
    """Base class of every error deepimagej raises on purpose."""


class BundleError(DeepImageJError):
    """A model bundle (config.xml / rdf.yaml / weights) is missing, broken or inconsistent."""


class InputImageError(DeepImageJError):
    """The input image does not fit the model (axes, channels, size)."""


class UntrustedBundleError(BundleError):
    """The bundle's audit found something a model should not do and the user has not trusted it."""


class OutputError(DeepImageJError):
    """A result cannot be written where asked (it is an input, the folder is read-only, the disk is full...)."""


class EngineError(DeepImageJError):
    """A deep-learning engine could not load or run the model."""


class ImageJError(DeepImageJError):
    """ImageJ (Java, ij.jar, Xvfb) could not be started or used."""


class MacroError(ImageJError):
    """An ImageJ macro failed; carries the macro's message and line number."""

    def __init__(self, message: str, line: int | None = None, macro: str | None = None):
        self.line = line
        self.macro = macro
        where = f" (line {line})" if line else ""
        name = f"{macro}: " if macro else ""
        super().__init__(f"{name}{message}{where}")


class TrainingError(DeepImageJError):
    """Training data or training settings are unusable."""


class RemoteError(DeepImageJError):
    """A remote host or job cannot be used: connection, host key, server installation, job state."""


class ConnectionLost(RemoteError):
    """The SSH connection to a host broke in the middle of an operation (the remote job goes on)."""


class DeepImageJWarning(UserWarning):
    """Something the user should know about a run that still goes ahead (the CLI prints it as ``note:``)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries often add multi-line traces)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
