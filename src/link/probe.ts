/**
 * What this kernel can do, asked of the kernel itself: every link kind and
 * mode lanplug uses is created once in a new, empty network namespace that
 * disappears (with everything in it) when the probe's socket closes. Nothing
 * is guessed from module lists, and nothing in the host's namespaces changes.
 */
import { LanplugError } from '../errors';
import { FRESH_NAMESPACE } from '../netlink/socket';
import { IPVLAN_MODES } from './ipvlan';
import { MACVLAN_MODES } from './macvlan';
import { openRtnl } from './rtnl';

export interface KernelSupport {
  /** Each macvlan mode: null when it works, else the kernel's refusal. */
  macvlan: Record<string, string | null>;
  ipvlan: Record<string, string | null>;
  vlan: string | null;
  dummy: string | null;
}

export function probeKernel(): KernelSupport {
  const rtnl = openRtnl({ netns: FRESH_NAMESPACE });
  try {
    const support: KernelSupport = { macvlan: {}, ipvlan: {}, vlan: null, dummy: null };
    support.dummy = refusal(() => rtnl.createDummy({ name: 'probe-dummy' }));
    let n = 0;
    // A parent of its own per probe: passthru wants its parent alone, and the kernel keeps one ipvlan mode per parent.
    const parent = (): number => {
      const name = `probe-p${n++}`;
      return (support.dummy === null ? rtnl.createDummy({ name }) : rtnl.createBridge({ name })).index;
    };
    for (const mode of MACVLAN_MODES)
      support.macvlan[mode] = refusal(() => rtnl.createMacvlan({ name: `probe-m${n}`, parentIndex: parent(), mode }));
    for (const mode of IPVLAN_MODES) {
      support.ipvlan[mode] = refusal(() =>
        rtnl.createIpvlan({ name: `probe-i${n}`, parentIndex: parent(), mode, flag: 'bridge' }),
      );
    }
    support.vlan = refusal(() => rtnl.createVlan({ name: 'probe-v', parentIndex: parent(), vlanId: 10 }));
    return support;
  } finally {
    rtnl.close();
  }
}

function refusal(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (err instanceof LanplugError && err.code === 'Kernel') return err.message.replace(/^create \S+ link \S+: /, '');
    throw err;
  }
}
