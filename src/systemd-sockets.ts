/**
 * Sockets passed in by systemd (socket activation, sd_listen_fds(3)): with
 * LISTEN_PID equal to this process, LISTEN_FDS descriptors start at 3, named
 * by LISTEN_FDNAMES (the units' FileDescriptorName=). With systemd holding
 * the sockets, dockerd finds them from boot and never waits for lanplug to
 * be ready: connections queue until the daemon accepts them.
 */
import type { Logger } from './log';

const SD_LISTEN_FDS_START = 3;

/** Descriptor by name (e.g. 'lanplug-macvlan'); empty when not socket-activated. */
export function systemdSockets(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  pid = process.pid,
): Map<string, number> {
  const sockets = new Map<string, number>();
  if (env['LISTEN_PID'] !== String(pid)) return sockets;
  const count = Number(env['LISTEN_FDS'] ?? '0');
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  if (!Number.isInteger(count) || count < 1) return sockets;
  for (let i = 0; i < count; i++) {
    const name = names[i] ?? '';
    if (name === '' || name === 'unknown') {
      log.warn('systemd passed a socket without a FileDescriptorName=; it is not served', {
        fd: SD_LISTEN_FDS_START + i,
      });
      continue;
    }
    sockets.set(name, SD_LISTEN_FDS_START + i);
  }
  // Not for children: they are not the process systemd meant.
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  return sockets;
}
