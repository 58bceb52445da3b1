package deepimagej.ij;

import ij.IJ;
import ij.Macro;
import ij.plugin.PlugIn;

/**
 * The ImageJ side of the DeepImageJ commands. Registered in ImageJ's command table as
 * {@code deepimagej.ij.Command("run")}, {@code ...("explore")}, ... so that
 * {@code run("DeepImageJ Run", "model=[...] ...")} in a macro reaches the Python handler.
 */
public class Command implements PlugIn {
    private static volatile CommandHandler handler;

    public static void setHandler(CommandHandler h) {
        handler = h;
    }

    public static CommandHandler getHandler() {
        return handler;
    }

    @Override
    public void run(String arg) {
        CommandHandler h = handler;
        if (h == null) {
            IJ.error("DeepImageJ", "DeepImageJ commands need the deepimagej Python package to be running.");
            return;
        }
        h.run(arg, Macro.getOptions());
    }
}
