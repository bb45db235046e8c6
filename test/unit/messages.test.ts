/**
 * Every message a user can see, pinned word for word: one line each, in
 * Docker's wording where Docker has one, with one piece of context per layer
 * (the kernel layer names the link and errno, the driver adds the network and
 * parent, the API adds nothing). Kernel failures are injected into the
 * in-memory link table with the real layer's message shape; the kernel lane
 * shows the real layer producing that shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetworkDriver } from '../../src/driver/network-driver';
import type { CreateNetworkRequest } from '../../src/driver/requests';
import { LanplugError } from '../../src/errors';
import { silentLogger } from '../../src/log';
import type { DriverKind } from '../../src/model/network';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { EBUSY, EEXIST } from '../../src/netlink/errno';
import { SqliteStore } from '../../src/state/sqlite';
import { FakeRtnl } from '../support/fake-rtnl';

const NET = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const EP1 = '1'.repeat(64);
const EP2 = '2'.repeat(64);
const ALL_FEATURES = { vlan: true, ipvlan: true, dummy: true };

function network(
  id: string,
  options: Record<string, string>,
  driver: DriverKind = 'macvlan',
  ipv6 = false,
): CreateNetworkRequest {
  return {
    networkId: id,
    driver,
    options,
    ipv4: [{ pool: parsePrefix('172.16.86.0/24'), gateway: parseAddress('172.16.86.1') }],
    ipv6: ipv6 ? [{ pool: parsePrefix('2001:db8::/64'), gateway: null }] : [],
    internal: false,
    auxAddresses: new Map(),
  };
}

function endpoint(id: string, address: string, mac: string | null = null) {
  return { networkId: NET, endpointId: id, ipv4: parsePrefix(address), ipv6: null, mac };
}

interface Case {
  name: string;
  features?: typeof ALL_FEATURES;
  /** Puts the driver and the link table in the state the case needs. */
  given?: (driver: NetworkDriver, rtnl: FakeRtnl) => void;
  when: (driver: NetworkDriver) => unknown;
  message: string;
}

