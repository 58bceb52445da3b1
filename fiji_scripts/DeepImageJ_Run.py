#@ File (label="Model bundle folder", style="directory") model
#@ String (label="Pre-processing", value="bundle's own") preprocessing
#@ String (label="Post-processing", value="bundle's own") postprocessing
#@ ImagePlus imp
#@output ImagePlus result
"""Fiji Script Editor command (Python 3 via PyImageJ): run a DeepImageJ bundle on the current image.

Thin wrapper: the image goes to numpy, deepimagej runs the bundle (ImageJ macros of the bundle
are run by this Fiji through the same "DeepImageJ Run" logic when deepimagej.imagej is attached
to it), the result comes back as an ImagePlus. Needs a Fiji started from Python with PyImageJ:

    import imagej; ij = imagej.init("/path/to/Fiji.app", mode="interactive")
    from deepimagej.imagej.fiji import attach; attach(ij)

then run this script from the Script Editor (language: Python (PyImageJ)).
"""
from deepimagej.imagej.fiji import run_in_fiji

result = run_in_fiji(str(model), imp, preprocessing, postprocessing)  # noqa: F821 - SciJava #@ inputs
