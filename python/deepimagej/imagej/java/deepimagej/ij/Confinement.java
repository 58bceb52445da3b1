package deepimagej.ij;

import ij.CommandListener;
import ij.Executer;
import ij.macro.Interpreter;
import java.awt.AWTPermission;
import java.io.FilePermission;
import java.net.SocketPermission;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.Permission;
import java.security.SecureRandom;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.List;
import java.util.PropertyPermission;
import java.util.Set;

/**
 * Keeps an untrusted macro (a bundle's pre/post-processing) to its folders while it runs.
 *
 * <p>A thread is confined between {@link #enter} and {@link #leave}; threads it starts meanwhile
 * stay confined for life (except AWT's event thread). In a confined thread this security
 * manager refuses: writing or deleting outside the read-write folders, reading outside those,
 * the read-only folders and the system's (the Java runtime, ImageJ's own files), running
 * programs, network access, the clipboard, setting system properties, exiting the VM and
 * replacing the security manager; and the ImageJ commands named at {@link #install} (Quit,
 * URL...). Each refusal is recorded with the macro line (returned by {@link #leave}), fails the
 * operation with a {@link SecurityException} and stops the macro. Unconfined threads are not
 * checked at all.
 *
 * <p>Java 18 to 23 allow a security manager only when the VM starts with
 * {@code -Djava.security.manager=allow}; Java 24 and later never do: {@link #install} then
 * returns false and the caller refuses what only this guard could check.
 */
public final class Confinement extends SecurityManager implements CommandListener {

    /** What one confined macro may touch. */
    private static final class Policy {
        final String name;
        final Path[] readWrite;
        final Path[] readOnly;
        final long token;
        final List<String[]> refusals = new ArrayList<>();

        Policy(String name, Path[] readWrite, Path[] readOnly, long token) {
            this.name = name;
            this.readWrite = readWrite;
            this.readOnly = readOnly;
            this.token = token;
        }
    }

    private static final InheritableThreadLocal<Policy> CURRENT = new InheritableThreadLocal<>();
    private static final ThreadLocal<Deque<Policy>> SAVED = ThreadLocal.withInitial(ArrayDeque::new);
    private static final ThreadLocal<Boolean> CHECKING = ThreadLocal.withInitial(() -> Boolean.FALSE);
    private static final Set<String> refusedCommands = new HashSet<>();
    private static final SecureRandom random = new SecureRandom();
    private static volatile Path[] systemReadable = new Path[0];
    /** The same folders as named (not resolved): the JDK's own links (conf/ to /etc/java-17...) stay readable. */
    private static volatile Path[] systemReadableNamed = new Path[0];
    private static volatile Confinement manager;
    private static volatile String unavailable;

    private Confinement() {}

    /**
     * Install the guard once. {@code commands}: ImageJ commands a confined macro may not run;
     * {@code readable}: folders any confined macro may read (the Java runtime, ImageJ's folders,
     * system fonts...). Returns false, with {@link #unavailableReason}, when this Java allows
     * no security manager.
     */
    public static synchronized boolean install(String[] commands, String[] readable) {
        if (CURRENT.get() != null) {
            throw new SecurityException("a confined macro cannot change its confinement");
        }
        synchronized (refusedCommands) {
            refusedCommands.clear();
            for (String c : commands) {
                refusedCommands.add(c);
            }
        }
        systemReadable = realPaths(readable);
        List<Path> named = new ArrayList<>();
        for (String r : readable) {
            try {
                named.add(Paths.get(r).toAbsolutePath().normalize());
            } catch (InvalidPathException e) {
                // skipped: not a path on this system
            }
        }
        systemReadableNamed = named.toArray(new Path[0]);
        if (manager != null) {
            return true;
        }
        if (unavailable != null) {
            return false;
        }
        Confinement sm = new Confinement();
        try {
            System.setSecurityManager(sm);
        } catch (UnsupportedOperationException | SecurityException e) {
            unavailable = "this Java (" + System.getProperty("java.version") + ") allows no security manager";
            return false;
        }
        Executer.addCommandListener(sm);
        manager = sm;
        return true;
    }

    /** Why {@link #install} returned false, or null. */
    public static String unavailableReason() {
        return unavailable;
    }