const CASES: Case[] = [
  // ---- docker network create: Docker's own wording
  {
    name: 'parent missing',
    when: (d) => d.createNetwork(network(NET, { parent: 'nosuch0' })),
    message: '-o parent interface was not found on the host: nosuch0',
  },
  {
    name: 'vlan base missing',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth9.10' })),
    message: '-o parent interface was not found on the host: eth9',
  },
  {
    name: 'bad macvlan mode',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', macvlan_mode: 'bogus' })),
    message:
      "requested macvlan mode 'bogus' is not valid, 'bridge' mode is the macvlan driver default; accepted: bridge, vepa, private, passthru",
  },
  {
    name: 'bad ipvlan mode',
    features: ALL_FEATURES,
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', ipvlan_mode: 'l4' }, 'ipvlan')),
    message: "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default; accepted: l2, l3, l3s",
  },
  {
    name: 'bad ipvlan flag',
    features: ALL_FEATURES,
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', ipvlan_flag: 'open' }, 'ipvlan')),
    message:
      "requested ipvlan flag 'open' is not valid, 'bridge' is the ipvlan driver default; accepted: bridge, private, vepa",
  },
  {
    name: 'vlan id out of range',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0.5000' })),
    message: 'vlan id must be between 1-4094, received: 5000',
  },
  {
    name: 'vlan parent of the wrong form',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0.x' })),
    message: 'required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received eth0.x',
  },
  {
    name: 'passthru on a parent another network uses',
    given: (d) => d.createNetwork(network(OTHER, { parent: 'eth0' })),
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', macvlan_mode: 'passthru' })),
    message: 'cannot use mode passthru, macvlan network bbbbbbbbbbbb is already using parent interface eth0',
  },
  {
    name: 'ipvlan with a custom MAC',
    features: ALL_FEATURES,
    given: (d) => d.createNetwork(network(NET, { parent: 'eth0' }, 'ipvlan')),
    when: (d) => d.createEndpoint('ipvlan', endpoint(EP1, '172.16.86.2/24', '02:42:ac:10:56:02')),
    message: 'ipvlan interfaces do not support custom mac address assignment',
  },
  // ---- lanplug's own refusals
  {
    name: 'unknown option key',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', macvlan_mod: 'private' })),
    message:
      "unknown option 'macvlan_mod' for lanplug-macvlan; accepted options: parent, macvlan_mode, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  },
  {
    name: 'dhcp with a subnet from Docker',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', dhcp: 'true' })),
    message:
      "-o dhcp=true takes IPv4 addresses from the LAN's DHCP server; create the network with --ipam-driver null and without --subnet (got 172.16.86.0/24)",
  },
  {
    name: 'dhcp timeout out of range',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', dhcp: 'true', 'dhcp.timeout': '60s' })),
    message:
      '-o dhcp.timeout=60s is not valid; expected seconds from 1 to 25, such as 10s (Docker gives a plugin 30 s)',
  },
  {
    name: 'empty parent',
    when: (d) => d.createNetwork(network(NET, { parent: '' })),
    message: '-o parent is empty; expected an interface name such as -o parent=eth0',
  },
  {
    name: 'loopback parent',
    when: (d) => d.createNetwork(network(NET, { parent: 'lo' })),
    message:
      '-o parent=lo is the loopback interface, which cannot carry macvlan or ipvlan links; use an Ethernet interface such as eth0',
  },
  {
    name: 'over-long parent',
    when: (d) => d.createNetwork(network(NET, { parent: 'abcdefghijklmnop' })),
    message: "-o parent interface name 'abcdefghijklmnop' is 16 bytes long; Linux interface names are 1-15 bytes",
  },
  {
    name: 'parent with a slash',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0/1' })),
    message: "-o parent interface name 'eth0/1' is not valid: interface names may not contain '/', ':' or whitespace",
  },
  {
    name: 'mtu not a number',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', 'com.docker.network.driver.mtu': 'big' })),
    message: '-o com.docker.network.driver.mtu=big is not valid; expected a whole number such as 1500',
  },
  {
    name: 'mtu below the IPv4 minimum',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', 'com.docker.network.driver.mtu': '60' })),
    message: '-o com.docker.network.driver.mtu=60 is below the minimum of 68 for IPv4',
  },
  {
    name: 'mtu below the IPv6 minimum',
    when: (d) =>
      d.createNetwork(network(NET, { parent: 'eth0', 'com.docker.network.driver.mtu': '1200' }, 'macvlan', true)),
    message: '-o com.docker.network.driver.mtu=1200 is below the minimum of 1280 for a network with IPv6',
  },
  {
    name: 'mtu above the parent',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', 'com.docker.network.driver.mtu': '9000' })),
    message: '-o com.docker.network.driver.mtu=9000 is larger than the MTU of parent eth0 (1500)',
  },
  {
    name: 'a network on a passthru parent',
    given: (d) => d.createNetwork(network(OTHER, { parent: 'eth0', macvlan_mode: 'passthru' })),
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0' })),
    message: 'macvlan network bbbbbbbbbbbb is already using parent interface eth0 in mode passthru',
  },
  {
    name: 'macvlan on an ipvlan parent',
    features: ALL_FEATURES,
    given: (d) => d.createNetwork(network(OTHER, { parent: 'eth0' }, 'ipvlan')),
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0' })),
    message:
      'ipvlan network bbbbbbbbbbbb is already using parent interface eth0; the kernel cannot hold macvlan and ipvlan links on one parent, so lanplug-macvlan cannot use it',
  },
  {
    name: 'ipvlan mode mismatch on a shared parent',
    features: ALL_FEATURES,
    given: (d) => d.createNetwork(network(OTHER, { parent: 'eth0' }, 'ipvlan')),
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0', ipvlan_mode: 'l3' }, 'ipvlan')),
    message:
      'ipvlan network bbbbbbbbbbbb is already using parent interface eth0 in mode l2 flag bridge; the kernel keeps one ipvlan mode per parent, so this network must use the same (requested l3 flag bridge)',
  },
  {
    name: 'no 8021q in the kernel',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0.50' })),
    message:
      'cannot create 802.1Q sub-interface eth0.50: this kernel has no 802.1Q VLAN support (load the 8021q module, or use a kernel built with CONFIG_VLAN_8021Q)',
  },
  {
    name: 'no ipvlan in the kernel',
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0' }, 'ipvlan')),
    message:
      'this kernel has no ipvlan support (load the ipvlan module, or use a kernel built with CONFIG_IPVLAN); lanplug-ipvlan cannot create links',
  },
  {
    name: 'a known network id for the other driver',
    given: (d) => d.createNetwork(network(NET, { parent: 'eth0' })),
    when: (d) => d.createNetwork(network(NET, { parent: 'eth0' }, 'ipvlan')),
    message: 'network aaaaaaaaaaaa already exists as a lanplug-macvlan network',
  },
  {
    name: 'a network id that is not an id',
    when: (d) => d.createNetwork(network('../../etc', {})),
    message: "network id '../../etc' is not valid; expected at least 12 letters or digits",
  },
  {
    name: 'a second container on passthru',
    given: (d) => {
      d.createNetwork(network(NET, { parent: 'eth0', macvlan_mode: 'passthru' }));
      d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24'));
    },
    when: (d) => d.createEndpoint('macvlan', endpoint(EP2, '172.16.86.3/24')),
    message:
      'macvlan network aaaaaaaaaaaa is in mode passthru and parent eth0 is already given to endpoint 111111111111; passthru allows one container per parent',
  },
  {
    name: 'a multicast MAC',
    given: (d) => d.createNetwork(network(NET, { parent: 'eth0' })),
    when: (d) => d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24', '01:00:5e:00:00:01')),
    message: "MAC address '01:00:5e:00:00:01' is a multicast address; an endpoint needs a unicast MAC",
  },
  {
    name: 'an endpoint on an unknown network',
    when: (d) => d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24')),
    message: 'network aaaaaaaaaaaa is not a lanplug-macvlan network known to this host',
  },
  {
    name: 'join of an unknown endpoint',
    given: (d) => d.createNetwork(network(NET, { parent: 'eth0' })),
    when: (d) => d.join('macvlan', NET, EP1),
    message: 'endpoint 111111111111 not found in network aaaaaaaaaaaa',
  },
  // ---- kernel failures: the link and errno from the kernel layer, the network and parent from the driver
  {
    name: 'join when the parent is gone',
    given: (d, rtnl) => {
      d.createNetwork(network(NET, { parent: 'eth0' }));
      d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24'));
      const eth0 = rtnl.getLink('eth0');
      if (eth0 !== null) rtnl.deleteLink(eth0);
    },
    when: (d) => d.join('macvlan', NET, EP1),
    message: 'network aaaaaaaaaaaa on parent eth0: -o parent interface was not found on the host: eth0',
  },
  {
    name: 'the kernel refuses the endpoint link',
    given: (d, rtnl) => {
      d.createNetwork(network(NET, { parent: 'eth0' }));
      d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24'));
      rtnl.fail('create', 'lp-111111111111', EEXIST);
    },
    when: (d) => d.join('macvlan', NET, EP1),
    message: 'network aaaaaaaaaaaa on parent eth0: create macvlan link lp-111111111111: EEXIST (File exists)',
  },
  {
    name: 'the kernel refuses to delete the endpoint link',
    given: (d, rtnl) => {
      d.createNetwork(network(NET, { parent: 'eth0' }));
      d.createEndpoint('macvlan', endpoint(EP1, '172.16.86.2/24'));
      d.join('macvlan', NET, EP1);
      rtnl.fail('delete', 'lp-111111111111', EBUSY);
    },
    when: (d) => d.deleteEndpoint(NET, EP1),
    message: 'network aaaaaaaaaaaa on parent eth0: delete link lp-111111111111: EBUSY (Device or resource busy)',
  },
  {
    name: 'two endpoint links that will not go at network removal',
    given: (d, rtnl) => {
      d.createNetwork(network(NET, { parent: 'eth0' }));
      for (const [id, address] of [
        [EP1, '172.16.86.2/24'],
        [EP2, '172.16.86.3/24'],
      ] as const) {
        d.createEndpoint('macvlan', endpoint(id, address));
        d.join('macvlan', NET, id);
      }
      rtnl.fail('delete', 'lp-111111111111', EBUSY);
      rtnl.fail('delete', 'lp-222222222222', EBUSY);
    },
    when: (d) => d.deleteNetwork(NET),
    message:
      'network aaaaaaaaaaaa on parent eth0: 2 steps failed: endpoint 111111111111: delete link lp-111111111111: EBUSY (Device or resource busy); endpoint 222222222222: delete link lp-222222222222: EBUSY (Device or resource busy)',
  },
  {
    name: 'a private parent the kernel will not make',
    given: (_d, rtnl) => rtnl.fail('create', 'dm-aaaaaaaaaaaa', EBUSY),
    when: (d) => d.createNetwork(network(NET, {})),
    message:
      'network aaaaaaaaaaaa on parent dm-aaaaaaaaaaaa: create bridge link dm-aaaaaaaaaaaa: EBUSY (Device or resource busy)',
  },
];

for (const c of CASES) {
  test(`message: ${c.name}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'lanplug-messages-'));
    const store = SqliteStore.open(dir);
    try {
      const rtnl = new FakeRtnl(c.features);
      const driver = new NetworkDriver(rtnl, store, silentLogger);
      c.given?.(driver, rtnl);
      let caught: unknown = null;
      try {
        c.when(driver);
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof LanplugError, `expected a refusal, got ${String(caught)}`);
      assert.equal(caught.message, c.message);
      assert.doesNotMatch(caught.message, /[\r\n]/);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
