"""The hostile corpus: bad and malicious inputs, each with the outcome deepimagej promises.

One topic per module (``descriptors``, ``bundles``, ``images``, ``outputs``, ``signals``...), each
defining ``CASES``, a list of :class:`hostile.case.Case`. ``tests/test_hostile.py`` runs every
case of every module listed in :data:`TOPICS` in a fresh process with a time limit, two at a
time, and fails on any traceback, hang, unexpected exit status or message, changed input file,
forbidden side effect, temporary file left behind or process left running.

To add a topic (e.g. the ImageJ macro cases): write ``tests/hostile/<topic>.py`` with ``CASES``
and add its name to :data:`TOPICS`. Hostile models are built from code in
:mod:`hostile.materials` (no binary blob is committed).
"""

TOPICS = ("descriptors", "bundles", "images", "outputs", "signals")
