"""deepimagej: run and train deep-learning image models from Python, the CLI and ImageJ."""

from __future__ import annotations

from deepimagej.errors import (
    BundleError,
    DeepImageJError,
    EngineError,
    ImageJError,
    InputImageError,
    MacroError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "DeepImageJError",
    "EngineError",
    "ImageJError",
    "InputImageError",
    "MacroError",
    "TrainingError",
    "__version__",
    "load_bundle",
    "run",
]


def load_bundle(path):  # noqa: ANN001, ANN201 - thin re-export, typed in deepimagej.bundle
    """Read a bundle folder or descriptor file into a :class:`~deepimagej.bundle.ModelSpec`."""
    from deepimagej.bundle import load_bundle as _load

    return _load(path)


def run(bundle, image, **kwargs):  # noqa: ANN001, ANN003, ANN201 - re-export of deepimagej.predict.run
    """Run a bundle on an image; see :func:`deepimagej.predict.run`."""
    from deepimagej.predict import run as _run

    return _run(bundle, image, **kwargs)
