/** `lanplug status`: the networks and endpoints lanplug keeps, read without changing anything. */
import { stateAt } from '../dhcp/lease-state';
import { shortId } from '../model/network';
import { formatPrefix } from '../net/address';
import { leaseExpiresAt, type Lease, type LeaseRecord } from '../model/lease';
import { SqliteStore } from '../state/sqlite';

export function formatStatus(stateDir: string): string {
  const store = SqliteStore.openReadOnly(stateDir);
  try {
    const networks = store.listNetworks();
    const lostHere = store.listLostAddresses();
    const lines: string[] = [];
    if (networks.length === 0) lines.push('no lanplug networks');
    for (const { spec, parentCreated, cniName } of networks) {
      const mode = spec.mode.kind === 'macvlan' ? spec.mode.mode : `${spec.mode.mode}/${spec.mode.flag}`;
      const subnets =
        spec.dhcp !== null ? 'dhcp' : [...spec.ipv4, ...spec.ipv6].map((s) => formatPrefix(s.pool)).join(',');
      lines.push(
        `${cniName === undefined ? shortId(spec.networkId) : `cni:${cniName}`}  lanplug-${spec.mode.kind}  mode=${mode}  parent=${spec.parent.name}${parentCreated ? ' (created by lanplug)' : ''}  subnets=${subnets || '-'}${spec.internal ? '  internal' : ''}`,
      );
      for (const ep of store.listEndpoints(spec.networkId)) {
        const addresses = [ep.ipv4, ep.ipv6].flatMap((a) => (a === null ? [] : [formatPrefix(a)])).join(',');
        const where =
          ep.sandbox === undefined
            ? `link=${ep.linkName}`
            : `container=${shortId(ep.sandbox.containerId)}  ${ep.sandbox.ifname} in ${ep.sandbox.netns}`;
        lines.push(`  endpoint ${shortId(ep.endpointId)}  ${where}  mac=${ep.mac ?? '-'}  ${addresses}`);
        for (const lost of lostHere.filter((l) => l.endpointId === ep.endpointId))
          lines.push(
            `    lost ${lost.address}: reclaimed by host ${lost.reclaimedBy} at ${lost.reclaimedAt} while this host was away; a container of host ${lost.heldBy} holds it now (not defended here: restart this container for a new address)`,
          );
        const record = store.getLease(spec.networkId, ep.endpointId);
        for (const lease of record?.leases ?? [])
          if (record !== null) lines.push(`    ${describeLease(record, lease)}`);
      }
    }
    for (const leftover of store.listLeftovers())
      lines.push(`leftover ${leftover.kind} ${leftover.name}: ${leftover.reason}`);
    return lines.join('\n') + '\n';
  } finally {
    store.close();
  }
}

/** One line per lease: what an operator needs to see whether DHCP is healthy. */
export function describeLease(record: LeaseRecord, lease: Lease): string {
  const at = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
  return [
    `${lease.family === 4 ? 'dhcp' : 'dhcpv6'} lease ${formatPrefix(lease.address)}`,
    `server=${lease.serverId.text}`,
    `router=${lease.router?.text ?? '-'}`,
    `dns=${lease.dns.map((a) => a.text).join(',') || '-'}`,
    lease.family === 4 ? `client-id=${record.identity.clientId}` : `duid=${record.identity.duid}`,
    `hostname=${record.identity.hostname ?? '-'}`,
    `state=${stateAt(lease, Date.now())}`,
    `bound=${at(lease.boundAt)}`,
    `expires=${at(leaseExpiresAt(lease))}`,
    `renewed=${record.renewedAt === null ? 'never' : at(record.renewedAt)}`,
    `failures=${record.failures}${record.lastError === null ? '' : ` (${record.lastError})`}`,
  ].join('  ');
}
