/**
 * The plugin's unix-socket HTTP servers, one per driver name: Docker finds a
 * legacy plugin by the socket's file name in its plugin directory.
 *
 * Sockets are created root-only (umask while binding, then chmod 0600). A
 * socket left by a crashed run (nothing answers on it) is replaced; one that
 * answers belongs to a live process and is never touched. close() lets
 * in-flight requests finish, then removes the socket only if it is still the
 * one this process created (same inode). Sockets passed in by systemd are
 * served as they are and left to systemd.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createConnection } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { endpointIdentity } from '../../driver/identity';
import { invalidArgument, LanplugError } from '../../errors';
import type { Logger } from '../../log';
import { recordEvent } from '../../metrics/events';
import { countRequest } from '../../metrics/registry';
import { parseBody } from './decode';
import type { Handler } from './routes';

/** A request body larger than this is not from Docker. */
const MAX_BODY_BYTES = 1 << 20;
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

export interface PluginEndpoint {
  /** Plugin name: the socket is `<pluginDir>/<name>.sock`. */
  name: string;
  routes: ReadonlyMap<string, Handler>;
  /**
   * The key of the error field for paths it does not serve: 'Err' for network drivers, 'Error' for
   * IPAM. A served path's is its API's own (see errorFieldFor): one socket may serve both APIs.
   */
  errorField: 'Err' | 'Error';
  /** Answers the paths `routes` does not have; absent: 404. */
  fallback?: Handler;
  /** Plain pages served to GET (the control socket's /metrics and /healthz), not the plugin API. */
  pages?: ReadonlyMap<string, PageHandler>;
}

/** A page as it goes out: its status, content type and text. */
export interface Page {
  status: number;
  contentType: string;
  body: string;
  /**
   * Keeps the answer open after `body` (`lanplug events --follow`): `write` sends more, `end`
   * finishes it; the function returned is called when the client goes away.
   */
  follow?: (write: (text: string) => void, end: () => void) => () => void;
}
/** `query`: the URL's parameters (`/events?since=…`). */
export type PageHandler = (query: URLSearchParams) => Promise<Page>;

/** libnetwork's IPAM API answers errors in `Error` (in a 200 reply), the network driver API in `Err`. */
function errorFieldFor(endpoint: PluginEndpoint, path: string): 'Err' | 'Error' {
  if (path.startsWith('/IpamDriver.')) return 'Error';
  if (path.startsWith('/NetworkDriver.')) return 'Err';
  return endpoint.errorField;
}

/**
 * One endpoint serving several APIs on one socket (a managed plugin has exactly one): the routes
 * together, and a /Plugin.Activate that names every API they implement.
 */
export function combinedEndpoint(name: string, parts: readonly PluginEndpoint[]): PluginEndpoint {
  const routes = new Map<string, Handler>();
  const implemented: string[] = [];
  for (const part of parts) {
    for (const [path, handler] of part.routes) {
      if (path === '/Plugin.Activate') {
        const answer = handler({});
        if (!(answer instanceof Promise) && Array.isArray(answer.Implements))
          implemented.push(...answer.Implements.filter((api): api is string => typeof api === 'string'));
      } else routes.set(path, handler);
    }
  }
  routes.set('/Plugin.Activate', () => ({ Implements: [...new Set(implemented)] }));
  return { name, routes, errorField: parts[0]?.errorField ?? 'Err' };
}

/**
 * An HTTP server that never closes an idle keep-alive connection itself.
 * dockerd's plugin client keeps idle connections without a limit and reuses
 * them later; a server that closes one after a timeout races with the
 * request dockerd writes at that moment, and Go does not retry a POST that
 * met EOF: the Leave fails, and dockerd keeps the endpoint "active" for good
 * (seen as `network rm`: "has active endpoints" after 50 concurrent rm -f).
 * The client closes its connections; close() closes the idle ones, and
 * once it began each answer closes its connection (see reply).
 */
function pluginHttpServer(endpoint: PluginEndpoint, log: Logger): Server {
  const server: Server = createServer((req, res) => handle(endpoint, log, req, res, () => !server.listening));
  server.keepAliveTimeout = 0;
  return server;
}

