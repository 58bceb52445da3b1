package deepimagej.plugin;

import ij.IJ;
import ij.ImagePlus;
import ij.measure.ResultsTable;
import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * Plugins › DeepImageJ › DeepImageJ Explore: without options, the installed models (a
 * "DeepImageJ models" table and the Log); {@code model=[name]} describes one bundle,
 * {@code architecture} adds its layers, {@code apply} runs it on its own example image.
 */
public class DeepImageJ_Explore extends WorkerCommand {
    public DeepImageJ_Explore() {
        super("DeepImageJ Explore", "explore");
    }

    @Override
    protected void execute(String options) throws WorkerException, IOException {
        Worker worker = Worker.get();
        Map<String, Object> reply = worker.call("explore", Json.of("options", options), new ImageJListener(false));
        List<Object> models = Json.list(reply.get("models"));
        if (reply.containsKey("models")) {
            ResultsTable table = new ResultsTable();
            for (Object o : models) {
                Map<String, Object> m = Json.object(o);
                table.incrementCounter();
                table.addValue("Model", Json.string(m, "model", ""));
                table.addValue("Folder", Json.string(m, "folder", ""));
                table.addValue("Status", Json.string(m, "status", ""));
            }
            table.show("DeepImageJ models");
            return;
        }
        String example = Json.string(reply, "apply", null);
        if (example != null) {
            ImagePlus imp = IJ.openImage(example);
            if (imp == null) {
                throw new WorkerException("ImageJ cannot open the example image " + example);
            }
            Map<String, Object> job = worker.call("run.prepare",
                    Json.of("options", "model=[" + Json.string(reply, "model", "") + "]"), new ImageJListener(false));
            RunJob.run(worker, job, imp).show();
        }
    }
}
