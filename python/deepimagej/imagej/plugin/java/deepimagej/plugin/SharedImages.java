package deepimagej.plugin;

import ij.CompositeImage;
import ij.ImagePlus;
import ij.ImageStack;
import ij.measure.Calibration;
import ij.process.ByteProcessor;
import ij.process.ColorProcessor;
import ij.process.FloatProcessor;
import ij.process.ImageProcessor;
import ij.process.ShortProcessor;
import java.io.IOException;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.Map;

/**
 * Images shared with the worker through memory-mapped files: ImageJ's planes, in stack order
 * (channel fastest, then slice, then frame), native byte order, one after the other; nothing
 * else in the file. The JSON description that goes with a file ({@code path, dtype, width,
 * height, channels, slices, frames, signed16, title, calibration}) is what the worker's
 * {@code deepimagej.imagej.plugin.protocol} reads and writes.
 */
public final class SharedImages {
    /** The most bytes mapped at once (a plane larger than this is copied in parts). */
    private static final long CHUNK = 1L << 30;

    private SharedImages() {}

    /** Writes the pixels of {@code imp} into {@code file} and returns the image's description. */
    public static Map<String, Object> write(ImagePlus imp, Path file) throws IOException {
        ImageStack stack = imp.getStack();
        int n = stack.getSize();
        int channels = imp.getNChannels();
        int slices = imp.getNSlices();
        int frames = imp.getNFrames();
        if (channels * slices * frames != n) { // inconsistent dimensions: a plain z-stack
            channels = 1;
            slices = n;
            frames = 1;
        }
        String dtype = dtype(imp.getBitDepth());
        long planeBytes = (long) imp.getWidth() * imp.getHeight() * bytesPerPixel(dtype);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE)) {
            if (ch.size() != planeBytes * n) {
                ch.truncate(0); // a stale, larger file would keep its memory
                ch.write(java.nio.ByteBuffer.allocate(1), planeBytes * n - 1);
            }
            for (int i = 0; i < n; i++) {
                copy(ch, i * planeBytes, stack.getPixels(i + 1), true);
            }
        }
        Calibration cal = imp.getCalibration();
        Map<String, Object> calibration = Json.of("x", cal.pixelWidth, "y", cal.pixelHeight, "z", cal.pixelDepth,
                "unit", cal.getUnit());
        if (cal.frameInterval != 0) {
            calibration.put("t", cal.frameInterval);
            calibration.put("time_unit", cal.getTimeUnit());
        }
        if (cal.xOrigin != 0) {
            calibration.put("x_origin", -cal.xOrigin * cal.pixelWidth);
        }
        if (cal.yOrigin != 0) {
            calibration.put("y_origin", -cal.yOrigin * cal.pixelHeight);
        }
        if (cal.zOrigin != 0) {
            calibration.put("z_origin", -cal.zOrigin * cal.pixelDepth);
        }
        return Json.of("path", file.toString(), "dtype", dtype, "width", imp.getWidth(), "height", imp.getHeight(),
                "channels", channels, "slices", slices, "frames", frames,
                "signed16", imp.getBitDepth() == 16 && cal.isSigned16Bit(), "title", imp.getTitle(),
                "calibration", calibration);
    }

    /** The image a description names (written by the worker), as a new ImagePlus with its calibration. */
    public static ImagePlus read(Map<String, Object> image) throws IOException {
        String dtype = Json.string(image, "dtype", "float32");
        int width = (int) Json.number(image, "width", 0);
        int height = (int) Json.number(image, "height", 0);
        int channels = (int) Json.number(image, "channels", 1);
        int slices = (int) Json.number(image, "slices", 1);
        int frames = (int) Json.number(image, "frames", 1);
        int n = channels * slices * frames;
        long planeBytes = (long) width * height * bytesPerPixel(dtype);
        ImageStack stack = new ImageStack(width, height);
        Path file = Paths.get(Json.string(image, "path", ""));
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            if (ch.size() < planeBytes * n) {
                throw new IOException(file + " holds " + ch.size() + " bytes, not " + planeBytes * n);
            }
            for (int i = 0; i < n; i++) {
                ImageProcessor ip = processor(dtype, width, height);
                copy(ch, i * planeBytes, ip.getPixels(), false);
                stack.addSlice("", ip);
            }
        }
        ImagePlus imp = new ImagePlus(Json.string(image, "title", "output"), stack);
        imp.setDimensions(channels, slices, frames);
        if (channels > 1 || frames > 1) {
            imp.setOpenAsHyperStack(true);
        }
        if (channels > 1 && !"rgb".equals(dtype)) {
            imp = new CompositeImage(imp, CompositeImage.COMPOSITE);
        }
        Map<String, Object> c = Json.object(image.get("calibration"));
        Calibration cal = imp.getCalibration().copy();
        cal.pixelWidth = Json.number(c, "x", cal.pixelWidth);
        cal.pixelHeight = Json.number(c, "y", cal.pixelHeight);
        cal.pixelDepth = Json.number(c, "z", cal.pixelDepth);
        cal.frameInterval = Json.number(c, "t", cal.frameInterval);
        if (c.get("unit") != null) {
            cal.setUnit(Json.string(c, "unit", "pixel"));
        }
        if (c.get("time_unit") != null) {
            cal.setTimeUnit(Json.string(c, "time_unit", "sec"));
        }
        cal.xOrigin = -Json.number(c, "x_origin", 0) / cal.pixelWidth;
        cal.yOrigin = -Json.number(c, "y_origin", 0) / cal.pixelHeight;
        cal.zOrigin = -Json.number(c, "z_origin", 0) / cal.pixelDepth;
        if (Json.bool(image, "signed16", false)) {
            cal.setSigned16BitCalibration();
        }
        imp.setCalibration(cal);
        if (!"rgb".equals(dtype)) {
            imp.resetDisplayRange();
        }
        return imp;
    }

    private static String dtype(int bitDepth) {
        switch (bitDepth) {
            case 8: return "uint8";
            case 16: return "uint16";
            case 24: return "rgb";
            default: return "float32";
        }
    }

    private static int bytesPerPixel(String dtype) {
        switch (dtype) {
            case "uint8": return 1;
            case "uint16": return 2;
            default: return 4;
        }
    }

    private static ImageProcessor processor(String dtype, int width, int height) {
        switch (dtype) {
            case "uint8": return new ByteProcessor(width, height);
            case "uint16": return new ShortProcessor(width, height);
            case "rgb": return new ColorProcessor(width, height);
            case "float32": return new FloatProcessor(width, height);
            default: throw new IllegalArgumentException("unknown pixel type " + dtype);
        }
    }

    /** Copies one plane's pixel array to ({@code write}) or from the file at {@code offset}. */
    private static void copy(FileChannel ch, long offset, Object pixels, boolean write) throws IOException {
        int length = java.lang.reflect.Array.getLength(pixels);
        int bpp = pixels instanceof byte[] ? 1 : pixels instanceof short[] ? 2 : 4;
        int done = 0;
        while (done < length) {
            int count = (int) Math.min(length - done, CHUNK / bpp);
            MappedByteBuffer buf = ch.map(write ? FileChannel.MapMode.READ_WRITE : FileChannel.MapMode.READ_ONLY,
                    offset + (long) done * bpp, (long) count * bpp);
            buf.order(ByteOrder.nativeOrder());
            if (pixels instanceof float[]) {
                if (write) {
                    buf.asFloatBuffer().put((float[]) pixels, done, count);
                } else {
                    buf.asFloatBuffer().get((float[]) pixels, done, count);
                }
            } else if (pixels instanceof short[]) {
                if (write) {
                    buf.asShortBuffer().put((short[]) pixels, done, count);
                } else {
                    buf.asShortBuffer().get((short[]) pixels, done, count);
                }
            } else if (pixels instanceof int[]) {
                if (write) {
                    buf.asIntBuffer().put((int[]) pixels, done, count);
                } else {
                    buf.asIntBuffer().get((int[]) pixels, done, count);
                }
            } else if (write) {
                buf.put((byte[]) pixels, done, count);
            } else {
                buf.get((byte[]) pixels, done, count);
            }
            done += count;
        }
    }
}
