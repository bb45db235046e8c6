/**
 * Bad input through the real `docker network create`: each case gets its
 * exact one-line error and leaves no network, no link and no state row.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoLanplugLinks, lanplugStatus, resetDocker, useLab } from './helpers';

const lab = useLab();

const SUBNET = ['--subnet=172.16.86.0/24', '--gateway=172.16.86.1'];

/** [what, -o options, the exact message lanplug answers] */
const CASES: [string, string[], string][] = [
  ['parent missing on the host', ['parent=nosuch0'], '-o parent interface was not found on the host: nosuch0'],
  ['parent empty', ['parent='], '-o parent is empty; expected an interface name such as -o parent=eth0'],
  [
    'loopback parent',
    ['parent=lo'],
    '-o parent=lo is the loopback interface, which cannot carry macvlan or ipvlan links; use an Ethernet interface such as eth0',
  ],
  [
    'over-long parent',
    ['parent=abcdefghijklmnop'],
    "-o parent interface name 'abcdefghijklmnop' is 16 bytes long; Linux interface names are 1-15 bytes",
  ],
  [
    'parent with a slash',
    ['parent=eth0/1'],
    "-o parent interface name 'eth0/1' is not valid: interface names may not contain '/', ':' or whitespace",
  ],
  [
    'bad macvlan mode',
    ['parent=eth0', 'macvlan_mode=bogus'],
    "requested macvlan mode 'bogus' is not valid, 'bridge' mode is the macvlan driver default; accepted: bridge, vepa, private, passthru",
  ],
  [
    'typo in an option key',
    ['parent=eth0', 'macvlan_mod=private'],
    "unknown option 'macvlan_mod' for lanplug-macvlan; accepted options: parent, macvlan_mode, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  ],
  [
    'ipvlan option on macvlan',
    ['parent=eth0', 'ipvlan_mode=l2'],
    "unknown option 'ipvlan_mode' for lanplug-macvlan; accepted options: parent, macvlan_mode, com.docker.network.driver.mtu, host_access, lanplug.conflict, dhcp, dhcp.timeout, ipv6, ipv6.rt_info_max_plen, lanplug.mdns",
  ],
  [
    'IPv6 by SLAAC without a parent',
    ['ipv6=slaac'],
    '-o ipv6=slaac needs -o parent: the router that advertises the prefix is on the LAN behind it',
  ],
  [
    'an IPv6 source lanplug does not know',
    ['parent=eth0', 'ipv6=dhcp6'],
    "-o ipv6=dhcp6 is not valid; accepted: slaac (for IPv6 from Docker's IPAM use --ipv6 --subnet, from DHCPv6 --ipam-driver lanplug-dhcp --ipv6)",
  ],
  [
    'a route information limit past 128',
    ['parent=eth0', 'ipv6=slaac', 'ipv6.rt_info_max_plen=129'],
    '-o ipv6.rt_info_max_plen=129 is not valid; expected a whole number from 0 to 128',
  ],
  ['vlan id out of range', ['parent=eth0.5000'], 'vlan id must be between 1-4094, received: 5000'],
  [
    'vlan parent of the wrong form',
    ['parent=eth0.x'],
    'required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received eth0.x',
  ],
  ['vlan parent on a missing base', ['parent=eth9.10'], '-o parent interface was not found on the host: eth9'],
  [
    'mtu above the parent',
    ['parent=eth0', 'com.docker.network.driver.mtu=9000'],
    '-o com.docker.network.driver.mtu=9000 is larger than the MTU of parent eth0 (1500)',
  ],
  [
    'mtu not a number',
    ['parent=eth0', 'com.docker.network.driver.mtu=big'],
    '-o com.docker.network.driver.mtu=big is not valid; expected a whole number such as 1500',
  ],
  [
    'mtu below IPv4 minimum',
    ['parent=eth0', 'com.docker.network.driver.mtu=60'],
    '-o com.docker.network.driver.mtu=60 is below the minimum of 68 for IPv4',
  ],
];

for (const [what, options, message] of CASES) {
  test(`refused: ${what}`, () => {
    const created = lab.host.docker([
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      ...SUBNET,
      ...options.flatMap((o) => ['-o', o]),
      'badnet',
    ]);
    assert.notEqual(created.status, 0, `docker network create succeeded for ${what}`);
    assert.equal(created.stderr.trim(), `Error response from daemon: NetworkDriver.CreateNetwork: ${message}`);
    assertNothingLeft();
  });
}

test('refused: an 802.1Q parent on a kernel without 8021q says so plainly and leaves nothing', () => {
  const created = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    ...SUBNET,
    '-o',
    'parent=eth0.10',
    'badnet',
  ]);
  assert.notEqual(created.status, 0);
  assert.equal(
    created.stderr.trim(),
    'Error response from daemon: NetworkDriver.CreateNetwork: cannot create 802.1Q sub-interface eth0.10: this kernel has no 802.1Q VLAN support (load the 8021q module, or use a kernel built with CONFIG_VLAN_8021Q)',
  );
  assert.doesNotMatch(lab.host.execOk(['ip', '-o', 'link', 'show']), /eth0\.10/);
  assertNothingLeft();
});

