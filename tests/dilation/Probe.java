import java.util.concurrent.*;

/** Java 17 probe for libdilation.so; same line protocol as probe.c (B/E/V/BACK). */
public class Probe {
    static long last = System.nanoTime();
    static long mono() {
        long v = System.nanoTime();
        if (v < last) System.out.println("BACK nanoTime");
        last = v;
        return v;
    }
    interface Body { void run() throws Exception; }
    static void check(String name, long reqNs, Body b) throws Exception {
        // StringBuilder, not `+`: a first string concatenation links a call site through
        // invokedynamic (~20 ms), which must not fall between the B and E lines.
        System.out.println(new StringBuilder("B ").append(name)); System.out.flush();
        long t0 = mono(); b.run(); long t1 = mono();
        System.out.println(new StringBuilder("E ").append(name).append(' ').append(reqNs).append(' ').append(t1 - t0)); System.out.flush();
    }
    public static void main(String[] args) throws Exception {
        long ms = args.length > 0 ? Long.parseLong(args[0]) : 50;
        check("Thread.sleep", ms * 1_000_000, () -> Thread.sleep(ms));
        System.out.println("B currentTimeMillis"); System.out.flush();
        long w0 = System.currentTimeMillis(); Thread.sleep(ms); long w1 = System.currentTimeMillis();
        System.out.println(new StringBuilder("E currentTimeMillis ").append(ms * 1_000_000).append(' ').append((w1 - w0) * 1_000_000)); System.out.flush();
        Object o = new Object();
        check("Object.wait", ms * 1_000_000, () -> { synchronized (o) { o.wait(ms); } });
        ScheduledExecutorService s = Executors.newSingleThreadScheduledExecutor();
        // Warm up the executor thread and the fixed-rate path outside the timed region.
        CountDownLatch warm = new CountDownLatch(2);
        ScheduledFuture<?> w = s.scheduleAtFixedRate(warm::countDown, 1, 1, TimeUnit.MILLISECONDS);
        warm.await(); w.cancel(false);
        CountDownLatch l = new CountDownLatch(3);
        check("ScheduledExecutorService", 3 * ms * 1_000_000, () -> {
            s.scheduleAtFixedRate(l::countDown, ms, ms, TimeUnit.MILLISECONDS);
            l.await();
        });
        s.shutdownNow();
        System.out.println("DONE");
    }
}
