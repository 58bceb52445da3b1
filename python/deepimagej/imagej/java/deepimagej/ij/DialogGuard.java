package deepimagej.ij;

import ij.gui.WaitForUserDialog;
import ij.macro.Interpreter;
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
import java.awt.event.WindowEvent;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;

/**
 * Watches for dialogs while a macro runs without a user (under Xvfb nobody can click).
 * Every dialog that opens while armed is recorded (title and text), the macro is aborted
 * (except for ImageJ's own "Macro Error" dialog, which ends the macro by itself) and the
 * dialog is closed as if the user had pressed Cancel, so that nothing ever waits forever.
 */
public final class DialogGuard implements AWTEventListener {
    private static final DialogGuard INSTANCE = new DialogGuard();
    private static final List<String[]> caught = new ArrayList<>();
    private static volatile boolean installed;
    private static volatile boolean armed;
    private static volatile Interpreter interpreter;

    private DialogGuard() {}

    public static synchronized void install() {
        if (!installed) {
            Toolkit.getDefaultToolkit().addAWTEventListener(INSTANCE, AWTEvent.WINDOW_EVENT_MASK);
            installed = true;
        }
    }

    /** Start watching for the macro run by {@code interp}. */
    public static void arm(Interpreter interp) {
        synchronized (caught) {
            caught.clear();
        }
        interpreter = interp;
        armed = true;
    }

    /** Stop watching; returns the dialogs caught as {title, text, class} pairs. */
    public static String[][] disarm() {
        armed = false;
        interpreter = null;
        synchronized (caught) {
            return caught.toArray(new String[0][]);
        }
    }

    /** The dialogs caught so far as {title, text, class} pairs; forgets them. */
    public static String[][] drain() {
        synchronized (caught) {
            String[][] out = caught.toArray(new String[0][]);
            caught.clear();
            return out;
        }
    }

    /** Close every dialog now showing (used after a timeout); returns them as {title, text, class}. */
    public static String[][] closeAll() {
        List<String[]> closed = new ArrayList<>();
        for (Window w : Window.getWindows()) {
            if (w instanceof Dialog && w.isShowing()) {
                closed.add(new String[] {((Dialog) w).getTitle(), text(w), w.getClass().getName()});
                close((Dialog) w);
            }
        }
        return closed.toArray(new String[0][]);
    }

    @Override
    public void eventDispatched(AWTEvent event) {
        if (!armed || event.getID() != WindowEvent.WINDOW_OPENED) {
            return;
        }
        Window w = ((WindowEvent) event).getWindow();
        if (!(w instanceof Dialog)) {
            return;
        }
        Dialog d = (Dialog) w;
        if (!d.isModal() && !(d instanceof WaitForUserDialog)) {
            return; // a tool window (B&C, Channels...): it does not wait for anyone
        }
        synchronized (caught) {
            caught.add(new String[] {d.getTitle(), text(d), d.getClass().getName()});
        }
        // a message (showMessage, exit("..."), IJ.error) waits for OK only: close it, let the macro decide
        // waitForUser cancels its macro itself once its dialog is closed (see close()); aborting it
        // as well would race with that (ImageJ's abort wakes the dialog before stopping the macro)
        boolean message = d.getClass().getName().equals("ij.gui.MessageDialog");
        Interpreter interp = interpreter;
        if (interp != null && !message && !(d instanceof WaitForUserDialog)
                && !"Macro Error".equals(d.getTitle()) && !"No Image".equals(d.getTitle())) {
            Interpreter.abort(interp);
        }
        close(d);
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
    }

    /**
     * Close a waitForUser dialog as its Esc key does, so that its macro stops with "Macro
     * canceled" instead of going on as after OK. Its macro thread waits on the dialog's monitor
     * in {@code show()} and only a notify wakes it (closing the window does not); a notify sent
     * before the thread has reached its wait(), right after the window opened, is lost. So the
     * dialog is notified again every 50 ms for 10 s, and the thread never waits forever.
     */
    private static void cancel(final WaitForUserDialog d) {
        try {
            Field esc = WaitForUserDialog.class.getDeclaredField("escPressed");
            esc.setAccessible(true);
            esc.setBoolean(d, true); // before any notify: the woken macro must see it
        } catch (ReflectiveOperationException | RuntimeException e) {
            Interpreter interp = interpreter; // an ImageJ without the field: abort the macro instead
            if (interp != null) {
                Interpreter.abort(interp);
            }
        }
        EventQueue.invokeLater(d::dispose);
        Thread nudger = new Thread(() -> {
            for (int i = 0; i < 200; i++) {
                synchronized (d) {
                    d.notifyAll();
                }
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "deepimagej-cancel-wait-for-user");
        nudger.setDaemon(true);
        nudger.start();
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
