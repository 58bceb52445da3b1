package deepimagej.plugin;

import ij.CompositeImage;
import ij.ImagePlus;
import ij.ImageStack;
import ij.measure.Calibration;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Images shared with the worker through memory-mapped files: ImageJ's planes, in stack order
 * (channel fastest, then slice, then frame), native byte order, one after the other; nothing
 * else in the file. The JSON description that goes with a file ({@code path, dtype, width,
 * height, channels, slices, frames, signed16, title, calibration}) is what the worker's
 * {@code deepimagej.imagej.plugin.protocol} reads and writes.
 *
 * <p>Mappings are kept (by file identity) for the next image: a file of the same size is
 * reused, its pages already mapped; a file of another size is a new file (the old one unlinked,
 * never truncated: the worker may still map it).
 */
public final class SharedImages {
    /** The most bytes mapped at once (a plane larger than this is copied in parts). */
    private static final long CHUNK = 1L << 30;
    /** Mappings kept open, by file (path, identity, size, mode); the least recently used go first. */
    private static final Map<List<Object>, MappedByteBuffer[]> MAPPINGS =
            new LinkedHashMap<List<Object>, MappedByteBuffer[]>(16, 0.75f, true) {
                private static final long serialVersionUID = 1L;

                @Override
                protected boolean removeEldestEntry(Map.Entry<List<Object>, MappedByteBuffer[]> eldest) {
                    return size() > 8;
                }
            };

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
        long size = planeBytes * n;
        if (!Files.isRegularFile(file) || Files.size(file) != size) {
            Files.deleteIfExists(file); // a new inode: the worker may still map the old file
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
                raf.setLength(size);
            }
        }
        MappedByteBuffer[] chunks = mapped(file, size, true);
        for (int i = 0; i < n; i++) {
            copy(chunks, i * planeBytes, stack.getPixels(i + 1), true);
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
        return toImagePlus(readStack(image), image);
    }

    /** The pixels of the image a description names, copied out of its mapped file. */
    public static ImageStack readStack(Map<String, Object> image) throws IOException {
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
        if (!Files.isRegularFile(file) || Files.size(file) < planeBytes * n) {
            throw new IOException(file + " is missing or shorter than " + planeBytes * n + " bytes");
        }
        MappedByteBuffer[] chunks = mapped(file, planeBytes * n, false);
        for (int i = 0; i < n; i++) {
            stack.addSlice("", plane(dtype, width * height, chunks, i * planeBytes));
        }
        return stack;
    }

    /** An ImagePlus of {@code stack} with the dimensions, title and calibration of its description. */
    public static ImagePlus toImagePlus(ImageStack stack, Map<String, Object> image) {
        String dtype = Json.string(image, "dtype", "float32");
        int channels = (int) Json.number(image, "channels", 1);
        int slices = (int) Json.number(image, "slices", 1);
        int frames = (int) Json.number(image, "frames", 1);
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

    /** A new pixel array with one plane of the file (its display range is computed later, when needed). */
    private static Object plane(String dtype, int n, MappedByteBuffer[] chunks, long offset) {
        Object pixels;
        switch (dtype) {
            case "uint8": pixels = new byte[n]; break;
            case "uint16": pixels = new short[n]; break;
            case "rgb": pixels = new int[n]; break;
            case "float32": pixels = new float[n]; break;
            default: throw new IllegalArgumentException("unknown pixel type " + dtype);
        }
        copy(chunks, offset, pixels, false);
        return pixels;
    }

    /** The whole file mapped, in chunks of at most {@link #CHUNK} bytes; kept for the next call. */
    private static synchronized MappedByteBuffer[] mapped(Path file, long size, boolean write) throws IOException {
        Object identity = Files.readAttributes(file, BasicFileAttributes.class).fileKey();
        List<Object> key = Arrays.asList(file.toString(), identity, size, write);
        MappedByteBuffer[] chunks = MAPPINGS.get(key);
        if (chunks != null) {
            return chunks;
        }
        MAPPINGS.keySet().removeIf(k -> k.get(0).equals(file.toString())); // that file was replaced
        try (FileChannel ch = write
                ? FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)
                : FileChannel.open(file, StandardOpenOption.READ)) {
            chunks = new MappedByteBuffer[(int) ((size + CHUNK - 1) / CHUNK)];
            for (int i = 0; i < chunks.length; i++) {
                long start = i * CHUNK;
                chunks[i] = ch.map(write ? FileChannel.MapMode.READ_WRITE : FileChannel.MapMode.READ_ONLY, start,
                        Math.min(CHUNK, size - start));
            }
        }
        MAPPINGS.put(key, chunks);
        return chunks;
    }

    /** Copies a pixel array to ({@code write}) or from the mapped file at byte {@code offset}. */
    private static void copy(MappedByteBuffer[] chunks, long offset, Object pixels, boolean write) {
        int length = java.lang.reflect.Array.getLength(pixels);
        int bpp = pixels instanceof byte[] ? 1 : pixels instanceof short[] ? 2 : 4;
        int done = 0;
        while (done < length) {
            long position = offset + (long) done * bpp;
            int chunk = (int) (position / CHUNK);
            int within = (int) (position % CHUNK);
            int count = (int) Math.min(length - done, (CHUNK - within) / bpp);
            ByteBuffer buf = chunks[chunk].duplicate().order(ByteOrder.nativeOrder());
            buf.position(within);
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
