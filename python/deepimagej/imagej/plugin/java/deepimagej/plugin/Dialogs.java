package deepimagej.plugin;

import ij.gui.GenericDialog;
import java.util.List;
import java.util.Map;

/**
 * A command's dialog, described by the worker ({@code deepimagej.imagej.commands.dialogs}) and
 * shown as an ImageJ GenericDialog: the labels are the macro keys, so the Recorder records a
 * line the command reads back, and a macro's options fill the dialog without showing it.
 */
public final class Dialogs {
    private Dialogs() {}

    /** Shows the dialog {@code spec}; returns the values by macro key, or null if canceled. */
    public static Map<String, Object> show(Map<String, Object> spec) {
        GenericDialog gd = new GenericDialog(Json.string(spec, "title", "DeepImageJ"));
        List<Object> fields = Json.list(spec.get("fields"));
        for (Object o : fields) {
            Map<String, Object> f = Json.object(o);
            String kind = Json.string(f, "kind", "");
            String label = Json.string(f, "label", "");
            int columns = (int) Json.number(f, "columns", 30);
            switch (kind) {
                case "choice": {
                    List<Object> items = Json.list(f.get("choices"));
                    String[] choices = new String[items.size()];
                    for (int i = 0; i < choices.length; i++) {
                        choices[i] = items.get(i).toString();
                    }
                    gd.addChoice(label, choices, Json.string(f, "default", choices.length > 0 ? choices[0] : ""));
                    break;
                }
                case "string":
                    gd.addStringField(label, Json.string(f, "default", ""), columns);
                    break;
                case "number":
                    gd.addNumericField(label, Json.number(f, "default", 0), columns);
                    break;
                case "checkbox":
                    gd.addCheckbox(label, Json.bool(f, "default", false));
                    break;
                default:
                    gd.addMessage(label);
            }
        }
        gd.showDialog();
        if (gd.wasCanceled()) {
            return null;
        }
        Map<String, Object> values = Json.of();
        for (Object o : fields) {
            Map<String, Object> f = Json.object(o);
            String key = key(Json.string(f, "label", ""));
            switch (Json.string(f, "kind", "")) {
                case "choice":
                    values.put(key, gd.getNextChoice());
                    break;
                case "string":
                    values.put(key, gd.getNextString());
                    break;
                case "number":
                    values.put(key, gd.getNextNumber());
                    break;
                case "checkbox":
                    values.put(key, gd.getNextBoolean());
                    break;
                default:
                    break;
            }
        }
        return values;
    }

    /** ImageJ's macro key of a label (first word, lower case), as {@code Macro.trimKey}. */
    static String key(String label) {
        String key = label;
        int space = key.indexOf(' ');
        if (space >= 0) {
            key = key.substring(0, space);
        }
        int colon = key.indexOf(':');
        if (colon >= 0) {
            key = key.substring(0, colon);
        }
        return key.toLowerCase(java.util.Locale.US);
    }
}
