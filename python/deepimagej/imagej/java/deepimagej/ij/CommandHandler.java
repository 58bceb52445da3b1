package deepimagej.ij;

/**
 * Implemented in Python (JPype {@code @JImplements}): receives every DeepImageJ command
 * that ImageJ runs, with the command's argument and the macro options (null when the
 * command was started from a menu rather than a macro).
 */
public interface CommandHandler {
    void run(String command, String macroOptions);
}
