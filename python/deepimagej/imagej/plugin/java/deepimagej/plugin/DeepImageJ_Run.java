package deepimagej.plugin;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import java.io.File;
import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * Plugins › DeepImageJ › DeepImageJ Run: a bundle on the current image (or the files of
 * {@code inputPath=}), with the bundle's own ImageJ macros, the model in the Python worker.
 * Macro: {@code run("DeepImageJ Run", "model=[unet-pancreatic] format=Tensorflow
 * preprocessing=[preprocessing.txt] postprocessing=[postprocessing.txt] logging=normal")}.
 * With {@code host=NAME} (a server of {@code deepimagej remote}) the model runs there and the
 * macros here; with {@code detach} as well, DeepImageJ Jobs opens the result later.
 */
public class DeepImageJ_Run extends WorkerCommand {
    public DeepImageJ_Run() {
        super("DeepImageJ Run", "run");
    }

    @Override
    protected void execute(String options) throws WorkerException, IOException {
        Worker worker = Worker.get();
        Map<String, Object> args = ask(worker, options);
        if (args == null) {
            return;
        }
        Map<String, Object> job = worker.call("run.prepare", args, new ImageJListener(false));
        List<Object> files = Json.list(job.get("input_files"));
        if (files.isEmpty()) {
            ImagePlus imp = WindowManager.getCurrentImage();
            if (imp == null) {
                throw new WorkerException("DeepImageJ Run needs an open image: open one first (open(path) in a macro)");
            }
            RunJob.Result result = RunJob.run(worker, job, imp);
            if (result != null) {
                result.show();
            }
            return;
        }
        String folder = Json.string(job, "output_folder", null);
        boolean display = Json.bool(job, "display", true);
        for (Object f : files) {
            String path = f.toString();
            ImagePlus imp = IJ.openImage(path);
            if (imp == null) {
                throw new WorkerException("ImageJ cannot open " + path);
            }
            RunJob.Result result = RunJob.run(worker, job, imp);
            if (folder != null) {
                new File(folder).mkdirs();
                String stem = new File(path).getName().replaceFirst("\\.[^.]*$", "");
                String target = new File(folder, stem + "_" + result.main.getTitle().replace(' ', '_') + ".tif").getPath();
                if (!IJ.saveAsTiff(result.main, target)) {
                    throw new WorkerException("cannot write " + target);
                }
            }
            if (display) {
                result.show();
            } else {
                result.close();
            }
        }
    }
}
