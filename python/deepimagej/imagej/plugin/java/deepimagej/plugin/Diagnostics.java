package deepimagej.plugin;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import java.io.IOException;
import java.util.Map;

/**
 * Checks of the plugin's worker, callable from a macro with {@code call()}:
 * {@code call("deepimagej.plugin.Diagnostics.workerPid")} (the running worker's process id, or
 * an empty string), {@code call("deepimagej.plugin.Diagnostics.echo")} (the current image to the
 * worker and back as a new image; returns the seconds of each step).
 */
public final class Diagnostics {
    private Diagnostics() {}

    /** The process id of the running worker, or "" when none runs. */
    public static String workerPid() {
        Worker w = Worker.running();
        return w == null ? "" : String.valueOf(w.pid());
    }

    /** This plugin's version and protocol. */
    public static String version() {
        return Worker.VERSION + " (protocol " + Worker.PROTOCOL + ")";
    }

    /** Stops the running worker (the next command starts a new one). */
    public static String stopWorker() {
        Worker.stopRunning();
        return "";
    }

    /**
     * Sends the current image to the worker, which maps it, reads every pixel and writes it back
     * into a file of its own; shows the copy. Returns {@code "write=S worker=S read=S image=S
     * worker_read=S worker_write=S bytes=N"}: seconds to copy the pixels into the mapped file
     * here, of the whole request, to copy the worker's file into new pixel arrays here, to make
     * the ImagePlus of them (display range, calibration); the worker's seconds to read every
     * byte and to write its file; the image's bytes.
     */
    public static String echo() {
        ImagePlus imp = WindowManager.getCurrentImage();
        if (imp == null) {
            IJ.error("DeepImageJ", "echo needs an open image");
            return "";
        }
        try {
            Worker worker = Worker.get();
            long t0 = System.nanoTime();
            Map<String, Object> image = SharedImages.write(imp, worker.sharedDir().resolve("input-0.raw"));
            long t1 = System.nanoTime();
            Map<String, Object> reply = worker.call("echo", Json.of("inputs", Json.of("image", image)),
                    new ImageJListener(true));
            long t2 = System.nanoTime();
            Map<String, Object> output = Json.object(Json.object(reply.get("outputs")).values().iterator().next());
            ij.ImageStack pixels = SharedImages.readStack(output);
            long t3 = System.nanoTime();
            ImagePlus copy = SharedImages.toImagePlus(pixels, output);
            long t4 = System.nanoTime();
            RunJob.display(copy);
            long bytes = (long) imp.getWidth() * imp.getHeight() * imp.getStackSize() * (imp.getBitDepth() == 24 ? 4
                    : imp.getBitDepth() / 8);
            return String.format(java.util.Locale.US, "write=%.6f worker=%.6f read=%.6f image=%.6f worker_read=%.6f "
                    + "worker_write=%.6f bytes=%d", (t1 - t0) / 1e9, (t2 - t1) / 1e9, (t3 - t2) / 1e9, (t4 - t3) / 1e9,
                    Json.number(reply, "read_s", -1), Json.number(reply, "write_s", -1), bytes);
        } catch (WorkerException e) {
            WorkerCommand.fail("DeepImageJ echo", e);
        } catch (IOException e) {
            WorkerCommand.fail("DeepImageJ echo", new WorkerException(e.getMessage()));
        }
        return "";
    }
}
