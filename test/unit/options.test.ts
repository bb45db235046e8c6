import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetworkOptions, parseParent } from '../../src/driver/options';
import { LanplugError } from '../../src/errors';

function refuses(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LanplugError, `expected a LanplugError, got ${String(err)}`);
    assert.equal(err.message, message);
    assert.equal(err.code, 'InvalidArgument');
    return true;
  });
}

test('macvlan defaults: bridge mode, no parent, no mtu, no host access, conflicts refused, 3 announcements 1 s apart', () => {
  assert.deepEqual(parseNetworkOptions('macvlan', {}), {
    mode: { kind: 'macvlan', mode: 'bridge' },
    parent: { kind: 'none' },
    mtu: null,
    hostAccess: false,
    conflict: 'refuse',
    announce: { count: 3, intervalMs: 1000 },
    dhcp: null,
    slaac: null,
    mdns: false,
  });
});

test("-o lanplug.mdns: true or false, on macvlan beside lanplug's own link (not passthru), not on ipvlan", () => {
  assert.equal(parseNetworkOptions('macvlan', { parent: 'eth0', 'lanplug.mdns': 'true' }).mdns, true);
  assert.equal(parseNetworkOptions('macvlan', { parent: 'eth0', 'lanplug.mdns': 'false' }).mdns, false);
  refuses(
    () => parseNetworkOptions('macvlan', { 'lanplug.mdns': 'yes' }),
    '-o lanplug.mdns=yes is not valid; expected true or false',
  );
  refuses(
    () => parseNetworkOptions('macvlan', { macvlan_mode: 'passthru', 'lanplug.mdns': 'true' }),
    "-o lanplug.mdns=true needs a macvlan mode with lanplug's own link beside the containers (bridge, vepa, private), not passthru",
  );
  refuses(
    () => parseNetworkOptions('ipvlan', { 'lanplug.mdns': 'true' }),
    "-o lanplug.mdns=true is for lanplug-macvlan networks: on ipvlan lanplug's only link on the LAN is the parent, and it does not read the host's own traffic",
  );
});

test('-o ipv6=slaac: route information up to ipv6.rt_info_max_plen (0..128, none by default); other values refused', () => {
  assert.deepEqual(parseNetworkOptions('macvlan', { parent: 'eth0', ipv6: 'slaac' }).slaac, { rtInfoMaxPlen: 0 });
  assert.deepEqual(
    parseNetworkOptions('ipvlan', { parent: 'eth0', ipv6: 'slaac', 'ipv6.rt_info_max_plen': '64' }).slaac,
    { rtInfoMaxPlen: 64 },
  );
  refuses(
    () => parseNetworkOptions('macvlan', { ipv6: 'slaac', 'ipv6.rt_info_max_plen': '129' }),
    '-o ipv6.rt_info_max_plen=129 is not valid; expected a whole number from 0 to 128',
  );
  refuses(
    () => parseNetworkOptions('macvlan', { 'ipv6.rt_info_max_plen': '64' }),
    '-o ipv6.rt_info_max_plen needs -o ipv6=slaac',
  );
  refuses(
    () => parseNetworkOptions('macvlan', { ipv6: 'dhcp6' }),
    "-o ipv6=dhcp6 is not valid; accepted: slaac (for IPv6 from Docker's IPAM use --ipv6 --subnet, from DHCPv6 --ipam-driver lanplug-dhcp --ipv6)",
  );
});

test('-o dhcp=true: a 10 s budget by default, dhcp.timeout from 1 to 25 s, nothing else', () => {
  assert.deepEqual(parseNetworkOptions('macvlan', { parent: 'eth0', dhcp: 'true' }).dhcp, {
    ipv4: true,
    ipv6: false,
    timeoutMs: 10_000,
    askedBy: 'driver',
  });
  assert.deepEqual(parseNetworkOptions('ipvlan', { parent: 'eth0', dhcp: 'true', 'dhcp.timeout': '3s' }).dhcp, {
    ipv4: true,
    ipv6: false,
    timeoutMs: 3_000,
    askedBy: 'driver',
  });
  assert.deepEqual(parseNetworkOptions('macvlan', { dhcp: 'true', 'dhcp.timeout': '25' }).dhcp, {
    ipv4: true,
    ipv6: false,
    timeoutMs: 25_000,
    askedBy: 'driver',
  });
  refuses(
    () => parseNetworkOptions('macvlan', { dhcp: 'true', 'dhcp.timeout': '30s' }),
    '-o dhcp.timeout=30s is not valid; expected seconds from 1 to 25, such as 10s (Docker gives a plugin 30 s)',
  );
  refuses(() => parseNetworkOptions('macvlan', { 'dhcp.timeout': '5s' }), '-o dhcp.timeout needs -o dhcp=true');
  refuses(() => parseNetworkOptions('macvlan', { dhcp: 'yes' }), '-o dhcp=yes is not valid; expected true or false');
});

