package deepimagej.plugin;

import java.util.Map;

/**
 * Plugins › DeepImageJ › DeepImageJ Build Bundled Model: weights and settings into a tested
 * bundle. Macro: {@code run("DeepImageJ Build Bundled Model", "weights=[model.h5]
 * output=[bundle folder] ...")}.
 */
public class DeepImageJ_Build_Bundled_Model extends WorkerCommand {
    public DeepImageJ_Build_Bundled_Model() {
        super("DeepImageJ Build Bundled Model", "build");
    }

    @Override
    protected void execute(String options) throws WorkerException {
        Worker worker = Worker.get();
        Map<String, Object> args = ask(worker, options);
        if (args != null) {
            worker.call("build", args, new ImageJListener(false));
        }
    }
}
