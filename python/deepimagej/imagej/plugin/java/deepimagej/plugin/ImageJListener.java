package deepimagej.plugin;

import ij.IJ;

/**
 * A job seen in ImageJ: log lines in the Log window, progress in the status and progress
 * bars, and Esc to cancel (ImageJ's own "Esc stops the running command").
 */
public class ImageJListener implements Listener {
    private final boolean quiet;

    public ImageJListener(boolean quiet) {
        this.quiet = quiet;
    }

    @Override
    public void log(String text) {
        if (!quiet) {
            IJ.log(text);
        }
    }

    @Override
    public void progress(int done, int total, String text) {
        IJ.showProgress(done, Math.max(total, 1));
        if (text != null && !text.isEmpty()) {
            IJ.showStatus(text);
        }
    }

    @Override
    public boolean cancelRequested() {
        return IJ.escapePressed();
    }

    /** Clears the progress bar and the status line. */
    public void finish() {
        IJ.showProgress(1.0);
        IJ.showStatus("");
    }
}
