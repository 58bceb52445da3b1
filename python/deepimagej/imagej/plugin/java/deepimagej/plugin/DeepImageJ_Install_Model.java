package deepimagej.plugin;

import java.util.Map;

/**
 * Plugins › DeepImageJ › DeepImageJ Install Model: a bundle (.zip or folder) into the models
 * folder, checked and described in the Log. Macro: {@code run("DeepImageJ Install Model",
 * "source=[/path/model.zip]")}.
 */
public class DeepImageJ_Install_Model extends WorkerCommand {
    public DeepImageJ_Install_Model() {
        super("DeepImageJ Install Model", "install");
    }

    @Override
    protected void execute(String options) throws WorkerException {
        Worker worker = Worker.get();
        Map<String, Object> args = ask(worker, options);
        if (args != null) {
            worker.call("install", args, new ImageJListener(false));
        }
    }
}