test('refused: passthru conflicts, both ways, in Docker wording', () => {
  resetDocker(lab.host);
  lab.host.dockerOk(['network', 'create', '-d', 'lanplug-macvlan', ...SUBNET, '-o', 'parent=eth0', 'first']);
  const id = lab.host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'first']).trim().slice(0, 12);
  const passthru = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.9.0.0/24',
    '-o',
    'parent=eth0',
    '-o',
    'macvlan_mode=passthru',
    'second',
  ]);
  assert.equal(
    passthru.stderr.trim(),
    `Error response from daemon: NetworkDriver.CreateNetwork: cannot use mode passthru, macvlan network ${id} is already using parent interface eth0`,
  );
  lab.host.dockerOk(['network', 'rm', 'first']);

  lab.host.dockerOk([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    ...SUBNET,
    '-o',
    'parent=eth0',
    '-o',
    'macvlan_mode=passthru',
    'first',
  ]);
  const passId = lab.host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'first']).trim().slice(0, 12);
  const after = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-macvlan',
    '--subnet=10.9.0.0/24',
    '-o',
    'parent=eth0',
    'second',
  ]);
  assert.equal(
    after.stderr.trim(),
    `Error response from daemon: NetworkDriver.CreateNetwork: macvlan network ${passId} is already using parent interface eth0 in mode passthru`,
  );
  assert.doesNotMatch(lab.host.dockerOk(['network', 'ls']), /second/);
  lab.host.dockerOk(['network', 'rm', 'first']);
  assertNothingLeft();
});

function assertNothingLeft(): void {
  assert.doesNotMatch(lab.host.dockerOk(['network', 'ls']), /badnet/);
  assertNoLanplugLinks(lab.host);
  assert.equal(lanplugStatus(lab.plugin), 'no lanplug networks');
}

test('refused: lanplug-ipvlan on a kernel without ipvlan says so at network create', () => {
  const created = lab.host.docker([
    'network',
    'create',
    '-d',
    'lanplug-ipvlan',
    ...SUBNET,
    '-o',
    'parent=eth0',
    'badnet',
  ]);
  assert.notEqual(created.status, 0);
  assert.equal(
    created.stderr.trim(),
    'Error response from daemon: NetworkDriver.CreateNetwork: this kernel has no ipvlan support (load the ipvlan module, or use a kernel built with CONFIG_IPVLAN); lanplug-ipvlan cannot create links',
  );
  assert.doesNotMatch(lab.host.execOk(['ip', '-o', 'link', 'show']), /lp-probe/);
  assertNothingLeft();
});
