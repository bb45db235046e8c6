/**
 * `lanplug forget NETWORK NAME`: drops an identity's reservation
 * (ipam/reservations.ts) through the running daemon's control socket: the
 * daemon owns the store and, on shared pools, the etcd session the kept
 * claims are freed in.
 */
import { checkedControlSocket } from './control-client';
import { unixHttp } from '../api/unix-http';
import { isLocked } from '../state/lock';

/** One line saying what was freed; a one-line error when refused or when no daemon runs. */
export async function askForget(stateDir: string, network: string, name: string): Promise<string> {
  if (!isLocked(stateDir))
    throw new Error(
      `no lanplug daemon runs on ${stateDir}: lanplug forget asks the running daemon (see lanplug status)`,
    );
  const answer = await unixHttp(
    checkedControlSocket(stateDir),
    'POST',
    '/Lanplug.Forget',
    JSON.stringify({ Network: network, Name: name }),
    30_000,
  );
  if (answer.status === 404 && answer.body.includes('is not implemented'))
    throw new Error('the running daemon is older than lanplug forget: restart it with this version');
  const parsed = JSON.parse(answer.body) as { Err?: unknown; IPv4?: string | null; IPv6?: string | null };
  if (answer.status !== 200) throw new Error(typeof parsed.Err === 'string' ? parsed.Err : answer.body);
  const freed = [parsed.IPv4, parsed.IPv6].filter((a): a is string => typeof a === 'string');
  return `forgot lanplug.identity=${name} on ${network}${freed.length === 0 ? '' : `: ${freed.join(', ')} free again`}\n`;
}
