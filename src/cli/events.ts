/**
 * `lanplug events`: what the running daemon did and saw (metrics/events.ts),
 * read from its control socket as NDJSON: the kept events (from `--since`
 * ago), then with `--follow` each new one as it comes, until the daemon
 * stops or the user does (Ctrl-C). Lines for people, or the NDJSON itself.
 */
import { checkedControlSocket } from './control-client';
import { request } from 'node:http';
import type { DaemonEvent } from '../metrics/events';
import { isLocked } from '../state/lock';
import { UsageError } from './flags';

/** `90`, `90s`, `15m`, `2h`, `1d` -> milliseconds. */
export function parseSince(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text);
  if (m === null) throw new UsageError(`--since must be a duration such as 90s, 15m, 2h or 1d; got '${text}'`);
  const unit = { '': 1, s: 1, m: 60, h: 3_600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit * 1000;
}

/** One event as a line for people: time, kind, then its fields as key=value. */
export function formatEvent(event: DaemonEvent): string {
  const at = new Date(event.at).toISOString().replace(/\.\d+Z$/, 'Z');
  const fields = Object.entries(event.fields).map(
    ([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`,
  );
  return [at, event.kind, ...fields].join(' ');
}

/**
 * Streams the daemon's events to `out` (NDJSON as it came, or formatted lines); resolves when the
 * answer ends: at once without follow, when the daemon stops with it.
 */
export function streamEvents(
  stateDir: string,
  options: { sinceMs: number | null; follow: boolean; json: boolean },
  out: (text: string) => void,
): Promise<void> {
  if (!isLocked(stateDir))
    throw new Error(`no lanplug daemon runs on ${stateDir}: lanplug events asks the running daemon`);
  const since = options.sinceMs === null ? 0 : Date.now() - options.sinceMs;
  const path = `/events?since=${since}${options.follow ? '&follow=1' : ''}`;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: checkedControlSocket(stateDir), path, method: 'GET' }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(
          new Error(
            res.statusCode === 404 || res.statusCode === 405
              ? 'the running daemon is older than lanplug events: restart it with this version'
              : `the daemon answered ${res.statusCode ?? '?'} for its events`,
          ),
        );
        return;
      }
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines.filter((l) => l !== ''))
          out(options.json ? `${line}\n` : `${formatEvent(JSON.parse(line) as DaemonEvent)}\n`);
      });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
