"""Every Java class deepimagej uses, in one registry: ``jc.IJ``, ``jc.ImagePlus``, ``jc.Pixels``...

As PyImageJ's ``jc`` (``imagej._java``), the registry is a scyjava ``JavaClasses``: each
attribute names one class and is looked up lazily, so importing this module starts no Java;
the first use after :func:`deepimagej.imagej.jvm.start_jvm` imports the class (scyjava caches
it), and a use before the JVM has started raises. Three kinds of classes live here: the JDK's,
ImageJ 1.x's (``ij.jar``) and the DeepImageJ shim's (``deepimagej.ij.*``, compiled from
``java/deepimagej/ij/`` by :mod:`deepimagej.imagej.shim` and put on the class path at start).
The plugin under ``plugin/java`` runs in ImageJ's own Java process, not here, and is not listed.

scyjava turns a class that is not found into ``None``; ``tests/test_java_classes.py`` resolves
every entry in the started JVM (a misspelt name fails there, not for a user) and checks that no
other module looks a Java class up by its name.

This module is also where a missing scyjava (the ``imagej`` extra) becomes a clear error. The
modules that the command line and the ImageJ plugin's worker load without that extra
(``macro``, ``cli``, ``commands/``) import ``jc`` inside the functions that use Java.
"""

from __future__ import annotations

from deepimagej.errors import ImageJError

try:
    from scyjava import JavaClasses
except ImportError as exc:
    raise ImageJError("ImageJ support needs scyjava and JPype1: pip install 'deepimagej[imagej]'") from exc


class DeepImageJClasses(JavaClasses):
    """The Java classes deepimagej uses, by their simple names (use the instance :data:`jc`)."""

    # ------------------------------------------------------------------ the JDK
    @JavaClasses.java_import
    def Dialog(self) -> str:
        return "java.awt.Dialog"

    @JavaClasses.java_import
    def ManagementFactory(self) -> str:  # the soak benchmark's thread count
        return "java.lang.management.ManagementFactory"

    @JavaClasses.java_import
    def Menu(self) -> str:  # the submenus of ImageJ's window (start(show=True))
        return "java.awt.Menu"

    @JavaClasses.java_import
    def MenuItem(self) -> str:
        return "java.awt.MenuItem"

    @JavaClasses.java_import
    def Runnable(self) -> str:
        return "java.lang.Runnable"

    @JavaClasses.java_import
    def Runtime(self) -> str:
        return "java.lang.Runtime"

    @JavaClasses.java_import
    def System(self) -> str:
        return "java.lang.System"

    @JavaClasses.java_import
    def Thread(self) -> str:
        return "java.lang.Thread"

    @JavaClasses.java_import
    def Window(self) -> str:
        return "java.awt.Window"

    # ------------------------------------------------------------------ ImageJ 1.x (ij.jar)
    @JavaClasses.java_import
    def ByteProcessor(self) -> str:
        return "ij.process.ByteProcessor"

    @JavaClasses.java_import
    def Calibration(self) -> str:
        return "ij.measure.Calibration"

    @JavaClasses.java_import
    def ColorProcessor(self) -> str:
        return "ij.process.ColorProcessor"

    @JavaClasses.java_import
    def CompositeImage(self) -> str:
        return "ij.CompositeImage"

    @JavaClasses.java_import
    def FileSaver(self) -> str:
        return "ij.io.FileSaver"

    @JavaClasses.java_import
    def FloatProcessor(self) -> str:
        return "ij.process.FloatProcessor"

    @JavaClasses.java_import
    def GenericDialog(self) -> str:
        return "ij.gui.GenericDialog"

    @JavaClasses.java_import
    def IJ(self) -> str:
        return "ij.IJ"

    @JavaClasses.java_import
    def ImageJ(self) -> str:
        return "ij.ImageJ"

    @JavaClasses.java_import
    def ImagePlus(self) -> str:
        return "ij.ImagePlus"

    @JavaClasses.java_import
    def ImageStack(self) -> str:
        return "ij.ImageStack"

    @JavaClasses.java_import
    def Interpreter(self) -> str:
        return "ij.macro.Interpreter"

    @JavaClasses.java_import
    def Macro(self) -> str:
        return "ij.Macro"

    @JavaClasses.java_import
    def Menus(self) -> str:
        return "ij.Menus"

    @JavaClasses.java_import
    def OpenDialog(self) -> str:
        return "ij.io.OpenDialog"

    @JavaClasses.java_import
    def Plot(self) -> str:
        return "ij.gui.Plot"

    @JavaClasses.java_import
    def Prefs(self) -> str:
        return "ij.Prefs"

    @JavaClasses.java_import
    def Recorder(self) -> str:  # the Macro Recorder (tests of recorded lines)
        return "ij.plugin.frame.Recorder"

    @JavaClasses.java_import
    def ResultsTable(self) -> str:
        return "ij.measure.ResultsTable"

    @JavaClasses.java_import
    def RoiEncoder(self) -> str:
        return "ij.io.RoiEncoder"

    @JavaClasses.java_import
    def RoiManager(self) -> str:
        return "ij.plugin.frame.RoiManager"

    @JavaClasses.java_import
    def ShortProcessor(self) -> str:
        return "ij.process.ShortProcessor"

    @JavaClasses.java_import
    def WaitForUserDialog(self) -> str:
        return "ij.gui.WaitForUserDialog"

    @JavaClasses.java_import
    def WindowManager(self) -> str:
        return "ij.WindowManager"

    # ------------------------------------------------------------------ the DeepImageJ shim (java/deepimagej/ij)
    @JavaClasses.java_import
    def Command(self) -> str:
        return "deepimagej.ij.Command"

    @JavaClasses.java_import
    def CommandHandler(self) -> str:
        return "deepimagej.ij.CommandHandler"

    @JavaClasses.java_import
    def Confinement(self) -> str:
        return "deepimagej.ij.Confinement"

    @JavaClasses.java_import
    def DialogGuard(self) -> str:
        return "deepimagej.ij.DialogGuard"

    @JavaClasses.java_import
    def Pixels(self) -> str:
        return "deepimagej.ij.Pixels"

    @JavaClasses.java_import
    def Shutdown(self) -> str:
        return "deepimagej.ij.Shutdown"


#: The registry: ``jc.ImagePlus``, ``jc.IJ.log(...)``, ``jc.ResultsTable()``...
jc = DeepImageJClasses()
