package deepimagej.plugin;

import ij.ImagePlus;
import ij.WindowManager;
import ij.gui.Roi;
import ij.io.RoiEncoder;
import ij.plugin.frame.RoiManager;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Plugins › U-Net › U-Net Train: a U-Net trained in the Python worker from the current image
 * annotated in the ROI Manager, or from folders. Macro: {@code run("U-Net Train",
 * "data=[current image + ROI Manager] task=auto output=[/path/my-unet] epochs=10")}. With
 * {@code host=NAME} the training runs on that server as a job and the bundle comes back to
 * {@code output} ({@code detach}: DeepImageJ Jobs installs it when the job is done).
 */
public class UNet_Train extends WorkerCommand {
    public UNet_Train() {
        super("U-Net Train", "train");
    }

    @Override
    protected void execute(String options) throws WorkerException, IOException {
        Worker worker = Worker.get();
        Map<String, Object> args = ask(worker, options);
        if (args == null) {
            return;
        }
        ImageJListener listener = new ImageJListener(false);
        Map<String, Object> plan = worker.call("train.prepare", args, listener);
        if (Json.bool(plan, "needs_image", false)) {
            ImagePlus imp = WindowManager.getCurrentImage();
            if (imp == null) {
                throw new WorkerException("U-Net Train: no image open; open the annotated image (or use data=folders)");
            }
            args.put("image", SharedImages.write(imp, worker.sharedDir().resolve("train-image.raw")));
            RoiManager manager = RoiManager.getInstance();
            Roi[] rois = manager != null ? manager.getRoisAsArray() : new Roi[0];
            Path zip = worker.sharedDir().resolve("RoiSet.zip");
            List<Object> types = new ArrayList<>();
            try (OutputStream out = Files.newOutputStream(zip); ZipOutputStream zos = new ZipOutputStream(out)) {
                for (int i = 0; i < rois.length; i++) {
                    zos.putNextEntry(new ZipEntry(String.format("%04d.roi", i)));
                    zos.write(RoiEncoder.saveAsByteArray(rois[i]));
                    zos.closeEntry();
                    types.add(rois[i].getType());
                }
            }
            args.put("rois", zip.toString());
            args.put("roi_types", types);
        }
        worker.call("train", args, listener);
        listener.finish();
    }
}
