/** `lanplug doctor`'s kernel checks: the link kinds and modes this kernel has, probed in a throw-away namespace. */
import { probeKernel } from '../../link/probe';
import type { Add } from './check';

export function kernelChecks(add: Add): void {
  let support;
  try {
    support = probeKernel();
  } catch (err) {
    add(
      'kernel',
      'fail',
      `could not probe the kernel in a throw-away namespace: ${err instanceof Error ? err.message : String(err)}`,
      'run as root',
    );
    return;
  }
  const modes = (table: Record<string, string | null>): { ok: string[]; missing: string[] } => ({
    ok: Object.keys(table).filter((m) => table[m] === null),
    missing: Object.keys(table).filter((m) => table[m] !== null),
  });
  const macvlan = modes(support.macvlan);
  if (macvlan.ok.length === 0)
    add('kernel: macvlan', 'fail', `no macvlan support: ${support.macvlan['bridge'] ?? ''}`, 'modprobe macvlan');
  else
    add(
      'kernel: macvlan',
      macvlan.missing.length === 0 ? 'ok' : 'warn',
      `modes ${macvlan.ok.join(', ')}${macvlan.missing.length === 0 ? '' : `; not ${macvlan.missing.join(', ')}`}`,
    );
  const ipvlan = modes(support.ipvlan);
  if (ipvlan.ok.length === 0)
    add('kernel: ipvlan', 'warn', 'no ipvlan support: lanplug-ipvlan networks cannot be created', 'modprobe ipvlan');
  else
    add(
      'kernel: ipvlan',
      ipvlan.missing.length === 0 ? 'ok' : 'warn',
      `modes ${ipvlan.ok.join(', ')}${ipvlan.missing.length === 0 ? '' : `; not ${ipvlan.missing.join(', ')}`}`,
    );
  if (support.vlan === null) add('kernel: 802.1Q', 'ok', 'VLAN sub-interfaces (-o parent=eth0.50)');
  else
    add(
      'kernel: 802.1Q',
      'warn',
      `no 802.1Q support: -o parent=eth0.50 cannot make a sub-interface (${support.vlan})`,
      'modprobe 8021q',
    );
  if (support.dummy === null) add('kernel: dummy', 'ok', 'private parents are dummy links, as with Docker');
  else
    add(
      'kernel: dummy',
      'warn',
      'no dummy driver: networks without a parent get an empty bridge as their private parent instead',
      'modprobe dummy',
    );
}
