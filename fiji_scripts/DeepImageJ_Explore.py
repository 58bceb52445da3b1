#@ String (label="Model (folder or name; empty lists all)", value="") model
#@ Boolean (label="Apply to its example image", value=false) apply
"""Fiji Script Editor command (PyImageJ): list installed DeepImageJ bundles or show/apply one.

Thin wrapper over the "DeepImageJ Explore" command of deepimagej.imagej (see DeepImageJ_Run.py
for how to attach deepimagej to a Fiji started with PyImageJ).
"""
from deepimagej.imagej.fiji import explore_in_fiji

explore_in_fiji(model, apply)  # noqa: F821 - SciJava #@ inputs
