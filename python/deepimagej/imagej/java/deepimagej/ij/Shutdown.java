package deepimagej.ij;

import ij.ImagePlus;
import ij.WindowManager;
import java.awt.Window;
import java.awt.event.WindowEvent;
import java.util.ArrayList;
import java.util.List;

/**
 * Lets the Java VM (and so the Python process) exit: ImageJ windows and tool dialogs (B&C...)
 * keep non-daemon threads alive. Everything is closed as if by its close box, without
 * "save changes?" questions.
 */
public final class Shutdown {
    private Shutdown() {}

    /**
     * Make ImageJ's shared thread pool ({@code ij.util.ThreadUtil}, used by filters such as
     * Find Maxima) create daemon threads: its idle workers otherwise keep the VM alive forever.
     */
    public static void prepare() {
        final java.util.concurrent.ThreadFactory base = java.util.concurrent.Executors.defaultThreadFactory();
        ij.util.ThreadUtil.threadPoolExecutor.setThreadFactory(r -> {
            Thread t = base.newThread(r);
            t.setDaemon(true);
            t.setName("ImageJ-pool-" + t.getName());
            return t;
        });
    }

    /** Close everything; returns the names of non-daemon threads still alive. */
    public static String[] closeAll() {
        Confinement.refuseConfinedCaller("ImageJ (closing it)");
        int[] ids = WindowManager.getIDList();
        if (ids != null) {
            for (int id : ids) {
                ImagePlus imp = WindowManager.getImage(id);
                if (imp != null) {
                    imp.changes = false;
                }
            }
        }
        DialogGuard.install();
        DialogGuard.arm(null); // a "save changes?" question would wait forever: answer it with Cancel
        for (Window w : Window.getWindows()) {
            try {
                // tool windows (B&C, ROI Manager...) stop their threads when closed by their close box;
                // others (Log, Results, ImageJ itself) are only disposed: no questions, no quit thread
                if (w instanceof ij.plugin.frame.PlugInDialog || w instanceof ij.plugin.frame.PlugInFrame) {
                    w.dispatchEvent(new WindowEvent(w, WindowEvent.WINDOW_CLOSING));
                }
            } catch (RuntimeException e) {
                // closing must go on
            }
            w.dispose();
        }
        DialogGuard.disarm();
        ij.util.ThreadUtil.threadPoolExecutor.shutdownNow();
        List<String> alive = new ArrayList<>();
        Thread current = Thread.currentThread();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t == current || t.isDaemon() || !t.isAlive()) {
                continue;
            }
            String name = t.getName();
            if (name.equals("main") || name.equals("DestroyJavaVM") || name.startsWith("AWT-")) {
                continue;
            }
            alive.add(name);
        }
        return alive.toArray(new String[0]);
    }
}
