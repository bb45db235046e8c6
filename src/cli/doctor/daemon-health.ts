/**
 * The running daemon's own view of its health (GET /healthz on the control
 * socket, api/control-health.ts): one line when every probe passed, one
 * line per probe that failed. Nothing when no daemon runs here (the socket
 * checks say so).
 */
import type { Health } from '../../observe/health';
import { isLocked } from '../../state/lock';
import { NotAskedError, type ControlClient } from '../control-client';
import type { Add, DoctorOptions } from './check';

export async function daemonHealthChecks(options: DoctorOptions, add: Add, control: ControlClient): Promise<void> {
  if (!isLocked(options.stateDir)) return;
  let health: Health;
  try {
    const answer = await control.ask('GET', '/healthz');
    if (answer.status === 404 || answer.status === 405) {
      add('daemon health', 'warn', 'the running daemon is older than /healthz', 'restart it with this version');
      return;
    }
    health = JSON.parse(answer.body) as Health;
    if (!Array.isArray(health.checks)) throw new Error(`an answer lanplug does not understand: ${answer.body}`);
  } catch (err) {
    if (err instanceof NotAskedError) {
      add('daemon health', 'warn', err.message);
      return;
    }
    add(
      'daemon health',
      'fail',
      `the daemon did not answer /healthz: ${err instanceof Error ? err.message : String(err)}`,
    );
    return;
  }
  const failed = health.checks.filter((c) => !c.ok);
  if (failed.length === 0)
    add(
      'daemon health',
      'ok',
      `all ${health.checks.length} probes pass: ${health.checks.map((c) => c.check).join(', ')}`,
    );
  for (const c of failed)
    add(`daemon health: ${c.check}`, 'fail', c.detail, 'journalctl -u lanplug (the daemon names the cause)');
}
