package deepimagej.ij;

import ij.IJ;
import ij.Macro;
import ij.gui.WaitForUserDialog;
import ij.macro.Debugger;
import ij.macro.Interpreter;
import ij.text.TextWindow;
import java.awt.AWTEvent;
import java.awt.Component;
import java.awt.Container;
import java.awt.Dialog;
import java.awt.EventQueue;
import java.awt.Label;
import java.awt.TextComponent;
import java.awt.Toolkit;
import java.awt.Window;
import java.awt.event.AWTEventListener;
import java.awt.event.HierarchyEvent;
import java.awt.event.WindowEvent;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.WeakHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Watches for dialogs while a macro runs without a user (under Xvfb nobody can click).
 * Every dialog that opens while armed is recorded (title, text, class and the macro line that
 * opened it), the macro is aborted (except for ImageJ's own "Macro Error" dialog, which ends
 * the macro by itself) and the dialog is closed as if the user had pressed Cancel, so that
 * nothing ever waits forever. ImageJ's "Exception" window (a Java exception inside a command
 * or a {@code call()}, which ImageJ shows and then lets the macro go on) is recorded and
 * closed, and its macro stopped.
 *
 * <p>A modal dialog is shown in two steps: {@code Dialog.show()} posts WINDOW_OPENED, then
 * starts its modal loop. A dialog closed between the two (an event thread quicker than the
 * macro thread, as under CPU load) leaves the macro thread in a modal loop nobody ends: the
 * 300 s stalls of some test runs. So a closed modal dialog is hidden again every 50 ms for
 * {@link #KEEP_CLOSED_MS}: a hide ends the modal loop once it has started.
 */
public final class DialogGuard implements AWTEventListener {
    /** How long a closed dialog is kept closed (and a cancelled waitForUser notified). */
    static final long KEEP_CLOSED_MS = 20_000;
    private static final long NUDGE_MS = 50;
    private static final DialogGuard INSTANCE = new DialogGuard();
    private static final List<String[]> caught = new ArrayList<>();
    /** {macro line, thread id} when each window became visible (recorded on the thread that showed it). */
    private static final Map<Window, long[]> shownBy = Collections.synchronizedMap(new WeakHashMap<>());
    private static final List<Nudge> nudges = new ArrayList<>();
    private static final Set<Window> exceptionsSeen = Collections.synchronizedSet(
            Collections.newSetFromMap(new WeakHashMap<>()));
    private static final Field LAST_ERROR = lastErrorField();
    private static volatile boolean installed;
    private static volatile boolean armed;
    private static volatile Interpreter interpreter;
    private static ScheduledExecutorService keeper;

    /** An action repeated every {@link #NUDGE_MS} until a deadline. */
    private static final class Nudge {
        final Runnable action;
        final long until;

        Nudge(Runnable action, long until) {
            this.action = action;
            this.until = until;
        }
    }

    private DialogGuard() {}

    public static synchronized void install() {
        if (!installed) {
            Toolkit.getDefaultToolkit().addAWTEventListener(INSTANCE,
                    AWTEvent.WINDOW_EVENT_MASK | AWTEvent.HIERARCHY_EVENT_MASK);
            keeper = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "deepimagej-dialog-keeper");
                t.setDaemon(true);
                return t;
            });
            keeper.scheduleWithFixedDelay(DialogGuard::runNudges, NUDGE_MS, NUDGE_MS, TimeUnit.MILLISECONDS);
            installed = true;
        }
    }

    /** Start watching for the macro run by {@code interp}. */
    public static void arm(Interpreter interp) {
        Confinement.refuseConfinedCaller("the dialog guard (arm)");
        synchronized (caught) {
            caught.clear();
        }
        interpreter = interp;
        armed = true;
    }

    /** Stop watching; returns the dialogs caught as {title, text, class, line, thread id} rows. */
    public static String[][] disarm() {
        Confinement.refuseConfinedCaller("the dialog guard (disarm)");
        collectExceptionWindows(); // one whose WINDOW_OPENED the event thread has not dispatched yet
        armed = false;
        interpreter = null;
        synchronized (caught) {
            return caught.toArray(new String[0][]);
        }
    }

    /** The dialogs caught so far as {title, text, class, line, thread id} rows; forgets them. */
    public static String[][] drain() {
        Confinement.refuseConfinedCaller("the dialog guard (drain)");
        collectExceptionWindows();
        synchronized (caught) {
            String[][] out = caught.toArray(new String[0][]);
            caught.clear();
            return out;
        }
    }

    /** Close every dialog now showing (used after a timeout); returns them as {title, text, class, line, thread id}. */
    public static String[][] closeAll() {
        Confinement.refuseConfinedCaller("the dialog guard (closeAll)");
        List<String[]> closed = new ArrayList<>();
        for (Window w : Window.getWindows()) {
            if (w instanceof Dialog && w.isShowing()) {
                closed.add(row(w, ((Dialog) w).getTitle()));
                close((Dialog) w);
            }
        }
        return closed.toArray(new String[0][]);
    }

    /** The macro line of the current (innermost) macro, else of the armed one (exit() ends its macro first), or -1. */
    public static int currentLine() {
        Interpreter interp = Interpreter.getInstance();
        if (interp == null) {
            interp = interpreter;
        }
        if (interp == null) {
            return -1;
        }
        try {
            return interp.getLineNumber();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    @Override
    public void eventDispatched(AWTEvent event) {
        if (event instanceof HierarchyEvent) {
            // dispatched synchronously on the thread that shows the window (the macro's), tree lock held:
            // note the line only, nothing that takes another lock
            HierarchyEvent he = (HierarchyEvent) event;
            if (armed && (he.getChangeFlags() & HierarchyEvent.SHOWING_CHANGED) != 0
                    && he.getComponent() == he.getChanged() && he.getComponent() instanceof Window
                    && he.getComponent().isShowing()) {
                // a window shown from the event thread (a Swing file chooser...) may belong to any macro: id -1
                long thread = EventQueue.isDispatchThread() ? -1 : Thread.currentThread().getId();
                Window w = (Window) he.getComponent();
                shownBy.put(w, new long[] {currentLine(), thread});
                if (isExceptionWindow(w) || isErrorMessage(w)) {
                    stop(Interpreter.getInstance()); // an error: the macro must not go on after it (ImageJ's would)
                }
            }
            return;
        }
        if (!armed || event.getID() != WindowEvent.WINDOW_OPENED) {
            return;
        }
        Window w = ((WindowEvent) event).getWindow();
        if (isExceptionWindow(w)) {
            collectExceptionWindows();
            return;
        }
        if (!(w instanceof Dialog)) {
            return;
        }
        Dialog d = (Dialog) w;
        if (!d.isModal() && !(d instanceof WaitForUserDialog)) {
            return; // a tool window (B&C, Channels...): it does not wait for anyone
        }
        String[] r = row(d, d.getTitle());
        synchronized (caught) {
            caught.add(r);
        }
        // a message (showMessage, exit("..."), IJ.error) waits for OK only: close it, let the macro decide
        // waitForUser cancels its macro itself once its dialog is closed (see close()); aborting it
        // as well would race with that (ImageJ's abort wakes the dialog before stopping the macro)
        boolean message = d.getClass().getName().equals("ij.gui.MessageDialog");
        Interpreter interp = interpreter;
        if (interp != null && !message && !(d instanceof WaitForUserDialog)
                && !"Macro Error".equals(d.getTitle()) && !"No Image".equals(d.getTitle())) {
            stop(Interpreter.getInstance()); // a nested macro's (a bundle's), if one runs
            stop(interp);
        }
        close(d);
    }

    private static boolean isExceptionWindow(Window w) {
        return w instanceof TextWindow && "Exception".equals(((TextWindow) w).getTitle());
    }

    /** Whether a message dialog shows what ImageJ's IJ.error() was just given (an error, not showMessage). */
    private static boolean isErrorMessage(Window w) {
        if (LAST_ERROR == null || !w.getClass().getName().equals("ij.gui.MessageDialog")) {
            return false;
        }
        try {
            Object last = LAST_ERROR.get(null);
            return last != null && oneLine(text(w)).equals(oneLine(last.toString()));
        } catch (ReflectiveOperationException | RuntimeException e) {
            return false;
        }
    }

    private static String oneLine(String text) {
        return text.trim().replaceAll("\\s+", " ");
    }

    /**
     * Record and close ImageJ's "Exception" windows opened while armed (ImageJ shows a Java
     * exception of a command or a {@code call()} there, then lets the macro go on).
     */
    private static void collectExceptionWindows() {
        for (Window w : Window.getWindows()) {
            if (isExceptionWindow(w) && w.isDisplayable() && shownBy.containsKey(w) && exceptionsSeen.add(w)) {
                String[] r = row(w, "Exception");
                synchronized (caught) {
                    caught.add(r);
                }
                EventQueue.invokeLater(w::dispose);
            }
        }
    }

    private static String[] row(Window w, String title) {
        long[] by = shownBy.remove(w);
        String body = w instanceof TextWindow ? ((TextWindow) w).getTextPanel().getText() : text(w);
        return new String[] {title, body.trim(), w.getClass().getName(), Long.toString(by == null ? -1 : by[0]),
            Long.toString(by == null ? -1 : by[1])};
    }

    private static final Method SHUTDOWN = interpreterMethod("shutdown");
    private static final Method FINISH_UP = interpreterMethod("finishUp");

    /**
     * Ends the macro it is attached to at its next statement, as ImageJ's exit() does: the
     * interpreter's finishUp() (batch mode off, its images released), then "Macro canceled".
     */
    private static final Debugger STOPPER = (interp, mode) -> {
        interp.setDebugger(null);
        if (FINISH_UP != null) {
            try {
                FINISH_UP.invoke(interp);
            } catch (ReflectiveOperationException | RuntimeException e) {
                // the cancel below still ends the macro
            }
        }
        throw new RuntimeException(Macro.MACRO_CANCELED);
    };

    /**
     * Stop a macro at its next statement, from any thread, without waiting: it is given a
     * debugger that cancels it (ImageJ calls a macro's debugger before each statement, in
     * every kind of loop). ImageJ's own {@code abortMacro()} instead sets a flag that
     * {@code for} loops never read, then waits up to 2 s for the macro and kills every thread
     * named {@code *Macro$} still running, the caller of a nested macro included.
     */
    public static void stop(Interpreter interp) {
        if (interp != null) {
            interp.setDebugger(STOPPER);
            interp.setDebugMode(Debugger.RUN_TO_COMPLETION);
        }
    }

    /**
     * Second step for a macro still running a moment after {@link #stop}: one spinning in a
     * loop with an empty body ({@code while (true);}), where no statement starts. Sets the
     * interpreter's "done" flag (what {@code abortMacro()} sets), which ends while loops.
     */
    public static void shutdown(Interpreter interp) {
        if (interp != null && SHUTDOWN != null) {
            try {
                SHUTDOWN.invoke(interp);
            } catch (ReflectiveOperationException | RuntimeException e) {
                // nothing more to do from here; see kill()
            }
        }
    }

    /**
     * Last resort for a thread still inside the macro interpreter after {@link #stop} and
     * {@link #shutdown} ({@code for (;;);}): stop the thread, as ImageJ's abort does. Only
     * while the thread is running a macro; returns false where this Java cannot (20 and later).
     */
    @SuppressWarnings({"deprecation", "removal"})
    public static boolean kill(Thread thread) {
        Confinement.refuseConfinedCaller("the dialog guard (kill)");
        for (StackTraceElement frame : thread.getStackTrace()) {
            if (frame.getClassName().startsWith("ij.macro.")) {
                try {
                    thread.stop();
                    return true;
                } catch (UnsupportedOperationException | SecurityException e) {
                    return false;
                }
            }
        }
        return false;
    }

    private static Field lastErrorField() {
        try {
            Field f = IJ.class.getDeclaredField("lastErrorMessage");
            f.setAccessible(true);
            return f;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return null;
        }
    }

    private static Method interpreterMethod(String name) {
        try {
            Method m = Interpreter.class.getDeclaredMethod(name);
            m.setAccessible(true);
            return m;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return null;
        }
    }

    private static void keep(Runnable action) {
        synchronized (nudges) {
            nudges.add(new Nudge(action, System.currentTimeMillis() + KEEP_CLOSED_MS));
        }
    }

    private static void runNudges() {
        List<Nudge> due;
        long now = System.currentTimeMillis();
        synchronized (nudges) {
            nudges.removeIf(n -> n.until < now);
            due = new ArrayList<>(nudges);
        }
        for (Nudge n : due) {
            try {
                n.action.run();
            } catch (RuntimeException e) {
                // a nudge must never stop the keeper
            }
        }
    }

    private static void close(final Dialog d) {
        if (d instanceof WaitForUserDialog) {
            cancel((WaitForUserDialog) d);
            return;
        }
        EventQueue.invokeLater(() -> {
            d.dispatchEvent(new WindowEvent(d, WindowEvent.WINDOW_CLOSING));
            if (d.isShowing()) {
                d.dispose();
            }
        });
        if (d.isModal()) { // see the class comment: end a modal loop entered after the close
            // hide(), not dispose(): it ends the loop just as well, and ImageJ's GenericDialog.dispose()
            // sleeps 25 ms on the event thread each time
            keep(() -> EventQueue.invokeLater(() -> d.setVisible(false)));
        }
    }

    /**
     * Close a waitForUser dialog as its Esc key does, so that its macro stops with "Macro
     * canceled" instead of going on as after OK. Its macro thread waits on the dialog's monitor
     * in {@code show()} and only a notify wakes it (closing the window does not); a notify sent
     * before the thread has reached its wait(), right after the window opened, is lost. So the
     * dialog is notified again every 50 ms, and the thread never waits forever.
     */
    private static void cancel(final WaitForUserDialog d) {
        try {
            Field esc = WaitForUserDialog.class.getDeclaredField("escPressed");
            esc.setAccessible(true);
            esc.setBoolean(d, true); // before any notify: the woken macro must see it
        } catch (ReflectiveOperationException | RuntimeException e) {
            stop(interpreter); // an ImageJ without the field: abort the macro instead
        }
        if (EventQueue.isDispatchThread()) {
            d.dispose(); // now: the next macro's waitForUser must not find it showing ("Duplicate call")
        } else {
            EventQueue.invokeLater(d::dispose);
        }
        keep(() -> {
            synchronized (d) {
                d.notifyAll();
            }
        });
    }

    /** The visible text of a dialog: labels, text fields, ImageJ multi-line labels. */
    public static String text(Component c) {
        StringBuilder sb = new StringBuilder();
        collect(c, sb);
        return sb.toString().trim();
    }

    private static void collect(Component c, StringBuilder sb) {
        String s = null;
        if (c instanceof Label) {
            s = ((Label) c).getText();
        } else if (c instanceof TextComponent) {
            s = ((TextComponent) c).getText();
        } else if (c.getClass().getName().equals("ij.gui.MultiLineLabel")) {
            try {
                Field f = c.getClass().getDeclaredField("lines");
                f.setAccessible(true);
                String[] lines = (String[]) f.get(c);
                if (lines != null) {
                    s = String.join("\n", lines);
                }
            } catch (ReflectiveOperationException | RuntimeException e) {
                s = null;
            }
        }
        if (s != null && !s.trim().isEmpty()) {
            sb.append(s.trim()).append('\n');
        }
        if (c instanceof Container) {
            for (Component child : ((Container) c).getComponents()) {
                collect(child, sb);
            }
        }
    }
}
