#@ String (label="Options (empty: show the dialog)", value="") options
"""Fiji Script Editor command (PyImageJ): train or fine-tune a U-Net from the current image and its ROI Manager.

Thin wrapper over the "U-Net Train" command of deepimagej.imagej (see DeepImageJ_Run.py for how
to attach deepimagej to a Fiji started with PyImageJ). Annotate the current image with one area
ROI per object (segmentation) or a multi-point ROI (detection) in the ROI Manager, run this
script, then run the exported bundle with "DeepImageJ Run".
"""
from deepimagej.imagej.fiji import train_in_fiji

train_in_fiji(options)  # noqa: F821 - SciJava #@ inputs
