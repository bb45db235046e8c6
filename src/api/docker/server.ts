/**
 * The plugin's unix-socket HTTP servers, one per driver name: Docker finds a
 * legacy plugin by the socket's file name in its plugin directory.
 *
 * Sockets are created root-only (umask while binding, then chmod 0600), a
 * stale socket from a crashed run is replaced, and close() lets in-flight
 * requests finish before removing the socket.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LanplugError } from '../../errors';
import type { Logger } from '../../log';
import { parseBody } from './decode';
import type { Handler } from './routes';

/** A request body larger than this is not from Docker. */
const MAX_BODY_BYTES = 1 << 20;
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

export interface PluginEndpoint {
  /** Plugin name: the socket is `<pluginDir>/<name>.sock`. */
  name: string;
  routes: ReadonlyMap<string, Handler>;
  /** The key of the error field: 'Err' for network drivers, 'Error' for IPAM. */
  errorField: 'Err' | 'Error';
}

export class PluginServer {
  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
  ) {}

  static async listen(pluginDir: string, endpoint: PluginEndpoint, log: Logger): Promise<PluginServer> {
    mkdirSync(pluginDir, { recursive: true, mode: 0o755 });
    const socketPath = join(pluginDir, `${endpoint.name}.sock`);
    removeStaleSocket(socketPath);
    const server = createServer((req, res) => handle(endpoint, log, req, res));
    server.keepAliveTimeout = 5_000;
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(socketPath, 0o600);
    log.info('listening', { plugin: endpoint.name, socket: socketPath });
    return new PluginServer(server, socketPath);
  }

  /** Stops accepting, waits for in-flight requests, removes the socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    removeStaleSocket(this.socketPath);
  }
}

function removeStaleSocket(path: string): void {
  try {
    const stat = lstatSync(path);
    if (!stat.isSocket()) throw new LanplugError('Conflict', `${path} exists and is not a socket; refusing to replace it`);
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function handle(endpoint: PluginEndpoint, log: Logger, req: IncomingMessage, res: ServerResponse): void {
  const started = process.hrtime.bigint();
  const path = (req.url ?? '').split('?')[0] ?? '';
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      reply(res, 413, { [endpoint.errorField]: `request body larger than ${MAX_BODY_BYTES} bytes` });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    const route = endpoint.routes.get(path);
    const text = Buffer.concat(chunks).toString('utf8');
    let status = 200;
    let payload: Record<string, unknown>;
    if (req.method !== 'POST') {
      status = 405;
      payload = { [endpoint.errorField]: `method ${req.method ?? '?'} not allowed; the plugin API uses POST` };
    } else if (route === undefined) {
      status = 404;
      payload = { [endpoint.errorField]: `${path} is not implemented by ${endpoint.name}` };
    } else {
      try {
        payload = route(parseBody(text));
      } catch (err) {
        // Docker reads a non-200 reply's error field and shows it after "NetworkDriver.<Method>: ".
        status = err instanceof LanplugError && err.code !== 'Internal' ? 400 : 500;
        const message = err instanceof Error ? err.message : String(err);
        payload = { [endpoint.errorField]: message };
        log.error('request failed', { plugin: endpoint.name, path, error: message, ...(err instanceof LanplugError ? { code: err.code, errno: err.errno } : {}) });
      }
    }
    reply(res, status, payload);
    const micros = Number((process.hrtime.bigint() - started) / 1000n);
    log.debug('request', { plugin: endpoint.name, path, status, micros, request: text, response: payload });
  });
}

function reply(res: ServerResponse, status: number, payload: Record<string, unknown>): void {
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
