package deepimagej.plugin;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.macro.Interpreter;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One model run on one image: the bundle's pre-processing macros here, the image to the worker
 * through a mapped file, the model in the worker, its outputs back as new images (one per
 * output, with the input's calibration), the bundle's post-processing macros here.
 */
public final class RunJob {
    private RunJob() {}

    /** The result of a run: the main image (after post-processing) and the other outputs. */
    public static final class Result {
        public final ImagePlus main;
        public final List<ImagePlus> others;

        Result(ImagePlus main, List<ImagePlus> others) {
            this.main = main;
            this.others = others;
        }

        /** Shows every output (the main one last: the current image). */
        public void show() {
            for (ImagePlus o : others) {
                display(o);
            }
            display(main);
        }

        /** Closes every output (their images are not needed any more). */
        public void close() {
            for (ImagePlus o : others) {
                o.changes = false;
                o.close();
            }
            main.changes = false;
            main.close();
        }
    }

    /** Shows {@code imp}, or makes it the current image when batch mode already holds it. */
    static void display(ImagePlus imp) {
        if (Interpreter.isBatchMode() && WindowManager.getImage(imp.getID()) == imp) {
            WindowManager.setTempCurrentImage(imp);
        } else {
            imp.show();
        }
    }

    /**
     * Runs the prepared {@code job} (the worker's reply to {@code run.prepare}) on {@code imp},
     * which is not modified; null when the job was detached on a server ({@code host=... detach}).
     */
    public static Result run(Worker worker, Map<String, Object> job, ImagePlus imp) throws WorkerException, IOException {
        String logging = Json.string(job, "logging", "normal");
        boolean verbose = logging.equals("verbose") || logging.equals("debug");
        ImageJListener listener = new ImageJListener(logging.equals("none"));
        List<Object> pre = Json.list(job.get("preprocessing"));
        List<Object> post = Json.list(job.get("postprocessing"));
        ImagePlus current = imp;
        if (!pre.isEmpty()) {
            current = imp.duplicate();
            current.setTitle(imp.getTitle() + "-preprocessed");
            for (Object m : pre) {
                current = BundleMacros.run(Json.object(m), current, "preprocessing");
            }
        }
        long t0 = System.nanoTime();
        Path file = worker.sharedDir().resolve("input-0.raw");
        Map<String, Object> image = SharedImages.write(current, file);
        long t1 = System.nanoTime();
        if (current != imp) {
            current.changes = false;
            current.close();
        }
        Map<String, Object> inputs = Json.of(Json.string(job, "input", "input"), image);
        Map<String, Object> reply = worker.call("run", Json.of("job", job, "inputs", inputs), listener);
        long t2 = System.nanoTime();
        if (reply.get("detached") != null) { // host=... detach: DeepImageJ Jobs opens the result later
            listener.finish();
            return null;
        }
        List<ImagePlus> outputs = new ArrayList<>();
        for (Object o : Json.object(reply.get("outputs")).values()) {
            outputs.add(SharedImages.read(Json.object(o)));
        }
        long t3 = System.nanoTime();
        if (outputs.isEmpty()) {
            throw new WorkerException("the model gave no output");
        }
        if (verbose) {
            IJ.log(String.format("[DeepImageJ] image to the worker %.3f s, outputs back %.3f s", (t1 - t0) / 1e9,
                    (t3 - t2) / 1e9));
        }
        ImagePlus main = outputs.remove(0);
        if (!post.isEmpty() && Interpreter.isBatchMode()) {
            for (ImagePlus o : outputs) {
                display(o); // the post-processing macros may select them by title
            }
        }
        for (Object m : post) {
            main = BundleMacros.run(Json.object(m), main, "postprocessing");
        }
        listener.finish();
        return new Result(main, outputs);
    }
}
