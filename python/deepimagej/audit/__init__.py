"""What a bundle would do, and whether the user lets it (the trust decision).

A bundle is untrusted code: its TensorFlow graph, TorchScript code and ImageJ macros run with the
user's rights. The audit inspects them before anything runs and lists :class:`Finding` s; the
ones marked ``refused`` stop a run unless the user trusts the bundle.
"""

from __future__ import annotations

from deepimagej.audit.findings import Finding

__all__ = ["Finding"]
