/**
 * Named points where a test makes the daemon die as a crash would: SIGKILL,
 * no cleanup, no reply. `LANPLUG_CRASH_AT=join:link-created lanplug daemon`
 * dies right after Join has created the endpoint link and before it answers.
 * Inert unless that variable is set; read once at start.
 */
export type CrashPoint =
  | 'create-network:parent-ready'
  | 'create-endpoint:recorded'
  | 'join:link-created'
  | 'delete-endpoint:row-dropped'
  | 'cni-add:lease-recorded'
  | 'delete-network:rows-dropped';

const armed = process.env['LANPLUG_CRASH_AT'];

export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL');
}
