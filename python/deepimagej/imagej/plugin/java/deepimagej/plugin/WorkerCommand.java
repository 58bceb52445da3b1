package deepimagej.plugin;

import ij.IJ;
import ij.Macro;
import ij.macro.Interpreter;
import ij.plugin.PlugIn;
import java.io.IOException;
import java.util.Map;

/**
 * A DeepImageJ command of the plugin: the ImageJ side (dialog, images, the bundle's macros,
 * results, errors) of a job the Python worker does. Errors never leave as Java exceptions: they
 * end in an ImageJ error dialog (the macro stops), or on stderr in an ImageJ without a window
 * ({@code -batch}).
 */
public abstract class WorkerCommand implements PlugIn {
    /** The menu command, e.g. "DeepImageJ Run". */
    protected final String title;
    /** The worker's name for the command, e.g. "run". */
    protected final String command;

    protected WorkerCommand(String title, String command) {
        this.title = title;
        this.command = command;
    }

    @Override
    public final void run(String arg) {
        IJ.resetEscape();
        String options = Macro.getOptions();
        try {
            execute(options);
        } catch (WorkerException e) {
            fail(title, e);
        } catch (IOException e) {
            fail(title, new WorkerException("cannot share the image with the Python worker: " + e.getMessage()));
        }
    }

    /** Runs the command with the macro's options (null when clicked from the menu). */
    protected abstract void execute(String options) throws WorkerException, IOException;

    /**
     * The command's arguments for the worker: the macro's options as they are, or the values of
     * the command's dialog (shown, or filled from the options); null if the user canceled it.
     */
    protected Map<String, Object> ask(Worker worker, String options) throws WorkerException {
        Map<String, Object> reply = worker.call("dialog", Json.of("command", command, "options", options),
                new ImageJListener(false));
        Object spec = reply.get("dialog");
        if (spec == null) {
            return Json.of("options", options);
        }
        Map<String, Object> values = Dialogs.show(Json.object(spec));
        return values == null ? null : Json.of("values", values, "options", options);
    }

    /** True while a macro runs this command (a bundle's macros then run nested in it). */
    static boolean inMacro() {
        return Macro.getOptions() != null || Interpreter.getInstance() != null;
    }

    /**
     * Reports a failed command. With ImageJ's window: an error dialog (in a macro, ImageJ's
     * macro error, with the line; the macro stops). Without it ({@code -batch}, headless): the
     * message on stderr, and the macro stops (no dialog: nobody could close it).
     */
    static void fail(String title, WorkerException e) {
        IJ.showProgress(1.0);
        Interpreter interp = Interpreter.getInstance();
        if (e.isCanceled()) {
            IJ.showStatus(title + ": canceled");
            IJ.log("[DeepImageJ] " + title + ": " + e.getMessage());
            stopMacro(interp, title + ": " + e.getMessage());
        } else if (IJ.getInstance() == null) {
            System.err.println(title + ": " + e.getMessage());
            stopMacro(interp, title + ": " + e.getMessage());
        } else {
            IJ.showStatus("");
            IJ.log("[DeepImageJ] " + title + " error: " + e.getMessage());
            IJ.error(title, interp != null ? title + ": " + e.getMessage() : e.getMessage());
        }
    }

    /** Ends the running macro after this command, quietly (the message is already shown). */
    private static void stopMacro(Interpreter interp, String message) {
        if (interp != null) {
            interp.setIgnoreErrors(true);
            interp.abort(message);
        }
    }
}
