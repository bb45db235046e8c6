/**
 * dockerd's managed-plugin API (Engine API /plugins), spoken directly over
 * its socket rather than through the `docker` command: the client on a host
 * may be newer than its daemon and refuse to talk to it. Creating a plugin
 * needs no registry: the build context (config.json + rootfs) goes up as a
 * tar stream, made by the host's `tar` (no shell, fixed arguments).
 */
import { spawn } from 'node:child_process';
import { LanplugError } from '../errors';
import { unixHttp, unixHttpStream, type HttpAnswer } from '../api/unix-http';

/** What lanplug reads of `GET /plugins/{name}/json`. */
export interface PluginView {
  id: string;
  name: string;
  enabled: boolean;
  /** Settings.Env: `KEY=value` as set. */
  env: string[];
  /** Settings.Mounts: each mount's name and its source as set. */
  mounts: { name: string; source: string }[];
}

const CALL_TIMEOUT_MS = 60_000;
/** Uploading a ~110 MB rootfs and unpacking it takes seconds; a loaded machine several times that. */
const CREATE_TIMEOUT_MS = 300_000;

export class DockerPlugins {
  constructor(readonly socketPath: string) {}

  async inspect(name: string): Promise<PluginView | null> {
    const answer = await this.call('GET', `/plugins/${name}/json`);
    if (answer.status === 404) return null;
    return parsePluginView(expectOk(answer, `inspect plugin ${name}`));
  }

  /** `docker plugin create NAME DIR`: DIR holds config.json and rootfs/. */
  async create(name: string, contextDir: string): Promise<void> {
    const tar = spawn('tar', ['-C', contextDir, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tarErrors: Buffer[] = [];
    tar.stderr.on('data', (c: Buffer) => tarErrors.push(c));
    const exited = new Promise<number | null>((resolve) => {
      tar.once('error', () => resolve(null)); // no tar on this host
      tar.once('close', resolve);
    });
    let answer: HttpAnswer;
    try {
      answer = await unixHttpStream(
        this.socketPath,
        `/plugins/create?name=${encodeURIComponent(name)}`,
        'application/x-tar',
        tar.stdout,
        CREATE_TIMEOUT_MS,
      );
    } finally {
      // dockerd may answer before it has read everything (a name taken): tar must not wait on a full pipe.
      tar.stdout.destroy();
      if (tar.exitCode === null) tar.kill();
    }
    expectOk(answer, `create plugin ${name}`); // dockerd's own reason first
    const code = await exited;
    if (code !== 0)
      throw new LanplugError(
        'Internal',
        `tar of ${contextDir} failed: ${Buffer.concat(tarErrors).toString().trim() || 'is tar installed?'}`,
      );
  }

  async set(name: string, settings: readonly string[]): Promise<void> {
    if (settings.length === 0) return;
    expectOk(
      await this.call('POST', `/plugins/${name}/set`, JSON.stringify(settings)),
      `set ${settings.join(' ')} on plugin ${name}`,
    );
  }

  async enable(name: string, timeoutSeconds = 30): Promise<void> {
    expectOk(await this.call('POST', `/plugins/${name}/enable?timeout=${timeoutSeconds}`), `enable plugin ${name}`);
  }

  /** force: even while networks use it (their containers keep their links: the kernel holds them). */
  async disable(name: string, force: boolean): Promise<void> {
    expectOk(await this.call('POST', `/plugins/${name}/disable${force ? '?force=1' : ''}`), `disable plugin ${name}`);
  }

  async remove(name: string, force: boolean): Promise<void> {
    expectOk(await this.call('DELETE', `/plugins/${name}${force ? '?force=1' : ''}`), `remove plugin ${name}`);
  }

  private call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: string): Promise<HttpAnswer> {
    return unixHttp(this.socketPath, method, path, body, CALL_TIMEOUT_MS).catch((err: unknown) => {
      throw new LanplugError(
        'Unavailable',
        `dockerd does not answer on ${this.socketPath} (${err instanceof Error ? err.message : String(err)}); is it running? (--docker-host)`,
      );
    });
  }
}

/** The body of a 2xx answer; otherwise dockerd's own message, after what was being done. */
function expectOk(answer: HttpAnswer, doing: string): string {
  if (answer.status >= 200 && answer.status < 300) return answer.body;
  let message = answer.body.trim();
  try {
    const parsed: unknown = JSON.parse(answer.body);
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { message?: unknown }).message === 'string')
      message = (parsed as { message: string }).message;
  } catch {
    // not JSON: the body as it is
  }
  throw new LanplugError(answer.status === 409 ? 'Conflict' : 'Internal', `${doing}: ${message}`);
}

function parsePluginView(body: string): PluginView {
  const parsed: unknown = JSON.parse(body);
  const object = (value: unknown): Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  const top = object(parsed);
  const settings = object(top.Settings);
  const strings = (value: unknown): string[] =>
    Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  const mounts = Array.isArray(settings.Mounts) ? settings.Mounts.map(object) : [];
  return {
    id: typeof top.Id === 'string' ? top.Id : '',
    name: typeof top.Name === 'string' ? top.Name : '',
    enabled: top.Enabled === true,
    env: strings(settings.Env),
    mounts: mounts.flatMap((m) =>
      typeof m.Name === 'string' && typeof m.Source === 'string' ? [{ name: m.Name, source: m.Source }] : [],
    ),
  };
}
