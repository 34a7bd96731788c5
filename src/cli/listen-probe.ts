// Whether an address can be bound, asked before anything is written: `pdp serve` commits an
// ACL_CHANGE row for the version it starts with, and a start that then fails on the port would leave
// a row for a version that never served (and the next start would record a change from it).
import net from 'node:net';

/** The bind error for `host:port` (EADDRINUSE, EACCES, EADDRNOTAVAIL…), or undefined when it can be bound. Port 0 is always free. */
export function probeListen(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    // `exclusive`: under node:cluster a worker's listen would be shared through the primary instead.
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}
