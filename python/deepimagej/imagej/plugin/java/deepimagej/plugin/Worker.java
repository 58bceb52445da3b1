package deepimagej.plugin;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * The Python worker of this ImageJ: a {@code deepimagej worker} process started on the first
 * DeepImageJ command and kept for the next ones (models stay loaded), one per ImageJ.
 *
 * <p>Requests and replies are JSON lines on the worker's stdin and stdout (protocol
 * {@link #PROTOCOL}); images cross through memory-mapped files in a private folder
 * ({@link #sharedDir()}, in /dev/shm when there is one). The worker stops when ImageJ exits
 * (its stdin closes). A worker that dies is noticed on the next message and replaced by a new
 * one on the next command.
 */
public final class Worker {
    /** The configuration file written by {@code deepimagej install-plugin}, next to the jar. */
    public static final String CONFIG_NAME = "DeepImageJ_Python.json";
    public static final int PROTOCOL;
    public static final String VERSION;
    private static final long HELLO_TIMEOUT_MS = 120_000;
    private static final long CANCEL_GRACE_MS = 10_000;
    private static final int TAIL_LINES = 40;

    static {
        Properties p = new Properties();
        try (InputStream in = Worker.class.getResourceAsStream("plugin.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException e) {
            // the defaults below make every worker look foreign: a clear refusal
        }
        PROTOCOL = Integer.parseInt(p.getProperty("protocol", "0"));
        VERSION = p.getProperty("version", "unknown");
    }

    private static Worker current;
    private static boolean hookInstalled;

    private final Process process;
    private final Writer toWorker;
    private final BlockingQueue<Map<String, Object>> messages = new LinkedBlockingQueue<>();
    private final Deque<String> stderrTail = new ArrayDeque<>();
    private final Path sharedDir;
    private final String command;
    private final Object jobLock = new Object();
    private final AtomicLong ids = new AtomicLong();
    private volatile long pid;
    private volatile boolean fresh = true;

    private static final Listener QUIET = new Listener() {
        @Override
        public void log(String text) {}

        @Override
        public void progress(int done, int total, String text) {}

        @Override
        public boolean cancelRequested() {
            return false;
        }
    };

    private Worker(Process process, Path sharedDir, String command) {
        this.process = process;
        this.sharedDir = sharedDir;
        this.command = command;
        this.toWorker = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
        Thread out = new Thread(this::readReplies, "DeepImageJ worker replies");
        out.setDaemon(true);
        out.start();
        Thread err = new Thread(this::readStderr, "DeepImageJ worker stderr");
        err.setDaemon(true);
        err.start();
    }

    /**
     * The worker for a new command: the running one if it still answers, else a new one (a
     * worker that died since the last command, killed or crashed, is replaced here, so that the
     * command itself works).
     */
    public static Worker get() throws WorkerException {
        Worker w = getOrStart();
        if (w.fresh) {
            w.fresh = false;
            return w;
        }
        try {
            w.call("status", Json.of(), QUIET);
            return w;
        } catch (WorkerException e) { // it died since its last command (died() has forgotten it)
            ij.IJ.log("[DeepImageJ] the Python worker had stopped" + w.exitDescription() + "; starting a new one");
            return getOrStart();
        }
    }

    private static synchronized Worker getOrStart() throws WorkerException {
        if (current != null && !current.process.isAlive()) {
            ij.IJ.log("[DeepImageJ] the Python worker had stopped" + current.exitDescription() + "; starting a new one");
            current.cleanUp();
            current = null;
        }
        if (current == null) {
            current = start();
        }
        return current;
    }

    /** The running worker, or null (nothing is started). */
    public static synchronized Worker running() {
        return current != null && current.process.isAlive() ? current : null;
    }

    /** The worker's process id. */
    public long pid() {
        return pid;
    }

    /** The folder of the memory-mapped image files shared with this worker. */
    public Path sharedDir() {
        return sharedDir;
    }

    // ------------------------------------------------------------------ start and stop
    private static Worker start() throws WorkerException {
        Path configFile = configFile();
        Map<String, Object> config;
        try {
            config = Json.object(Json.parse(new String(Files.readAllBytes(configFile), StandardCharsets.UTF_8)));
        } catch (IOException | IllegalArgumentException e) {
            throw new WorkerException("no DeepImageJ worker configuration at " + configFile + " (" + e.getMessage()
                    + "); run 'deepimagej install-plugin " + imagejFolder(configFile)
                    + "' in the Python environment that has deepimagej, then restart ImageJ");
        }
        List<String> cmd = new ArrayList<>();
        for (Object part : Json.list(config.get("command"))) {
            cmd.add(part.toString());
        }
        if (cmd.isEmpty()) {
            throw new WorkerException(configFile + " names no worker command; run 'deepimagej install-plugin "
                    + imagejFolder(configFile) + "' again");
        }
        Path shared = createSharedDir();
        cmd.add("--shared-dir");
        cmd.add(shared.toString());
        ProcessBuilder pb = new ProcessBuilder(cmd);
        for (Map.Entry<String, Object> e : Json.object(config.get("env")).entrySet()) {
            pb.environment().put(e.getKey(), String.valueOf(e.getValue()));
        }
        Process process;
        try {
            process = pb.start();
        } catch (IOException e) {
            deleteTree(shared);
            throw new WorkerException("cannot start the DeepImageJ Python worker (" + cmd.get(0) + "): "
                    + e.getMessage() + "; run 'deepimagej install-plugin " + imagejFolder(configFile)
                    + "' in the Python environment that has deepimagej");
        }
        installShutdownHook();
        Worker w = new Worker(process, shared, String.join(" ", cmd));
        w.hello(configFile);
        return w;
    }

    private void hello(Path configFile) throws WorkerException {
        Map<String, Object> hello;
        try {
            hello = messages.poll(HELLO_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            hello = null;
        }
        if (hello == null || !"hello".equals(hello.get("type"))) {
            stop();
            throw new WorkerException("the DeepImageJ Python worker did not start (" + command + ")"
                    + lastError() + "; run 'deepimagej install-plugin " + imagejFolder(configFile)
                    + "' in the Python environment that has deepimagej");
        }
        pid = (long) Json.number(hello, "pid", -1);
        int protocol = (int) Json.number(hello, "protocol", -1);
        String version = Json.string(hello, "version", "?");
        if (protocol != PROTOCOL || !VERSION.equals(version)) {
            stop();
            throw new WorkerException("the Python worker is deepimagej " + version + " (protocol " + protocol
                    + ") but this plugin was installed from deepimagej " + VERSION + " (protocol " + PROTOCOL
                    + "); run 'deepimagej install-plugin " + imagejFolder(configFile)
                    + "' in the Python environment you use, then restart ImageJ");
        }
    }

    private static synchronized void installShutdownHook() {
        if (hookInstalled) {
            return;
        }
        hookInstalled = true;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            Worker w;
            synchronized (Worker.class) {
                w = current;
                current = null;
            }
            if (w != null) {
                w.stop();
            }
        }, "DeepImageJ worker shutdown"));
    }

    /** Stops the worker (its stdin closes: it exits; killed if it does not) and removes its files. */
    public void stop() {
        try {
            toWorker.close();
        } catch (IOException e) {
            // already gone
        }
        try {
            if (!process.waitFor(3, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(3, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        cleanUp();
    }

    private void cleanUp() {
        deleteTree(sharedDir);
    }

    /** Stops the running worker, if any (the next command starts a new one). */
    public static synchronized void stopRunning() {
        if (current != null) {
            current.stop();
            current = null;
        }
    }

    // ------------------------------------------------------------------ requests
    /**
     * Sends request {@code op} and waits for its result, passing log lines and progress to
     * {@code listener}; Esc (the listener's cancel) asks the worker to stop the job.
     *
     * @throws WorkerException the worker's one-line error, a cancel, or the worker's death
     */
    public Map<String, Object> call(String op, Map<String, Object> args, Listener listener) throws WorkerException {
        synchronized (jobLock) {
            long id = ids.incrementAndGet();
            send(Json.of("id", id, "op", op, "args", args));
            boolean answered = false;
            try {
                Map<String, Object> result = await(id, op, listener);
                answered = true;
                return result;
            } catch (WorkerException e) {
                answered = true;
                throw e;
            } finally {
                if (!answered) { // this thread was stopped (ImageJ aborts a macro that does not end in 2 s)
                    try {
                        send(Json.of("op", "cancel", "id", id));
                    } catch (WorkerException e) {
                        // the worker is gone anyway
                    }
                }
            }
        }
    }

    private Map<String, Object> await(long id, String op, Listener listener) throws WorkerException {
        long cancelAt = 0;
        while (true) {
            Map<String, Object> m;
            try {
                m = messages.poll(100, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                m = null;
                if (cancelAt == 0) {
                    cancelAt = System.currentTimeMillis();
                    send(Json.of("op", "cancel", "id", id));
                }
            }
            // Esc is looked at on every message too: a job that reports progress more often than
            // the poll's 100 ms would otherwise never be asked
            if (cancelAt == 0 && listener.cancelRequested()) {
                cancelAt = System.currentTimeMillis();
                listener.progress(0, 1, "DeepImageJ: canceling...");
                send(Json.of("op", "cancel", "id", id));
            }
            if (m == null) {
                if (cancelAt != 0 && System.currentTimeMillis() - cancelAt > CANCEL_GRACE_MS) {
                    stopRunning();
                    throw new WorkerException("canceled; the job did not stop within " + CANCEL_GRACE_MS / 1000
                            + " s, so its worker was stopped (the next command starts a new one)", true);
                }
                continue;
            }
            String type = Json.string(m, "type", "");
            if ("eof".equals(type)) {
                throw died(op);
            }
            if ((long) Json.number(m, "id", -1) != id) {
                continue; // a late message of an earlier job
            }
            switch (type) {
                case "log":
                    listener.log(Json.string(m, "text", ""));
                    break;
                case "progress":
                    listener.progress((int) Json.number(m, "done", 0), (int) Json.number(m, "total", 1),
                            Json.string(m, "text", ""));
                    break;
                case "result":
                    return Json.object(m.get("result"));
                case "error":
                    throw new WorkerException(Json.string(m, "message", "failed"), "Cancelled".equals(m.get("kind")));
                default:
                    break;
            }
        }
    }

    private void send(Map<String, Object> message) throws WorkerException {
        String line = Json.write(message) + "\n";
        try {
            synchronized (toWorker) {
                toWorker.write(line);
                toWorker.flush();
            }
        } catch (IOException e) {
            throw died(String.valueOf(message.get("op")));
        }
    }

    private WorkerException died(String op) {
        try {
            process.waitFor(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        String how = exitDescription();
        synchronized (Worker.class) {
            if (current == this) {
                current = null;
            }
        }
        process.destroyForcibly();
        cleanUp();
        return new WorkerException("the DeepImageJ Python worker stopped during '" + op + "'" + how + lastError()
                + "; the next DeepImageJ command starts a new worker");
    }

    /** " (exit code N)" or " (killed by signal N...)" once the process ended, else "". */
    private String exitDescription() {
        if (process.isAlive()) {
            return "";
        }
        int code = process.exitValue();
        return code > 128 ? " (killed by signal " + (code - 128) + (code == 137 ? ": out of memory, or killed" : "") + ")"
                : " (exit code " + code + ")";
    }

    private String lastError() {
        synchronized (stderrTail) {
            for (java.util.Iterator<String> it = stderrTail.descendingIterator(); it.hasNext();) {
                String line = it.next().trim();
                if (!line.isEmpty() && !line.startsWith("at ") && !line.startsWith("File ")) {
                    return ": " + line;
                }
            }
        }
        return "";
    }

    /** The last lines the worker wrote to its stderr (Python warnings, tracebacks). */
    public String stderrTail() {
        synchronized (stderrTail) {
            return String.join("\n", stderrTail);
        }
    }

    private void readReplies() {
        try (BufferedReader in = new BufferedReader(
                new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.trim().isEmpty()) {
                    continue;
                }
                try {
                    messages.put(Json.object(Json.parse(line)));
                } catch (IllegalArgumentException e) {
                    addTail(line);
                }
            }
        } catch (IOException | InterruptedException e) {
            // the process ended
        }
        messages.add(Json.of("type", "eof"));
    }

    private void readStderr() {
        try (BufferedReader in = new BufferedReader(
                new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                addTail(line);
            }
        } catch (IOException e) {
            // the process ended
        }
    }

    private void addTail(String line) {
        synchronized (stderrTail) {
            stderrTail.addLast(line);
            while (stderrTail.size() > TAIL_LINES) {
                stderrTail.removeFirst();
            }
        }
    }

    // ------------------------------------------------------------------ files
    /** {@value #CONFIG_NAME} next to this plugin's jar (else in ImageJ's plugins folder). */
    public static Path configFile() {
        try {
            Path jar = Paths.get(Worker.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            if (Files.isRegularFile(jar)) {
                return jar.resolveSibling(CONFIG_NAME);
            }
        } catch (URISyntaxException | RuntimeException e) {
            // fall back to the plugins folder
        }
        String plugins = ij.Menus.getPlugInsPath();
        return Paths.get(plugins != null ? plugins : ".", CONFIG_NAME);
    }

    private static String imagejFolder(Path configFile) {
        Path plugins = configFile.toAbsolutePath().getParent();
        Path folder = plugins != null ? plugins.getParent() : null;
        return folder != null ? folder.toString() : "/path/to/ImageJ";
    }

    /** A new private folder for image files: in /dev/shm (memory) when there is one; stale ones removed. */
    private static Path createSharedDir() throws WorkerException {
        File shm = new File("/dev/shm");
        Path base = shm.isDirectory() && shm.canWrite() ? shm.toPath() : Paths.get(System.getProperty("java.io.tmpdir"));
        removeStale(base);
        try {
            Path dir = Files.createTempDirectory(base, "deepimagej-");
            Files.write(dir.resolve("owner.pid"), String.valueOf(ProcessHandle.current().pid())
                    .getBytes(StandardCharsets.UTF_8));
            return dir;
        } catch (IOException e) {
            throw new WorkerException("cannot create a folder for images in " + base + ": " + e.getMessage());
        }
    }

    /** Removes the image folders of ImageJs that are gone (killed before they could clean up). */
    private static void removeStale(Path base) {
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(base, "deepimagej-*")) {
            for (Path dir : dirs) {
                Path owner = dir.resolve("owner.pid");
                try {
                    long ownerPid = Long.parseLong(new String(Files.readAllBytes(owner), StandardCharsets.UTF_8).trim());
                    if (!ProcessHandle.of(ownerPid).isPresent()) {
                        deleteTree(dir);
                    }
                } catch (IOException | NumberFormatException e) {
                    // not one of ours, or being created: leave it
                }
            }
        } catch (IOException e) {
            // nothing to clean
        }
    }

    static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // best effort
        }
    }
}
