/**
 * Free TCP ports for test and script servers. Runtime-neutral (node: APIs only).
 * @module
 */
import { createServer } from "node:net";

/**
 * A port nothing listens on right now at `host` (bound to port 0, then released). Another
 * loopback address (127.0.0.x) works too: Linux answers on all of 127/8.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`Unexpected listen address ${JSON.stringify(address)}`));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}