    /** Whether the guard is installed. */
    public static boolean installed() {
        return manager != null;
    }

    /**
     * Confine the current thread until {@link #leave} is called with the returned token.
     * Nested calls stack: the inner policy applies until its leave.
     */
    public static long enter(String name, String[] readWrite, String[] readOnly) {
        if (manager == null) {
            throw new IllegalStateException("Confinement.install() first");
        }
        long token = random.nextLong();
        Policy current = CURRENT.get();
        Path[] rw = realPaths(readWrite);
        Path[] ro = realPaths(readOnly);
        SAVED.get().push(current == null ? new Policy(null, null, null, 0) : current);
        CURRENT.set(new Policy(name, rw, ro, token));
        return token;
    }

    /**
     * End the confinement started by the {@link #enter} that returned {@code token}; returns what
     * it refused (also in threads the macro started) as {what, target, line, macro} rows.
     */
    public static String[][] leave(long token) {
        Policy current = CURRENT.get();
        if (current == null || current.token != token) {
            throw new SecurityException("not the confinement of this thread");
        }
        Policy saved = SAVED.get().isEmpty() ? null : SAVED.get().pop();
        CURRENT.set(saved == null || saved.name == null ? null : saved);
        synchronized (current.refusals) {
            return current.refusals.toArray(new String[0][]);
        }
    }

    /** Whether the current thread is confined. */
    public static boolean isConfined() {
        return CURRENT.get() != null && !isEventThread();
    }

    /**
     * For the shim's own controls (the dialog guard, closing ImageJ): a confined macro reaching
     * them through the macro function {@code call()} may not turn the guard off or close ImageJ.
     */
    /** Whether the current thread is inside a macro's {@code call()} of a Java method. */
    private static boolean fromMacroCall() {
        return StackWalker.getInstance().walk(frames -> frames.anyMatch(
                f -> f.getClassName().equals("ij.macro.Functions") && f.getMethodName().equals("call")));
    }

    static void refuseConfinedCaller(String what) {
        Policy p = CURRENT.get();
        if (p != null && !isEventThread() && StackWalker.getInstance().walk(frames -> frames.anyMatch(
                f -> f.getClassName().equals("ij.macro.Functions") && f.getMethodName().equals("call")))) {
            refuse(p, "control", what, true);
        }
    }

    /**
     * Refuse, in a confined thread, a DeepImageJ command whose work (Python) is beyond this
     * guard's checks (Build, U-Net Train...), however it was reached ({@code run()}, or
     * {@code call("ij.IJ.runPlugIn", ...)}, which no command listener sees).
     */
    public static void checkCommand(String label) {
        Policy p = CURRENT.get();
        if (p != null && !isEventThread()) {
            refuse(p, "command", label, true);
        }
    }

    /** Check a path a confined thread is about to use from outside Java (the Python side of a command). */
    public static void checkPath(String path, boolean write) {
        Policy p = CURRENT.get();
        if (p != null && !isEventThread()) {
            checkFile(p, path, write ? "write" : "read");
        }
    }

    // ------------------------------------------------------------------ the checks

    @Override
    public void checkPermission(Permission perm) {
        Policy p = CURRENT.get();
        if (p == null || CHECKING.get() || isEventThread()) {
            return;
        }
        CHECKING.set(Boolean.TRUE);
        try {
            check(p, perm);
        } finally {
            CHECKING.set(Boolean.FALSE);
        }
    }

    @Override
    public void checkPermission(Permission perm, Object context) {
        checkPermission(perm);
    }

    @Override
    public String commandExecuting(String command) {
        Policy p = CURRENT.get();
        if (p == null || isEventThread() || command == null) {
            return command;
        }
        boolean refused;
        synchronized (refusedCommands) {
            refused = refusedCommands.contains(command.trim());
        }
        if (refused) {
            refuse(p, "command", command.trim(), false);
            return null; // ImageJ's Executer skips a command its listener answers null for
        }
        return command;
    }

