/**
 * DHCP through lanplug, against dnsmasq on the lab LAN, driven over the
 * plugin socket as dockerd drives it: what an address from the LAN's server
 * costs per attach (CreateEndpoint is the whole DISCOVER..ACK), and what a
 * held lease costs the daemon in memory (a row and a timer, no process);
 * and the lanplug-dhcp IPAM driver's RequestAddress for IPv4 and for IPv6
 * (a link of the container's MAC made, the exchange, the link removed).
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

/**
 * lanplug-dhcp, as dockerd drives it for a dual-stack `docker run`: RequestAddress
 * IPv4 then IPv6 (each with the endpoint's MAC), CreateEndpoint (takes the
 * leases over), Join; then Leave, DeleteEndpoint, ReleaseAddress twice.
 */
export async function dhcpIpamAttach(
  results: Results,
  sockets: { driver: string; ipam: string },
  network: { id: string; pool4: string; pool6: string },
  cycles: number,
): Promise<void> {
  const v4: number[] = [];
  const v6: number[] = [];
  for (let i = 0; i < cycles + 5; i++) {
    const mac = macOf(0xd9, i);
    const ids = { NetworkID: network.id, EndpointID: endpointId('d9', i) };
    const ask = async (poolId: string): Promise<[string, number]> => {
      const start = process.hrtime.bigint();
      const answer = await call(sockets.ipam, '/IpamDriver.RequestAddress', {
        PoolID: poolId,
        Address: '',
        Options: { 'com.docker.network.endpoint.macaddress': mac },
      });
      const json = answer.json as { Address?: unknown } | null;
      const address = json?.Address;
      if (typeof address !== 'string') throw new Error(`RequestAddress answered ${JSON.stringify(answer.json)}`);
      return [address, sinceMs(start)];
    };
    const [address4, ms4] = await ask(network.pool4);
    const [address6, ms6] = await ask(network.pool6);
    if (i >= 5) {
      v4.push(ms4);
      v6.push(ms6);
    }
    await call(sockets.driver, '/NetworkDriver.CreateEndpoint', {
      ...ids,
      Interface: { Address: address4, AddressIPv6: address6, MacAddress: mac },
      Options: {},
    });
    await call(sockets.driver, '/NetworkDriver.Join', { ...ids, SandboxKey: '/proc/1/ns/net', Options: {} });
    await call(sockets.driver, '/NetworkDriver.Leave', ids);
    await call(sockets.driver, '/NetworkDriver.DeleteEndpoint', ids);
    for (const [poolId, address] of [
      [network.pool4, address4],
      [network.pool6, address6],
    ] as const)
      await call(sockets.ipam, '/IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address.split('/')[0] });
  }
  results.add(
    'DHCP (dnsmasq on the LAN)',
    'lanplug-dhcp RequestAddress IPv4: link of the MAC, DISCOVER..ACK, ARP probe, link removed',
    v4,
  );
  results.add('DHCP (dnsmasq on the LAN)', 'lanplug-dhcp RequestAddress IPv6: link of the MAC, Solicit..Reply', v6);
}
