"""Remote execution: run and train on a server over SSH, as jobs you can follow, fetch, cancel and resume.

>>> from deepimagej import remote
>>> remote.add_host("gpu", "me@gpu.example.org", key="~/.ssh/id_ed25519")            # doctest: +SKIP
>>> remote.test_host("gpu", accept_host_key=True)["gpus"]                              # doctest: +SKIP
>>> remote.run("gpu", "bundles/unet-pancreatic", "cells.tif", "labels.tif", tile="512,512")  # doctest: +SKIP
>>> job = remote.train("gpu", images="imgs/", rois="rois/", out="my-unet", epochs=50, detach=True)  # doctest: +SKIP
>>> remote.jobs()                                                                      # doctest: +SKIP
>>> remote.fetch(job.id)                                                               # doctest: +SKIP

The server needs the same ``deepimagej`` (``pip install 'deepimagej[all]'``) and an SSH login by
key; nothing else (no daemon, no open port). See :mod:`deepimagej.remote.client` for how a job
travels, :mod:`deepimagej.remote.server` and :mod:`deepimagej.remote.runner` for the server's side.
"""

from deepimagej.remote.client import Output as Output
from deepimagej.remote.client import Upload as Upload
from deepimagej.remote.client import Work as Work
from deepimagej.remote.client import add_host as add_host
from deepimagej.remote.client import cancel as cancel
from deepimagej.remote.client import clean as clean
from deepimagej.remote.client import describe_progress as describe_progress
from deepimagej.remote.client import fetch as fetch
from deepimagej.remote.client import follow as follow
from deepimagej.remote.client import host as host
from deepimagej.remote.client import hosts as hosts
from deepimagej.remote.client import job as job
from deepimagej.remote.client import jobs as jobs
from deepimagej.remote.client import log as log
from deepimagej.remote.client import remove as remove
from deepimagej.remote.client import remove_host as remove_host
from deepimagej.remote.client import resume as resume
from deepimagej.remote.client import run as run
from deepimagej.remote.client import submit as submit
from deepimagej.remote.client import test_host as test_host
from deepimagej.remote.client import train as train
from deepimagej.remote.store import Host as Host
from deepimagej.remote.store import Job as Job