export class PluginServer {
  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
    /** Identity (device, inode, change time) of the socket file this process created; null when systemd passed it in. */
    private readonly created: string | null,
  ) {}

  /** Binds `<pluginDir>/<name>.sock` itself. */
  static async listen(pluginDir: string, endpoint: PluginEndpoint, log: Logger): Promise<PluginServer> {
    mkdirSync(pluginDir, { recursive: true, mode: 0o755 });
    const socketPath = join(pluginDir, `${endpoint.name}.sock`);
    await removeDeadSocket(socketPath);
    const server = pluginHttpServer(endpoint, log);
    // Bound under a temporary name, then renamed into place: Node unlinks the path it bound when the
    // server closes, and that must never be the public name, which may by then be another process's.
    const boundPath = `${socketPath}.${process.pid}.new`;
    // Left by a run of this pid that was killed between bind and rename (a managed plugin is always pid 1).
    removeFile(boundPath);
    const previousUmask = process.umask(0o177);
    try {
      await listening(server, boundPath);
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(boundPath, 0o600);
    renameSync(boundPath, socketPath);
    log.info('listening', { plugin: endpoint.name, socket: socketPath });
    return new PluginServer(server, socketPath, fileIdentity(socketPath));
  }

  /** Serves a listening socket systemd passed in (socket activation): file descriptor `fd`, named `socketPath`. */
  static async adopt(fd: number, socketPath: string, endpoint: PluginEndpoint, log: Logger): Promise<PluginServer> {
    const server = pluginHttpServer(endpoint, log);
    await listening(server, { fd });
    log.info('serving socket passed by systemd', { plugin: endpoint.name, socket: socketPath, fd });
    return new PluginServer(server, socketPath, null);
  }

  /** Stops accepting, waits for in-flight requests, removes the socket if it is still ours. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    if (this.created === null) return;
    try {
      if (fileIdentity(this.socketPath) === this.created) unlinkSync(this.socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Inode numbers are reused at once on some file systems: the change time tells a new file from ours. */
function fileIdentity(path: string): string {
  const st = lstatSync(path, { bigint: true });
  return `${st.dev}:${st.ino}:${st.ctimeNs}`;
}

function listening(server: Server, where: string | { fd: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Removes a socket file nothing listens on (a crashed run's). A socket that
 * answers belongs to a live process, and anything else is not ours: refused.
 */
export async function removeDeadSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new LanplugError('Conflict', `${path} exists and is not a socket; refusing to replace it`);
  if (await answers(path)) {
    throw new LanplugError(
      'Conflict',
      `${path} is served by another running process; lanplug does not take over a live socket: stop that process first`,
    );
  }
  unlinkSync(path);
}

/** True when something accepts a connection on the unix socket within a second. */
export function answers(path: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const connection = createConnection({ path });
    const done = (result: boolean): void => {
      clearTimeout(timer);
      connection.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    connection.once('connect', () => done(true));
    connection.once('error', () => done(false));
  });
}

function handle(
  endpoint: PluginEndpoint,
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  closing: () => boolean,
): void {
  const started = process.hrtime.bigint();
  const path = (req.url ?? '').split('?')[0] ?? '';
  const page = req.method === 'GET' ? endpoint.pages?.get(path) : undefined;
  if (page !== undefined) return servePage(page, log, req, res, closing);
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      reply(res, 413, { [endpoint.errorField]: `request body larger than ${MAX_BODY_BYTES} bytes` }, closing());
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    const text = Buffer.concat(chunks).toString('utf8');
    void answer(endpoint, log, req, path, text).then(({ status, payload }) => {
      reply(res, status, payload, closing());
      const micros = Number((process.hrtime.bigint() - started) / 1000n);
      // Paths it does not serve are counted as one method: a client's typos must not grow the metrics.
      const method = endpoint.routes.has(path) ? path.replace(/^\//, '') : 'unknown';
      const failed = status !== 200 || 'Err' in payload || 'Error' in payload;
      countRequest(method, failed ? 'error' : 'ok', micros / 1e6);
      recordRequestEvent(method, text, failed ? errorOf(payload) : null);
      log.debug('request', { plugin: endpoint.name, path, status, micros, request: text, response: payload });
    });
  });
}

export function servePage(
  page: PageHandler,
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  closing: () => boolean,
): void {
  req.resume();
  page(new URL(req.url ?? '/', 'http://lanplug').searchParams).then(
    ({ status, contentType, body, follow }) => {
      if (closing()) res.shouldKeepAlive = false;
      if (follow === undefined) {
        res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      // Chunked, and closed after: a follow ends with its connection.
      res.shouldKeepAlive = false;
      res.writeHead(status, { 'Content-Type': contentType });
      res.write(body);
      // A follower that stops reading (a paused pager) is let go once 1 MiB waits for it, not buffered for ever.
      let stop = (): void => undefined;
      stop = follow(
        (text) => {
          if (res.destroyed) return stop();
          if (res.writableLength > FOLLOW_BACKLOG_BYTES) {
            stop();
            res.end();
            return;
          }
          res.write(text);
        },
        () => res.end(),
      );
      res.on('close', stop);
      if (res.destroyed) stop(); // gone before the listener was there
    },
    (err: unknown) => {
      log.error('page failed', { path: req.url, error: String(err) });
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`${String(err)}\n`);
    },
  );
}

/** What a follower of a page (`lanplug events --follow`) may leave unread before it is let go. */
const FOLLOW_BACKLOG_BYTES = 1 << 20;

/** The plugin API calls `lanplug events` shows, by the event each is when it succeeds. */
const LIFECYCLE_EVENTS: Readonly<Record<string, string>> = {
  'NetworkDriver.CreateNetwork': 'network.created',
  'NetworkDriver.DeleteNetwork': 'network.removed',
  'NetworkDriver.CreateEndpoint': 'endpoint.created',
  'NetworkDriver.DeleteEndpoint': 'endpoint.removed',
  'NetworkDriver.Join': 'endpoint.joined',
  'NetworkDriver.Leave': 'endpoint.left',
};

/** A network's or an endpoint's life, named by the ids Docker sent; a failed call of any such method too. */
function recordRequestEvent(method: string, text: string, error: string | null): void {
  const kind = LIFECYCLE_EVENTS[method];
  if (kind === undefined) return;
  let ids: Record<string, string> = {};
  try {
    const body = JSON.parse(text) as { NetworkID?: unknown; EndpointID?: unknown; Options?: unknown };
    const id = (value: unknown): string => (typeof value === 'string' ? value.slice(0, 12) : '');
    ids = { network: id(body.NetworkID), ...(body.EndpointID === undefined ? {} : { endpoint: id(body.EndpointID) }) };
    // The name an endpoint took (docs/identity.md): what ties a re-created container's events to the last one's.
    const identity = kind === 'endpoint.created' && error === null ? identityIn(body.Options) : null;
    if (identity !== null) ids = { ...ids, identity };
  } catch {
    // a body the handler refused already: the event names no ids
  }
  recordEvent(error === null ? kind : 'request.failed', error === null ? ids : { method, ...ids, error });
}

/** The identity named by a CreateEndpoint's options, or null (none, or options that are no object of strings). */
function identityIn(options: unknown): string | null {
  if (typeof options !== 'object' || options === null) return null;
  const strings = Object.fromEntries(Object.entries(options).filter(([, v]) => typeof v === 'string')) as Record<
    string,
    string
  >;
  try {
    return endpointIdentity(strings)?.name ?? null;
  } catch {
    return null;
  }
}

function errorOf(payload: Record<string, unknown>): string {
  const message = payload['Err'] ?? payload['Error'];
  return typeof message === 'string' ? message : 'failed';
}

/**
 * The reply to one request. Network driver handlers are synchronous, so one
 * request runs to completion before the next; only control requests (which
 * wait on dockerd) are asynchronous.
 */
async function answer(
  endpoint: PluginEndpoint,
  log: Logger,
  req: IncomingMessage,
  path: string,
  text: string,
): Promise<{ status: number; payload: Record<string, unknown> }> {
  const route = endpoint.routes.get(path) ?? endpoint.fallback;
  if (req.method !== 'POST') {
    return {
      status: 405,
      payload: { [endpoint.errorField]: `method ${req.method ?? '?'} not allowed; the plugin API uses POST` },
    };
  }
  if (route === undefined)
    return { status: 404, payload: { [endpoint.errorField]: `${path} is not implemented by ${endpoint.name}` } };
  try {
    return { status: 200, payload: await route(parseBody(text)) };
  } catch (thrown) {
    const err =
      text.trim() === '' && thrown instanceof LanplugError && thrown.code === 'InvalidArgument'
        ? resentWithoutBody(path)
        : thrown;
    // Docker reads a network driver's non-200 reply's Err and shows it after "NetworkDriver.<Method>: ";
    // the IPAM API carries its Error in a 200 reply (a non-200 one is shown as raw JSON).
    const failed = err instanceof LanplugError && err.code !== 'Internal' ? 400 : 500;
    const field = errorFieldFor(endpoint, path);
    const status = field === 'Error' ? 200 : failed;
    const message = err instanceof Error ? err.message : String(err);
    log.error('request failed', {
      plugin: endpoint.name,
      path,
      error: message,
      ...(err instanceof LanplugError ? { code: err.code, errno: err.errno } : {}),
    });
    return { status, payload: { [field]: message } };
  }
}

/**
 * dockerd encodes every call's arguments (`null` for none), so an empty body is its plugin client's
 * retry of a call whose connection broke after lanplug had read it: the retry sends the same body
 * reader again, already drained. The field check's "request field NetworkID must be a non-empty
 * string" (seen when the daemon was killed mid-burst) sounded like the user's input was wrong.
 */
function resentWithoutBody(path: string): LanplugError {
  return invalidArgument(
    `dockerd sent ${path} without its body, as it resends a call whose connection to lanplug broke while lanplug answered it (lanplug was stopped or restarted); lanplug did nothing with it: run the command again`,
  );
}

/**
 * `closing`: close() began. Then the answer closes its connection (`Connection: close`). close()
 * waits for every connection to end, and with no idle timeout a keep-alive connection busy when
 * SIGTERM came stayed open after its answer: dockerd sent the next requests of a burst on it, the
 * stopping daemon served them, and it never exited (SIGKILLed 15 s after SIGTERM in 6 of 12 runs).
 * dockerd opens a new connection for its next request, finds the socket closed, and retries until
 * the daemon is back.
 */
function reply(res: ServerResponse, status: number, payload: Record<string, unknown>, closing: boolean): void {
  if (closing) res.shouldKeepAlive = false;
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