test('--ipam-driver lanplug-dhcp: DHCP without -o dhcp, dhcp.timeout honoured, -o dhcp=true refused', () => {
  assert.deepEqual(parseNetworkOptions('macvlan', { parent: 'eth0', 'dhcp.timeout': '5s' }, true).dhcp, {
    ipv4: true,
    ipv6: false,
    timeoutMs: 5_000,
    askedBy: 'ipam',
  });
  refuses(
    () => parseNetworkOptions('macvlan', { parent: 'eth0', dhcp: 'true' }, true),
    '-o dhcp=true is for --ipam-driver null; with --ipam-driver lanplug-dhcp the addresses come from DHCP already, leave it out',
  );
});

test('every macvlan mode is accepted', () => {
  for (const mode of ['bridge', 'vepa', 'private', 'passthru'] as const) {
    assert.deepEqual(parseNetworkOptions('macvlan', { macvlan_mode: mode, parent: 'eth0' }).mode, {
      kind: 'macvlan',
      mode,
    });
  }
});

test('ipvlan defaults to l2 bridge and accepts every mode and flag', () => {
  assert.deepEqual(parseNetworkOptions('ipvlan', { parent: 'eth0' }).mode, {
    kind: 'ipvlan',
    mode: 'l2',
    flag: 'bridge',
  });
  for (const mode of ['l2', 'l3', 'l3s'] as const) {
    for (const flag of ['bridge', 'private', 'vepa'] as const) {
      assert.deepEqual(parseNetworkOptions('ipvlan', { ipvlan_mode: mode, ipvlan_flag: flag }).mode, {
        kind: 'ipvlan',
        mode,
        flag,
      });
    }
  }
});

test('bad macvlan mode uses Docker wording', () => {
  refuses(
    () => parseNetworkOptions('macvlan', { parent: 'eth0', macvlan_mode: 'bogus' }),
    "requested macvlan mode 'bogus' is not valid, 'bridge' mode is the macvlan driver default; accepted: bridge, vepa, private, passthru",
  );
});

test('bad ipvlan mode and flag use Docker wording', () => {
  refuses(
    () => parseNetworkOptions('ipvlan', { ipvlan_mode: 'l4' }),
    "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default; accepted: l2, l3, l3s",
  );
  refuses(
    () => parseNetworkOptions('ipvlan', { ipvlan_flag: 'open' }),
    "requested ipvlan flag 'open' is not valid, 'bridge' is the ipvlan driver default; accepted: bridge, private, vepa",
  );
});

test('unknown option keys are refused with the accepted list; Docker namespace keys pass', () => {
  refuses(
    () => parseNetworkOptions('macvlan', { parent: 'eth0', macvlan_mod: 'private' }),
    "unknown option 'macvlan_mod' for lanplug-macvlan; accepted options: parent, macvlan_mode, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  );
  refuses(
    () => parseNetworkOptions('macvlan', { ipvlan_mode: 'l2' }),
    "unknown option 'ipvlan_mode' for lanplug-macvlan; accepted options: parent, macvlan_mode, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  );
  refuses(
    () => parseNetworkOptions('ipvlan', { macvlan_mode: 'bridge' }),
    "unknown option 'macvlan_mode' for lanplug-ipvlan; accepted options: parent, ipvlan_mode, ipvlan_flag, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  );
  assert.doesNotThrow(() => parseNetworkOptions('macvlan', { 'com.docker.network.bridge.name': 'x' }));
});

test('parent names are checked before the kernel sees them', () => {
  refuses(() => parseParent(''), '-o parent is empty; expected an interface name such as -o parent=eth0');
  refuses(
    () => parseParent('lo'),
    '-o parent=lo is the loopback interface, which cannot carry macvlan or ipvlan links; use an Ethernet interface such as eth0',
  );
  refuses(
    () => parseParent('abcdefghijklmnop'),
    "-o parent interface name 'abcdefghijklmnop' is 16 bytes long; Linux interface names are 1-15 bytes",
  );
  refuses(
    () => parseParent('eth0/1'),
    "-o parent interface name 'eth0/1' is not valid: interface names may not contain '/', ':' or whitespace",
  );
  refuses(
    () => parseParent('eth 0'),
    "-o parent interface name 'eth 0' is not valid: interface names may not contain '/', ':' or whitespace",
  );
  refuses(() => parseParent('..'), "-o parent interface name '..' is not a valid interface name");
  assert.deepEqual(parseParent('eth0'), { kind: 'plain', name: 'eth0' });
});

test('802.1Q parents: name.vlan_id with Docker wording for bad forms', () => {
  assert.deepEqual(parseParent('eth0.50'), { kind: 'vlan', name: 'eth0.50', base: 'eth0', vlanId: 50 });
  refuses(() => parseParent('eth0.5000'), 'vlan id must be between 1-4094, received: 5000');
  refuses(() => parseParent('eth0.0'), 'vlan id must be between 1-4094, received: 0');
  for (const bad of ['eth0.x', 'eth0.1.2', '.10', 'eth0.']) {
    refuses(
      () => parseParent(bad),
      `required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received ${bad}`,
    );
  }
});

test('mtu must be a whole number', () => {
  assert.equal(parseNetworkOptions('macvlan', { 'com.docker.network.driver.mtu': '1400' }).mtu, 1400);
  refuses(
    () => parseNetworkOptions('macvlan', { 'com.docker.network.driver.mtu': 'big' }),
    '-o com.docker.network.driver.mtu=big is not valid; expected a whole number such as 1500',
  );
});
