"""The audit of a bundle and the trust decision: the one place the run path asks "may this run?".

:func:`require_allowed` is called before an engine loads weights (``predict``) and
:func:`audit_bundle` by ``deepimagej info`` / ``deepimagej trust``. Weights are audited once per
content: the findings are cached in memory and under ``$XDG_CACHE_HOME/deepimagej/audits`` by
the SHA-256 of the weights, so a bundle already audited costs a hash lookup (and nothing at
all with ``trust=True``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepimagej.audit.findings import Finding
from deepimagej.audit.keras import audit_keras
from deepimagej.audit.tensorflow import audit_saved_model
from deepimagej.audit.torchscript import audit_torchscript
from deepimagej.audit.trust import path_hash, relative_name, trust_record
from deepimagej.bundle.spec import ModelSpec, WeightsSpec
from deepimagej.errors import DeepImageJError, UntrustedBundleError
from deepimagej.outputs import write_text_atomic
from deepimagej.paths import cache_dir

#: Bump when the audit policy changes: cached audits of older versions are redone.
AUDIT_VERSION = 1
#: Weight formats whose files can hold code or file access (ONNX holds standard operators only).
AUDITED_FORMATS = ("tensorflow_saved_model_bundle", "keras_hdf5", "torchscript")
#: Weight formats that are Python code of the bundle: refused unless trusted, nothing to inspect.
CODE_FORMATS = ("pytorch_state_dict",)

_MEMORY: dict[str, list[Finding]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Audit:
    """What a bundle would do and whether it may.

    Attributes:
        findings: everything the audit found (refused and notes).
        audited: the files inspected, relative to the bundle.
        trust: the user's trust record for this exact content, if any.
    """

    findings: tuple[Finding, ...]
    audited: tuple[str, ...]
    trust: dict[str, Any] | None

    @property
    def refused(self) -> tuple[Finding, ...]:
        """Findings that stop a run unless the bundle is trusted."""
        return tuple(f for f in self.findings if f.refused)

    @property
    def allowed(self) -> bool:
        """Whether the bundle runs without ``--trust``."""
        return not self.refused or self.trust is not None


def audit_weights(weights: WeightsSpec, root: Path) -> list[Finding]:
    """Audit one weights entry (cached by content); ``[]`` for formats that hold no code (ONNX).

    Raises:
        BundleError: the weights file cannot be read as its format.
    """
    if weights.format in CODE_FORMATS:
        arch = weights.architecture
        code = (arch.source or arch.import_from or "?") if arch is not None else "its architecture"
        return [
            Finding(
                relative_name(Path(weights.path), root) if weights.path else weights.source,
                weights.format,
                f"runs the Python code {code} shipped with the bundle, with your rights",
            )
        ]
    if weights.path is None or weights.format not in AUDITED_FORMATS or not Path(weights.path).exists():
        return []
    key = f"v{AUDIT_VERSION}-{weights.format}-{path_hash(Path(weights.path))}"
    with _LOCK:
        cached = _MEMORY.get(key)
    if cached is None:
        cached = _read_cache(key)
    source = relative_name(Path(weights.path), root)
    if cached is None:
        cached = _audit_file(weights, source)
        _write_cache(key, cached)
    with _LOCK:
        _MEMORY[key] = cached
    return [Finding(source, f.what, f.detail, f.refused) for f in cached]  # named as in this bundle


def audit_macro_file(path: Path, bundle_root: Path) -> list[Finding]:
    """The hook for the ImageJ macros of a bundle: the findings of the static macro checker.

    The checker, ``deepimagej.audit.macros.audit_macro_file(path, bundle_root)`` (same name and
    arguments, from the ImageJ side's branch), plugs in here: this function's body becomes a call
    to it. Until then a bundle's macros are contained by the ImageJ runner's guards alone, their
    files are confined to the bundle folder when the descriptor is read
    (:func:`deepimagej.bundle.files.local_path`), and this returns no finding.
    """
    del path, bundle_root
    return []


def audit_bundle(spec: ModelSpec) -> Audit:
    """Audit every runnable weights file present and every macro of a bundle (``deepimagej info``)."""
    findings: list[Finding] = []
    audited: list[str] = []
    for weights in spec.runnable_weights():
        if weights.path is not None and Path(weights.path).exists():
            findings += audit_weights(weights, spec.root)
            audited.append(f"{relative_name(Path(weights.path), spec.root)} ({weights.format})")
    for macro in (*spec.preprocessing_macros, *spec.postprocessing_macros):
        if macro.is_file():
            findings += audit_macro_file(macro, spec.root)
            audited.append(relative_name(macro, spec.root))
    refused = any(f.refused for f in findings)
    return Audit(tuple(findings), tuple(audited), trust_record(spec) if refused else None)


def require_allowed(
    spec: ModelSpec, weights: WeightsSpec, trust: bool = False, macros: Sequence[Path] = ()
) -> bool:
    """Raise unless the weights (and the ImageJ ``macros`` about to run) pass the audit or are trusted.

    Args:
        spec: the bundle.
        weights: the weights about to be loaded.
        trust: the user trusts this bundle for this run (``--trust``, ``trust=True``): no audit.
        macros: macro files of the bundle that will run.

    Returns:
        Whether the bundle is trusted (``trust`` or a trust record): the engine may then run
        code the bundle ships (``trust_code`` of :func:`deepimagej.engines.load_engine`).

    Raises:
        UntrustedBundleError: the audit refused something and the user has no trust record for
            this content (one line: what, where, and how to trust it).
    """
    if trust:
        return True
    findings = audit_weights(weights, spec.root)
    for macro in macros:
        findings += audit_macro_file(Path(macro), spec.root)
    refused = [f for f in findings if f.refused]
    if not refused:
        return False
    if trust_record(spec) is not None:
        return True
    first = refused[0]
    more = f" (+{len(refused) - 1} more)" if len(refused) > 1 else ""
    raise UntrustedBundleError(
        f"{spec.source}: refused to run untrusted bundle '{spec.name}': {first.source} uses {first.what} "
        f"({first.detail}){more}; review it with `deepimagej info {spec.root}`, then trust it with "
        f"`deepimagej trust {spec.root}` or run with --trust (trust=True)"
    )


# --------------------------------------------------------------------------- helpers


def _audit_file(weights: WeightsSpec, source: str) -> list[Finding]:
    path = Path(weights.path)  # type: ignore[arg-type]
    if weights.format == "tensorflow_saved_model_bundle":
        return audit_saved_model(path, source=source, output_names=weights.output_names)
    if weights.format == "keras_hdf5":
        return audit_keras(path, source=source)
    return audit_torchscript(path, source=source)


def _cache_file(key: str) -> Path:
    return cache_dir() / "audits" / f"{key}.json"


def _read_cache(key: str) -> list[Finding] | None:
    try:
        data = json.loads(_cache_file(key).read_text(encoding="utf-8"))
        return [Finding(str(f["source"]), str(f["what"]), str(f["detail"]), bool(f["refused"])) for f in data]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(key: str, findings: Iterable[Finding]) -> None:
    data = [{"source": f.source, "what": f.what, "detail": f.detail, "refused": f.refused} for f in findings]
    try:
        write_text_atomic(_cache_file(key), json.dumps(data, indent=1) + "\n")
    except DeepImageJError:  # a cache that cannot be written only costs time
        pass
