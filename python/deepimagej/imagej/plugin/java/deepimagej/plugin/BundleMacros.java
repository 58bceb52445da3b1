package deepimagej.plugin;

import ij.ImagePlus;
import ij.Macro;
import ij.WindowManager;
import ij.macro.Interpreter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Map;

/**
 * Runs a bundle's own ImageJ pre/post-processing macro on an image in this ImageJ, as
 * DeepImageJ does. Inside a batch-mode macro it runs nested (the image is the current one of
 * the batch-mode session); otherwise as a batch macro of its own, in a thread of its own (the
 * current image of a running macro's thread would take the place of {@code imp}), its images
 * never shown.
 */
public final class BundleMacros {
    private BundleMacros() {}

    /**
     * Runs {@code macro} (a {@code {name, path}} description) on {@code imp}; returns the image
     * active at its end.
     *
     * @throws WorkerException the macro failed, or left no image open
     */
    public static ImagePlus run(Map<String, Object> macro, ImagePlus imp, String stage) throws WorkerException {
        String name = Json.string(macro, "name", "macro");
        String text;
        try {
            text = new String(Files.readAllBytes(Paths.get(Json.string(macro, "path", ""))), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new WorkerException(stage + " macro " + name + " cannot be read: " + e.getMessage());
        }
        Interpreter interp = new Interpreter();
        ImagePlus[] out = new ImagePlus[1];
        RuntimeException[] failure = new RuntimeException[1];
        if (Interpreter.isBatchMode()) {
            RunJob.display(imp); // batch mode: becomes the current image, no window
            failure[0] = runCatching(() -> interp.run(text, "")); // with an argument: a "called" macro
            out[0] = WindowManager.getCurrentImage();
        } else {
            Thread thread = new Thread(() -> {
                // the batch macro's first image; else an image window on screen would be the current image
                WindowManager.setTempCurrentImage(imp);
                failure[0] = runCatching(() -> out[0] = interp.runBatchMacro(text, imp));
                WindowManager.setTempCurrentImage(null);
            }, "DeepImageJ " + stage + " macro");
            thread.start();
            try {
                thread.join();
            } catch (InterruptedException e) {
                Interpreter.abort(interp);
                Thread.currentThread().interrupt();
                throw new WorkerException(stage + " macro " + name + " was canceled", true);
            }
        }
        if (failure[0] != null) {
            if (!Macro.MACRO_CANCELED.equals(failure[0].getMessage())) {
                throw new WorkerException(stage + " macro " + name + " failed: " + failure[0]);
            }
            if (!interp.wasError()) {
                throw new WorkerException(stage + " macro " + name + " was canceled", true);
            }
        }
        if (interp.wasError()) {
            String message = interp.getErrorMessage();
            throw new WorkerException(stage + " macro " + name + " failed"
                    + (message != null ? ": " + message : "") + " (line " + interp.getLineNumber() + ")");
        }
        if (out[0] == null) {
            throw new WorkerException(stage + " macro " + name + " left no image open");
        }
        return out[0];
    }

    private static RuntimeException runCatching(Runnable r) {
        try {
            r.run();
            return null;
        } catch (RuntimeException e) {
            return e;
        }
    }
}
