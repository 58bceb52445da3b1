"""What a bundle would do, and whether the user lets it (the trust decision).

A bundle is untrusted code: its TensorFlow graph, TorchScript code and ImageJ macros run with the
user's rights. The audit inspects them before anything runs and lists :class:`Finding` s; the
ones marked ``refused`` stop a run unless the user trusts the bundle (``--trust`` / ``trust=True``
for one run, or a record made by ``deepimagej trust BUNDLE`` for its exact content).

Modules: :mod:`~deepimagej.audit.tensorflow` (SavedModel graphs), :mod:`~deepimagej.audit.keras`
(Keras configurations), :mod:`~deepimagej.audit.torchscript` (TorchScript code and graphs),
:mod:`~deepimagej.audit.trust` (content hash, trust records) and :mod:`~deepimagej.audit.bundle`
(the audit of a bundle, its cache and :func:`require_allowed`, which the run path calls).
"""

from __future__ import annotations

from deepimagej.audit.bundle import Audit, audit_bundle, audit_macro_file, audit_weights, require_allowed
from deepimagej.audit.findings import Finding
from deepimagej.audit.trust import content_hash, record_trust, revoke_trust, trust_record, trust_records

__all__ = [
    "Audit",
    "Finding",
    "audit_bundle",
    "audit_macro_file",
    "audit_weights",
    "content_hash",
    "record_trust",
    "require_allowed",
    "revoke_trust",
    "trust_record",
    "trust_records",
]
