/**
 * A byte relay between two unix sockets: what the managed plugin that does not
 * hold the state directory runs on its one socket, passing dockerd's calls to
 * the plugin that does (two daemons never share one store). It reads nothing:
 * HTTP goes through as it came, keep-alive connections included.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../log';

export class UnixRelay {
  private readonly connections = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  /** Listens on `path` (mode 0600) and passes each connection to `target`. */
  static async listen(path: string, target: string, log: Logger): Promise<UnixRelay> {
    try {
      unlinkSync(path); // the relay's socket is in the plugin's own runtime directory: only this plugin uses it
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let relay: UnixRelay | null = null;
    // Half-open both ways: a side that has finished writing still gets the other side's answer.
    const server = createServer({ allowHalfOpen: true }, (client) => relay?.pass(client, target, log));
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(path, 0o600);
    relay = new UnixRelay(server, path);
    log.info('relaying', { socket: path, to: target });
    return relay;
  }

  private pass(client: Socket, target: string, log: Logger): void {
    const upstream = createConnection({ path: target, allowHalfOpen: true });
    this.connections.add(client);
    const end = (): void => {
      this.connections.delete(client);
      client.destroy();
      upstream.destroy();
    };
    upstream.once('error', (err) => {
      log.warn('relay target did not answer', { to: target, error: err.message });
      end();
    });
    client.once('error', end);
    client.once('close', end);
    upstream.once('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /**
   * Stops accepting and cuts the connections left: the relay stops when the plugin it relays to has
   * stopped (their far ends are closed already) or when this plugin is disabled.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.destroy();
    await closed;
  }
}
