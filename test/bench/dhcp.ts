/**
 * DHCP through lanplug, against dnsmasq on the lab LAN, driven over the
 * plugin socket as dockerd drives it: what an address from the LAN's server
 * costs per attach (CreateEndpoint is the whole DISCOVER..ACK), and what a
 * held lease costs the daemon in memory (a row and a timer, no process).
 */
import { call, rssMB } from './driver-api';
import { sinceMs, type Results } from './stats';

function endpointId(prefix: string, i: number): string {
  return `${prefix}${i.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

function macOf(prefix: number, i: number): string {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return `02:${hex(prefix)}:00:${hex((i >> 16) & 0xff)}:${hex((i >> 8) & 0xff)}:${hex(i & 0xff)}`;
}

export async function dhcpAttach(
  results: Results,
  socket: string,
  networks: { probed: string; unprobed: string },
  daemonPid: number,
  options: { cycles: number; held: number },
): Promise<void> {
  const attach = async (networkId: string, id: string, mac: string): Promise<number> => {
    const ids = { NetworkID: networkId, EndpointID: id };
    const start = process.hrtime.bigint();
    await call(socket, '/NetworkDriver.CreateEndpoint', {
      ...ids,
      Interface: { Address: '', AddressIPv6: '', MacAddress: mac },
      Options: {},
    });
    const acquired = sinceMs(start);
    // A namespace file that exists, so that the lease keeper's watchdog keeps the lease.
    await call(socket, '/NetworkDriver.Join', { ...ids, SandboxKey: '/proc/1/ns/net', Options: {} });
    return acquired;
  };
  const detach = async (networkId: string, id: string): Promise<void> => {
    const ids = { NetworkID: networkId, EndpointID: id };
    await call(socket, '/NetworkDriver.Leave', ids);
    await call(socket, '/NetworkDriver.DeleteEndpoint', ids);
  };
  const cycle = async (networkId: string, prefix: number, cycles: number): Promise<number[]> => {
    const samples: number[] = [];
    for (let i = 0; i < cycles + 5; i++) {
      const id = endpointId(prefix.toString(16), i);
      const ms = await attach(networkId, id, macOf(prefix, i));
      if (i >= 5) samples.push(ms);
      await detach(networkId, id);
    }
    return samples;
  };
  results.add(
    'DHCP (dnsmasq on the LAN)',
    'acquire: CreateEndpoint = DISCOVER..ACK, then the ARP probe of the address (default)',
    await cycle(networks.probed, 0xd5, options.cycles),
  );
  results.add(
    'DHCP (dnsmasq on the LAN)',
    'acquire with lanplug.conflict=off: DISCOVER..ACK only',
    await cycle(networks.unprobed, 0xd7, options.cycles),
  );

  const before = rssMB(daemonPid);
  const held: string[] = [];
  for (let i = 0; i < options.held; i++) {
    const id = endpointId('d6', i);
    await attach(networks.unprobed, id, macOf(0xd6, i));
    held.push(id);
  }
  const after = rssMB(daemonPid);
  results.figure(`daemon RSS holding ${options.held} DHCP leases`, after, 'MB');
  results.figure('daemon memory per held lease', ((after - before) * 1e3) / options.held, 'kB');
  for (const id of held) await detach(networks.unprobed, id);
}
