package deepimagej.ij;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Bulk copies between Java pixel arrays and (direct) NIO buffers shared with numpy. */
public final class Pixels {
    private Pixels() {}

    public static float[] floats(ByteBuffer b) {
        float[] a = new float[b.capacity() / 4];
        b.order(ByteOrder.nativeOrder()).asFloatBuffer().get(a);
        return a;
    }

    public static short[] shorts(ByteBuffer b) {
        short[] a = new short[b.capacity() / 2];
        b.order(ByteOrder.nativeOrder()).asShortBuffer().get(a);
        return a;
    }

    public static int[] ints(ByteBuffer b) {
        int[] a = new int[b.capacity() / 4];
        b.order(ByteOrder.nativeOrder()).asIntBuffer().get(a);
        return a;
    }

    public static byte[] bytes(ByteBuffer b) {
        byte[] a = new byte[b.capacity()];
        b.get(a);
        return a;
    }

    public static void copy(float[] a, ByteBuffer b) {
        b.order(ByteOrder.nativeOrder()).asFloatBuffer().put(a);
    }

    public static void copy(short[] a, ByteBuffer b) {
        b.order(ByteOrder.nativeOrder()).asShortBuffer().put(a);
    }

    public static void copy(int[] a, ByteBuffer b) {
        b.order(ByteOrder.nativeOrder()).asIntBuffer().put(a);
    }

    public static void copy(byte[] a, ByteBuffer b) {
        b.put(a);
    }
}