    private static void check(Policy p, Permission perm) {
        if (perm instanceof FilePermission) {
            String actions = perm.getActions();
            if (actions.contains("execute")) { // "<<ALL FILES>>": a program named without its folder
                refuse(p, "execute", perm.getName().equals("<<ALL FILES>>") ? "a program" : perm.getName(), true);
            }
            checkFile(p, perm.getName(),
                    actions.contains("delete") ? "delete" : actions.contains("write") ? "write" : "read");
        } else if (perm instanceof SocketPermission) {
            refuse(p, "network", perm.getName(), true);
        } else if (perm instanceof AWTPermission && perm.getName().equals("accessClipboard")) {
            refuse(p, "clipboard", "the system clipboard", true);
        } else if (perm instanceof PropertyPermission && perm.getActions().contains("write")
                && !perm.getName().equals("*")) { // "*": System.getProperties(), which Java's own code reads
            refuse(p, "property", perm.getName(), true);
        } else if (perm instanceof RuntimePermission) {
            String name = perm.getName();
            if (name.startsWith("exitVM")) {
                refuse(p, "exit", "the Java VM", true);
            } else if (name.equals("setSecurityManager") || name.equals("createSecurityManager")) {
                refuse(p, "security", "the security manager", true);
            } else if (name.startsWith("loadLibrary.") && fromMacroCall()) {
                // native code a macro asks for (call("java.lang.System.loadLibrary", ...)) is beyond any
                // check; the JDK's own libraries (libawt on a window's first use) load as usual
                refuse(p, "native", name.substring("loadLibrary.".length()), true);
            }
        }
    }

    private static void checkFile(Policy p, String name, String mode) {
        if (name.equals("<<ALL FILES>>")) {
            refuse(p, mode, "every file", true);
        }
        Path path = realPath(name);
        if (path == null) {
            refuse(p, mode, name, true);
        }
        if (under(path, p.readWrite)) {
            return;
        }
        if (mode.equals("read") && (under(path, p.readOnly) || under(path, systemReadable)
                || under(normalized(name), systemReadableNamed))) {
            return;
        }
        refuse(p, mode, path.toString(), true);
    }

    private static void refuse(Policy p, String what, String target, boolean raise) {
        Interpreter interp = Interpreter.getInstance();
        int line = -1;
        if (interp != null) {
            try {
                line = interp.getLineNumber();
            } catch (RuntimeException e) {
                line = -1;
            }
        }
        synchronized (p.refusals) {
            p.refusals.add(new String[] {what, target, Integer.toString(line), p.name});
        }
        DialogGuard.stop(interp);
        if (raise) {
            throw new SecurityException("deepimagej: a confined macro may not " + what + " " + target);
        }
    }

    // ------------------------------------------------------------------ paths

    private static boolean isEventThread() {
        return Thread.currentThread().getClass().getName().equals("java.awt.EventDispatchThread");
    }

    private static boolean under(Path path, Path[] folders) {
        if (folders == null) {
            return false;
        }
        for (Path f : folders) {
            if (path.startsWith(f)) {
                return true;
            }
        }
        return false;
    }

    private static Path normalized(String name) {
        try {
            return Paths.get(name).toAbsolutePath().normalize();
        } catch (InvalidPathException e) {
            return Paths.get("/nonexistent");
        }
    }

    private static Path[] realPaths(String[] names) {
        List<Path> out = new ArrayList<>();
        if (names != null) {
            for (String n : names) {
                Path p = realPath(n);
                if (p != null) {
                    out.add(p);
                }
            }
        }
        return out.toArray(new Path[0]);
    }

    /**
     * The absolute, normalized path with links resolved in the part that exists (so that a link
     * in an allowed folder that leads out of it is seen where it leads). Called with the checks
     * suspended on this thread: the look-ups it does are the guard's own.
     */
    private static Path realPath(String name) {
        boolean was = CHECKING.get();
        CHECKING.set(Boolean.TRUE);
        try {
            Path p = Paths.get(name).toAbsolutePath().normalize();
            Path existing = p;
            Path rest = null;
            while (existing != null && !Files.exists(existing)) {
                Path fileName = existing.getFileName();
                rest = rest == null ? fileName : fileName.resolve(rest);
                existing = existing.getParent();
            }
            if (existing == null) {
                return p;
            }
            Path real = existing.toRealPath();
            return rest == null ? real : real.resolve(rest).normalize();
        } catch (InvalidPathException | java.io.IOException | SecurityException e) {
            return null;
        } finally {
            CHECKING.set(was);
        }
    }
}
