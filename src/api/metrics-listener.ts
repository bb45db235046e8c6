/**
 * `lanplug daemon --metrics-listen ADDRESS:PORT`: the control socket's pages
 * (/metrics) on a TCP address too, for a Prometheus that cannot read a
 * root-only unix socket. Opt-in, GET only, and bound to the one address named:
 * never every interface unasked.
 */
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '../log';
import { parseAddress } from '../net/address';
import { servePage, type PageHandler } from './docker/server';

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * `127.0.0.1:9464`, `[::1]:9464`: an IP address of this host and a port. A wildcard address
 * (0.0.0.0, ::) is refused: the operator names the interface the metrics go out on.
 */
export function parseListenAddress(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = Number(m?.[3] ?? NaN);
  const usage = `--metrics-listen must be ADDRESS:PORT with an IP address of this host, e.g. 127.0.0.1:9464 or [::1]:9464; got '${text}'`;
  if (m === null || isIP(host) === 0 || (m[1] !== undefined && isIP(host) !== 6)) throw new Error(usage);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`--metrics-listen's port must be 1-65535; got '${m[3] ?? ''}'`);
  if (isWildcard(host, usage))
    throw new Error(
      `--metrics-listen ${text} would serve the metrics on every interface: name one address (127.0.0.1:${port} for this host only)`,
    );
  return { host, port };
}

/** IPv4's any address as an IPv4-mapped IPv6 address (::ffff:0.0.0.0): a dual-stack socket's IPv4 wildcard. */
const MAPPED_ANY = 0xffff_0000_0000n;

/**
 * 0.0.0.0, :: and ::ffff:0.0.0.0 (every interface), compared by value: they have many spellings
 * (::0.0.0.0, 0:0::0, ::ffff:0:0, …), and a text a pattern misses would serve the LAN. A zone
 * (fe80::1%eth0) names the interface of a link-local address; it does not make :: one interface's,
 * so the address is compared without it. A text that still does not parse is the flag's error.
 */
function isWildcard(host: string, usage: string): boolean {
  let parsed: ReturnType<typeof parseAddress>;
  try {
    parsed = parseAddress(host.replace(/%.*$/, ''));
  } catch {
    throw new Error(usage);
  }
  return parsed.value === 0n || (parsed.family === 6 && parsed.value === MAPPED_ANY);
}

/**
 * A scraper asks once every few seconds: a few connections at once, each answered or dropped in
 * seconds, so a client that opens many or never finishes its request cannot hold the daemon.
 */
const MAX_CONNECTIONS = 16;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * What a TCP address serves of the control socket's pages: /metrics, and /healthz as pass or fail
 * per check only. Anyone who reaches the address may ask; the details (the state directory's path,
 * socket paths, etcd's own error text) stay on the root-only control socket.
 */
function overTcp(pages: ReadonlyMap<string, PageHandler>): Map<string, PageHandler> {
  const served = new Map<string, PageHandler>();
  const metrics = pages.get('/metrics');
  if (metrics !== undefined) served.set('/metrics', metrics);
  const health = pages.get('/healthz');
  if (health !== undefined)
    served.set('/healthz', async (query) => {
      const page = await health(query);
      try {
        const full = JSON.parse(page.body) as { ok: boolean; checks: { check: string; ok: boolean }[] };
        const checks = full.checks.map((c) => ({
          check: c.check.startsWith('socket ') ? 'socket' : c.check,
          ok: c.ok,
        }));
        return { ...page, body: `${JSON.stringify({ ok: full.ok, checks })}\n` };
      } catch {
        return { ...page, body: page.status === 200 ? 'ok\n' : 'failing\n' };
      }
    });
  return served;
}

export class MetricsListener {
  private constructor(private readonly server: Server) {}

  static async listen(
    at: ListenAddress,
    pages: ReadonlyMap<string, PageHandler>,
    log: Logger,
  ): Promise<MetricsListener> {
    const served = overTcp(pages);
    const server = createServer((req, res) => {
      const page = req.method === 'GET' ? served.get((req.url ?? '').split('?')[0] ?? '') : undefined;
      if (page === undefined) {
        req.resume();
        res.writeHead(req.method === 'GET' ? 404 : 405, { 'Content-Type': 'text/plain' });
        res.end(`lanplug serves GET ${[...served.keys()].join(', ')} here\n`);
        return;
      }
      servePage(page, log, req, res, () => !server.listening);
    });
    server.maxConnections = MAX_CONNECTIONS;
    server.headersTimeout = REQUEST_TIMEOUT_MS;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`--metrics-listen ${at.host}:${at.port}: cannot listen there (${err.code ?? err.message})`)),
      );
      server.listen(at.port, at.host, () => resolve());
    });
    log.info('serving metrics', { address: at.host, port: at.port });
    return new MetricsListener(server);
  }

  /** Where it listens (the port the kernel chose, when asked for port 0). */
  address(): ListenAddress {
    const bound = this.server.address();
    if (bound === null || typeof bound === 'string') throw new Error('the metrics listener is not listening');
    return { host: bound.address, port: bound.port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
