package deepimagej.plugin;

/** A DeepImageJ command failed: the one-line message to show, and whether the user canceled it. */
public class WorkerException extends Exception {
    private static final long serialVersionUID = 1L;
    private final boolean canceled;

    public WorkerException(String message) {
        this(message, false);
    }

    public WorkerException(String message, boolean canceled) {
        super(message);
        this.canceled = canceled;
    }

    public boolean isCanceled() {
        return canceled;
    }
}
