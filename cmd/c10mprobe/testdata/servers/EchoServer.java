// A thread-per-connection echo server on java.net.ServerSocket, as classic
// Java services are written. The root tests probe it with c10mprobe run
// --target. Usage: java EchoServer PORT
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

public class EchoServer {
    public static void main(String[] args) throws Exception {
        ServerSocket ss = new ServerSocket(Integer.parseInt(args[0]), 4096, InetAddress.getLoopbackAddress());
        // Warm up, as a service's health check would: the JDK initializes
        // its socket dispatcher (sun.nio.ch.FileDispatcherImpl) at the first
        // write, and that needs an fd. Left to a connection's first write
        // with every fd taken, the class fails to initialize and every
        // connection's write fails after it (seen at 20,000 connections).
        try (Socket c = new Socket(InetAddress.getLoopbackAddress(), ss.getLocalPort());
             Socket s = ss.accept()) {
            c.getOutputStream().write(0);
            s.getInputStream().read();
        }
        while (true) {
            Socket s;
            try {
                s = ss.accept();
            } catch (java.io.IOException e) {
                // "Too many open files": log, back off and retry, as
                // servers do.
                System.err.println("accept failed: " + e + "; retrying in 10 ms");
                Thread.sleep(10);
                continue;
            }
            Thread t = new Thread(() -> echo(s), "conn");
            t.setDaemon(true);
            try {
                t.start();
            } catch (OutOfMemoryError e) {
                // "unable to create native thread": the connection is dropped.
                try { s.close(); } catch (java.io.IOException ignored) {}
                Thread.sleep(10);
            }
        }
    }

    static void echo(Socket s) {
        byte[] buf = new byte[4096];
        try (s; InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
            for (int n; (n = in.read(buf)) > 0; ) {
                out.write(buf, 0, n);
            }
        } catch (java.io.IOException e) {
            // the client reset it: the run is closing
        }
    }
}
