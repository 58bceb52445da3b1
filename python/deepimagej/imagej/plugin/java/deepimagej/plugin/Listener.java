package deepimagej.plugin;

/** Where a job's log lines and progress go while the worker runs it, and how the user cancels it. */
public interface Listener {
    void log(String text);

    void progress(int done, int total, String text);

    /** True once the user asked to stop the job (Esc). */
    boolean cancelRequested();
}
