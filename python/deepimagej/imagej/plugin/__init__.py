"""DeepImageJ in a user's own ImageJ or Fiji: a plugin jar that talks to a Python worker.

``deepimagej install-plugin /path/to/Fiji.app`` (:mod:`~deepimagej.imagej.plugin.install`)
compiles the plugin jar (``java/``: Plugins › DeepImageJ › Run, Explore, Install Model, Build
Bundled Model, Plugins › U-Net › Train; ImageJ 1.x only) and copies it into ImageJ's plugins
folder with the command that starts the worker of this Python environment. In ImageJ, the
first DeepImageJ command starts ``deepimagej worker`` (:mod:`~deepimagej.imagej.plugin.worker`),
which keeps models loaded and runs them on images shared through memory-mapped files
(:mod:`~deepimagej.imagej.plugin.protocol`). Nothing here imports Java.
"""
