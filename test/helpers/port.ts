import net from 'node:net';

/**
 * A loopback port nothing listens on right now (the kernel picks it). A random number in a range can be taken by
 * another process on a busy machine; this cannot, except in the moment between close and the caller's listen.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
