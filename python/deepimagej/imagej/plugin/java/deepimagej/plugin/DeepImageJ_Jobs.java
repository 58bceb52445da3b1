package deepimagej.plugin;

import ij.IJ;
import ij.ImagePlus;
import ij.measure.ResultsTable;
import java.util.List;
import java.util.Map;

/**
 * Plugins › DeepImageJ › DeepImageJ Jobs: the remote runs and trainings ({@code deepimagej
 * remote}; {@code host=} in DeepImageJ Run and U-Net Train, {@code deepimagej run/train --host}).
 * Clicked: the "DeepImageJ Jobs" table and a dialog (which job, what to do); in a macro:
 * {@code run("DeepImageJ Jobs", "action=fetch job=3")} (also refresh, cancel, log). A fetched
 * run's result opens here, after the bundle's post-processing macros when DeepImageJ Run started it.
 */
public class DeepImageJ_Jobs extends WorkerCommand {
    /** The table's title, as in the embedded ImageJ. */
    static final String TABLE = "DeepImageJ Jobs";

    public DeepImageJ_Jobs() {
        super("DeepImageJ Jobs", "jobs");
    }

    @Override
    protected void execute(String options) throws WorkerException {
        Worker worker = Worker.get();
        Map<String, Object> args = inMacro() ? Json.of("options", options) : ask(worker, options);
        if (args == null) {
            return;
        }
        Map<String, Object> reply = worker.call("jobs", args, new ImageJListener(false));
        String path = Json.string(reply, "open", null);
        if (path != null) {
            ImagePlus imp = IJ.openImage(path);
            if (imp == null) {
                throw new WorkerException("ImageJ cannot open the job's result " + path);
            }
            for (Object m : Json.list(reply.get("postprocessing"))) {
                imp = BundleMacros.run(Json.object(m), imp, "postprocessing");
            }
            imp.setTitle(Json.string(reply, "title", imp.getTitle()));
            RunJob.display(imp);
            IJ.log("[DeepImageJ Jobs] job " + Json.string(reply, "job", "?") + ": result opened as '"
                    + imp.getTitle() + "'");
        }
        show(Json.list(reply.get("table")));
    }

    /** The job table (one row per job, its columns in the worker's order). */
    private static void show(List<Object> rows) {
        ResultsTable table = new ResultsTable();
        for (Object o : rows) {
            table.incrementCounter();
            for (Map.Entry<String, Object> cell : Json.object(o).entrySet()) {
                Object value = cell.getValue();
                if (value instanceof Number) {
                    table.addValue(cell.getKey(), ((Number) value).doubleValue());
                } else {
                    table.addValue(cell.getKey(), String.valueOf(value));
                }
            }
        }
        table.show(TABLE);
    }
}
