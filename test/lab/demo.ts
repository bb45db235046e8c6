/**
 * `npm run demo`: the seed's bridge tutorial, step by step, against a real
 * dockerd with lanplug on a lab LAN made of network namespaces; then what
 * lanplug adds: host access, addresses from the LAN's DHCP server, the CNI
 * front end, `lanplug doctor`, one address space over two Docker hosts on
 * etcd, and lanplug as managed Docker plugins. Prints each command and
 * what it printed, then removes everything it made.
 */
import { createDockerHost, type DockerHost } from './docker-host';
import { dhcpNetworkArgs, dualStackDhcpNetworkArgs, startDhcpServer, type DhcpServer } from './dhcp-server';
import { startEtcdCluster } from './etcd-cluster';
import { createLan, type Lan, type LanHost } from './lan';
import { mdnsQuery } from './mdns-peer';
import { BUSYBOX } from './image';
import { lanHostNs } from './names';
import { buildCniExecutable } from '../../src/install/cni';
import { startLanplug } from './lanplug';
import { runOk, sleep } from './proc';
import { RouterAdverts } from './router-adverts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../support/repo';

/** `docker run` of a container on the demo's DHCP network with a MAC of its own. */
function onOfficeWithMac(name: string, mac: string): string[] {
  return ['run', '-d', '--network', 'office', '--mac-address', mac, '--name', name, 'alpine:latest', 'sleep', '600'];
}

function show(host: DockerHost, args: string[], pick?: (out: string) => string): void {
  process.stdout.write(`\n$ docker ${args.map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const out = host.dockerOk(args);
  process.stdout.write(pick === undefined ? out : pick(out));
}

const LANPLUG = join(repoRoot(), 'bin', 'lanplug');

function step(text: string): void {
  process.stdout.write(`\n# ${text}\n`);
}

/** A command on a LAN host, printed with its output once it matches `expect` (tried for up to 10 s). */
async function lanCommand(lanHost: LanHost, argv: string[], expect: RegExp): Promise<void> {
  process.stdout.write(`\n[${lanHost.name}]$ ${argv.map((a) => (a === BUSYBOX ? 'busybox' : a)).join(' ')}\n`);
  let last = '';
  for (let tries = 0; tries < 40; tries++) {
    const r = lanHost.exec(argv);
    last = r.stdout + r.stderr;
    if (r.status === 0 && expect.test(r.stdout)) break;
    await sleep(250);
  }
  if (!expect.test(last)) throw new Error(`${argv.join(' ')}: ${last}`);
  process.stdout.write(last);
}

/** A command on the Docker host itself (its namespaces), printed with its output. */
function hostCommand(host: DockerHost, argv: string[], mayFail = false): void {
  const shown = argv
    .map((a) => (a === process.execPath ? 'node' : a === LANPLUG ? 'lanplug' : a))
    .filter((a, i) => !(i === 0 && a === 'node'));
  process.stdout.write(`\n[docker host]$ ${shown.join(' ')}\n`);
  const r = host.exec(argv);
  if (r.status !== 0 && !mayFail) throw new Error(`${shown.join(' ')} failed: ${r.stderr}`);
  process.stdout.write(r.stdout + r.stderr);
}

function networksSection(out: string): string {
  const [container] = JSON.parse(out) as { NetworkSettings: { Networks: unknown } }[];
  return `...\n"Networks": ${JSON.stringify(container?.NetworkSettings.Networks, null, 4)}\n...\n`;
}

/**
 * Two more Docker hosts sharing one address space on a 3-member etcd (on a
 * machine of the LAN): the same network on both, containers started on both
 * at once, who holds what, and the same --ip refused on the second host.
 */
async function sharedPoolsStep(lan: Lan): Promise<void> {
  step('One address space over many Docker hosts: two more Docker hosts, rack-a and rack-b, run lanplug with');
  step('--store etcd://... (a 3-member etcd on a machine of the LAN). Each creates the same network; no two');
  step('containers on the LAN ever get one address or one MAC, whichever host starts them.');
  const etcdHost = lan.addLanHost('etcd', '172.16.86.250/24');
  const cluster = await startEtcdCluster({
    dir: join(lan.dir, 'etcd'),
    address: '172.16.86.250',
    basePort: 2370,
    ns: etcdHost.ns,
  });
  try {
    const racks: { name: string; host: DockerHost; stateDir: string }[] = [];
    for (const [i, name] of ['rack-a', 'rack-b'].entries()) {
      const host = await createDockerHost(lan, { addresses: [`172.16.86.${21 + i}/24`] });
      const daemon = await startLanplug(host, { args: ['--store', cluster.storeUrl, '--host-id', name] });
      racks.push({ name, host, stateDir: daemon.stateDir });
    }
    process.stdout.write(`\n[both racks]$ lanplug daemon --store ${cluster.storeUrl} --host-id rack-a|rack-b\n`);
    for (const { name, host } of racks) {
      process.stdout.write(`\n# on ${name}:`);
      show(host, [
        'network',
        'create',
        '-d',
        'lanplug-macvlan',
        '--ipam-driver',
        'lanplug',
        '--subnet=172.16.86.0/24',
        '--ip-range=172.16.86.160/28',
        '--gateway=172.16.86.1',
        '-o',
        'parent=eth0',
        'fleet',
      ]);
    }
    process.stdout.write('\n# three containers started on each rack at the same moment:\n');
    await Promise.all(
      racks.flatMap(({ name, host }) =>
        [1, 2, 3].map((n) =>
          host.dockerAsync([
            'run',
            '-d',
            '--network',
            'fleet',
            '--name',
            `${name}-${n}`,
            'alpine:latest',
            'sleep',
            '600',
          ]),
        ),
      ),
    );
    for (const { name, host } of racks) {
      process.stdout.write(`\n# on ${name}, each container's address and MAC:`);
      show(
        host,
        ['ps', '--format', '{{.Names}}', '--filter', 'network=fleet'],
        (out) =>
          out
            .trim()
            .split('\n')
            .sort()
            .map(
              (name) =>
                `${name}  ${host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}}{{end}}', name]).trim()}`,
            )
            .join('\n') + '\n',
      );
    }
    const [rackA, rackB] = racks;
    if (rackA === undefined || rackB === undefined) throw new Error('demo: the racks did not start');
    hostCommand(rackA.host, [process.execPath, LANPLUG, 'status', '--state-dir', rackA.stateDir]);
    const taken = rackA.host
      .dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', 'rack-a-1'])
      .trim();
    process.stdout.write(
      `\n# on rack-b, the address rack-a-1 holds:\n$ docker run -d --network fleet --ip ${taken} alpine:latest sleep 600\n`,
    );
    process.stdout.write(
      rackB.host.docker(['run', '-d', '--network', 'fleet', '--ip', taken, 'alpine:latest', 'sleep', '600']).stderr,
    );
  } finally {
    cluster.stop();
  }
}

/**
 * The same lanplug as managed Docker plugins (`docker plugin ls`), built
 * offline from this installation, on a state directory of their own (the
 * service's daemon has stopped: the two never share one).
 */
function managedPluginStep(lan: Lan, host: DockerHost): void {
  step('Managed plugins: `lanplug plugin build` makes lanplug/macvlan:latest and lanplug/ipvlan:latest from this');
  step("host's Node and lanplug's code (no registry, no image), creates and enables them in dockerd:");
  const dockerHost = ['--docker-host', `unix://${host.sock}`];
  const build = [process.execPath, LANPLUG, 'plugin', 'build', '--state-dir', join(lan.dir, 'managed-state')];
  process.stdout.write(`
$ lanplug plugin build
`);
  process.stdout.write(runOk([...build, ...dockerHost], { timeoutMs: 600_000 }));
  try {
    show(host, ['plugin', 'ls']);
    show(host, [
      'network',
      'create',
      '-d',
      'lanplug/macvlan:latest',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'managed-net',
    ]);
    show(host, ['run', '--rm', '--network', 'managed-net', 'alpine:latest', 'ping', '-c', '1', '172.16.86.10']);
    show(host, ['network', 'rm', 'managed-net']);
  } finally {
    process.stdout.write(`
$ lanplug plugin remove
`);
    process.stdout.write(runOk([process.execPath, LANPLUG, 'plugin', 'remove', ...dockerHost]));
  }
}

/**
 * The CNI front end: a runtime's ADD and DEL, made exactly as libcni makes
 * them (CNI_* variables, the configuration on stdin), into a namespace that
 * plays a Podman or Kubernetes pod.
 */
function cniStep(lan: Lan, host: DockerHost, stateDir: string, dhcpServer: DhcpServer): void {
  step('CNI: the same daemon serves Podman, containerd and Kubernetes. `lanplug install --cni` builds the');
  step('plugins (lanplug-macvlan, lanplug-ipvlan) into /opt/cni/bin; a conflist written for the reference');
  step('macvlan + host-local works with its two types changed. Here is the call a runtime makes for a pod:');
  const plugin = join(lan.dir, 'lanplug-macvlan');
  buildCniExecutable(repoRoot(), plugin, join(stateDir, 'cni.sock'));
  // Made where the daemon and dockerd run (the lab's private mount namespace), as a runtime on that host would.
  const pod = lanHostNs(lan.id, 'pod');
  host.execOk(['ip', 'netns', 'add', pod]);
  try {
    const conf = {
      cniVersion: '1.0.0',
      name: 'demo-lan',
      type: 'lanplug-macvlan',
      master: 'eth0',
      ipam: {
        type: 'lanplug',
        subnet: '172.16.86.0/24',
        rangeStart: '172.16.86.150',
        rangeEnd: '172.16.86.159',
        gateway: '172.16.86.1',
        routes: [{ dst: '0.0.0.0/0' }],
      },
    };
    const call = (command: string, config: object = conf, file = 'demo-lan.conf'): string => {
      process.stdout.write(
        `
$ CNI_COMMAND=${command} CNI_CONTAINERID=pod1 CNI_NETNS=/run/netns/${pod} CNI_IFNAME=eth0 /opt/cni/bin/lanplug-macvlan < ${file}
`,
      );
      const r = host.exec([plugin], {
        env: {
          PATH: process.env['PATH'],
          CNI_COMMAND: command,
          CNI_CONTAINERID: 'pod1',
          CNI_NETNS: `/run/netns/${pod}`,
          CNI_IFNAME: 'eth0',
        },
        input: JSON.stringify(config),
      });
      if (r.status !== 0) throw new Error(`CNI ${command} failed: ${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    process.stdout.write(`
# demo-lan.conf:
${JSON.stringify(conf, null, 2)}
`);
    const result = call('ADD');
    process.stdout.write(JSON.stringify(JSON.parse(result), null, 2) + '\n');
    process.stdout.write(`
[pod]$ ip addr show eth0; ping -c 1 172.16.86.10
`);
    process.stdout.write(host.execOk(['ip', '-n', pod, 'addr', 'show', 'eth0']));
    process.stdout.write(
      host.execOk(['nsenter', `--net=/run/netns/${pod}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', '172.16.86.10']),
    );
    hostCommand(host, [process.execPath, LANPLUG, 'status', '--state-dir', stateDir]);
    call('DEL');
    process.stdout.write(
      '(DEL answers nothing on success; the link and the address are gone, and the network with them)\n',
    );

    step(
      'A pod can take its address from the LAN\'s DHCP server instead: "ipam": {"type": "lanplug-dhcp"}. The daemon',
    );
    step('asks from inside the pod, checks the offer on the LAN, renews the lease and gives it back at DEL.');
    const dhcpConf = {
      cniVersion: '1.0.0',
      name: 'demo-dhcp',
      type: 'lanplug-macvlan',
      master: 'eth0',
      ipam: { type: 'lanplug-dhcp' },
    };
    process.stdout.write(`
# demo-dhcp.conf:
${JSON.stringify(dhcpConf, null, 2)}
`);
    const leased = call('ADD', dhcpConf, 'demo-dhcp.conf');
    process.stdout.write(JSON.stringify(JSON.parse(leased), null, 2) + '\n');
    process.stdout.write(`
# the DHCP server's lease file:
${readFileSync(dhcpServer.leaseFile, 'utf8')
  .split('\n')
  .filter((l) => l.includes('pod1'))
  .join('\n')}
`);
    call('DEL', dhcpConf, 'demo-dhcp.conf');
    process.stdout.write('(DEL sent DHCPRELEASE: the server has the address back)\n');
  } finally {
    host.exec(['ip', 'netns', 'del', pod]);
  }
}

/** `-o ipv6=slaac`: the LAN's router advertises fd77::/64 (dnsmasq, RA only); the container forms its address. */
async function slaacStep(lan: Lan, host: DockerHost, stateDir: string): Promise<void> {
  step("IPv6 the LAN's way: most LANs give IPv6 by router advertisements (SLAAC), not DHCPv6. On a network");
  step('without --ipv6, -o ipv6=slaac lets the container take them: an address of its own in the prefix');
  step(
    '(stable privacy, following lanplug.dhcp.id), the router as default route. Docker cannot show it; lanplug ls does.',
  );
  const router = new RouterAdverts(lan, 'fd77::');
  await router.start();
  try {
    show(host, [
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      '-o',
      'ipv6=slaac',
      'lan6',
    ]);
    show(host, [
      'run',
      '-d',
      '--network',
      'name=lan6,driver-opt=lanplug.dhcp.id=web',
      '--name',
      'web6',
      'alpine:latest',
      'sleep',
      '600',
    ]);
    // The address is usable a few seconds later: the router's answer to the container's solicitation, then DAD.
    const learned = (): boolean =>
      / fd77:[0-9a-f:]+\/64 scope global (?!tentative)/.test(
        host.docker(['exec', 'web6', 'ip', '-6', 'addr', 'show', 'eth0']).stdout,
      );
    for (let i = 0; i < 80 && !learned(); i++) await new Promise((r) => setTimeout(r, 250));
    show(host, ['exec', 'web6', 'ip', '-6', 'addr', 'show', 'eth0']);
    show(host, ['exec', 'web6', 'ip', '-6', 'route']);
    hostCommand(host, [process.execPath, LANPLUG, 'ls', '--state-dir', stateDir]);
    show(host, ['rm', '-f', 'web6']);
    show(host, ['network', 'rm', 'lan6']);
  } finally {
    router.stop();
  }
}

async function main(): Promise<void> {
  process.stdout.write(
    'lanplug demo: a LAN (bridge br0 with gateway 172.16.86.1 and a host 172.16.86.10) in network namespaces,\n',
  );
  process.stdout.write('a Docker host whose eth0 is plugged into it, running dockerd and the lanplug daemon.\n');
  const lan = createLan({ addresses: ['172.16.86.1/24'] });
  try {
    const peer = lan.addLanHost('peer', ['172.16.86.10/24']);
    const host = await createDockerHost(lan);
    const plugin = await startLanplug(host);
    show(host, [
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '-o',
      'parent=eth0',
      'my-macvlan-net',
    ]);
    show(host, ['network', 'ls']);
    show(host, ['network', 'inspect', 'my-macvlan-net']);
    show(host, [
      'run',
      '--rm',
      '-dit',
      '--network',
      'my-macvlan-net',
      '--name',
      'my-macvlan-alpine',
      'alpine:latest',
      'ash',
    ]);
    show(host, ['container', 'inspect', 'my-macvlan-alpine'], networksSection);
    show(host, ['exec', 'my-macvlan-alpine', 'ip', 'addr', 'show', 'eth0']);
    show(host, ['exec', 'my-macvlan-alpine', 'ip', 'route']);
    show(host, ['exec', 'my-macvlan-alpine', 'ping', '-c', '2', '172.16.86.10']);
    process.stdout.write('\n# and from the LAN host 172.16.86.10, the container is a machine of its own:\n');
    process.stdout.write(peer.execOk([BUSYBOX, 'ping', '-c', '1', '172.16.86.2']));
    process.stdout.write(peer.execOk(['ip', 'neigh', 'show', '172.16.86.2']));
    show(host, ['container', 'stop', 'my-macvlan-alpine']);
    show(host, ['network', 'rm', 'my-macvlan-net']);

    step('Host access: the kernel keeps a macvlan parent from talking to its own children, so the Docker host');
    step('cannot reach its containers. -o host_access=true gives the host a shim beside them (lh-<network>).');
    show(host, [
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '--aux-address',
      'host=172.16.86.254',
      '-o',
      'parent=eth0',
      '-o',
      'host_access=true',
      'reachable',
    ]);
    show(host, [
      'run',
      '-d',
      '--network',
      'reachable',
      '--name',
      'web',
      'alpine:latest',
      'sh',
      '-c',
      'echo hello > /i.html; httpd -f -p 80 -h /',
    ]);
    hostCommand(host, ['ip', 'route', 'show', 'proto', '76']);
    hostCommand(host, [BUSYBOX, 'ping', '-c', '1', '172.16.86.2']);
    // httpd listens a moment after `docker run -d` returns (longer on a busy machine).
    for (let tries = 0; tries < 40; tries++) {
      if (host.exec([BUSYBOX, 'wget', '-q', '-O', '/dev/null', 'http://172.16.86.2/i.html']).status === 0) break;
      await sleep(250);
    }
    hostCommand(host, [BUSYBOX, 'wget', '-q', '-O', '-', 'http://172.16.86.2/i.html']);

    show(host, ['rm', '-f', 'web']);
    show(host, ['network', 'rm', 'reachable']);

    step("DHCP: the LAN's own server (dnsmasq here, on the LAN's gateway) gives containers their addresses.");
    step('The lease is taken before docker run returns, renewed while the container runs, released when it stops;');
    step('--mac-address (or --driver-opt lanplug.dhcp.id=NAME) makes it the same address at every start.');
    // Its DNS on, for the domain `lan`: it registers the names its clients send (options 12 and 81).
    const dhcpServer = await startDhcpServer(lan, { range: ['172.16.86.100', '172.16.86.150'], domain: 'lan' });
    show(host, dhcpNetworkArgs('office'));
    show(host, onOfficeWithMac('printer-app', '02:00:00:00:00:42'));
    show(host, ['exec', 'printer-app', 'ip', 'addr', 'show', 'eth0']);
    hostCommand(host, [process.execPath, LANPLUG, 'status', '--state-dir', plugin.stateDir]);
    step('lanplug ls: each container with its MAC, addresses, where they came from, and the lease until when.');
    hostCommand(host, [process.execPath, LANPLUG, 'ls', '--state-dir', plugin.stateDir]);
    process.stdout.write(`\n# the DHCP server's lease file:\n${readFileSync(dhcpServer.leaseFile, 'utf8')}`);
    show(host, ['stop', 'printer-app']);
    process.stdout.write(
      `\n# released at stop: the server's log says\n${dhcpServer
        .log()
        .split('\n')
        .filter((l) => l.includes('DHCPRELEASE'))
        .join('\n')}\n`,
    );
    show(host, ['start', 'printer-app']);
    show(host, ['exec', 'printer-app', 'ip', 'addr', 'show', 'eth0']);
    show(host, ['rm', '-f', 'printer-app']);

    step('A name keeps a container its identity on the LAN: --driver-opt lanplug.identity=NAME gives the MAC,');
    step('the DHCP client id and the hostname from the name, so a container re-created under the same name is');
    step('the same device to the LAN: the same MAC, so the same lease and address (lanplug identity prints them).');
    hostCommand(host, [process.execPath, LANPLUG, 'identity', 'scanner']);
    const named = ['run', '-d', '--network', 'name=office,driver-opt=lanplug.identity=scanner', '--name', 'scanner'];
    show(host, [...named, 'alpine:latest', 'sleep', '600']);
    show(host, ['exec', 'scanner', 'ip', 'addr', 'show', 'eth0']);
    show(host, ['rm', '-f', 'scanner']);
    show(host, [...named, 'alpine:latest', 'sleep', '600']);
    show(host, ['exec', 'scanner', 'ip', 'addr', 'show', 'eth0']);
    step("Its name reaches the LAN's DNS: lanplug's DHCP client sends it (client FQDN, option 81), and the");
    step("server, which registers its clients' names, answers scanner.lan to any host of the LAN:");
    await lanCommand(peer, [BUSYBOX, 'nslookup', 'scanner.lan', '172.16.86.1'], /172\.16\.86\.1[0-5]\d/);
    show(host, ['rm', '-f', 'scanner']);
    step('lanplug keeps what the name had (MAC, addresses, DHCP ids) while no container holds it, for');
    step('--identity-expire (30 days); lanplug forget NETWORK NAME drops it sooner:');
    hostCommand(host, [process.execPath, LANPLUG, 'ls', '--identities', '--state-dir', plugin.stateDir]);

    step('mDNS: with -o lanplug.mdns=true, lanplug answers <name>.local for the named containers of a network');
    step("from its own link on the LAN (never the host's), after probing that no device of the LAN already");
    step('uses the name (RFC 6762): a device that does keeps it, and lanplug says so in its log.');
    show(host, [
      'network',
      'create',
      '-d',
      'lanplug-macvlan',
      '--subnet=172.16.86.0/24',
      '--gateway=172.16.86.1',
      '--ip-range=172.16.86.64/28',
      '-o',
      'parent=eth0',
      '-o',
      'lanplug.mdns=true',
      'homelab',
    ]);
    show(host, [
      'run',
      '-d',
      '--network',
      'name=homelab,driver-opt=lanplug.identity=cam1',
      '--name',
      'cam1',
      'alpine:latest',
      'sleep',
      '600',
    ]);
    process.stdout.write('\n[peer]$ (an mDNS query for cam1.local to 224.0.0.251:5353)\n');
    let answered: string[] = [];
    for (let tries = 0; tries < 10 && answered.length === 0; tries++) answered = mdnsQuery(peer, 'cam1.local', 1_500);
    if (answered.length === 0) throw new Error('no mDNS answer for cam1.local');
    process.stdout.write(`cam1.local answered: ${answered.join(', ')}\n`);
    show(host, ['rm', '-f', 'cam1']);
    show(host, ['network', 'rm', 'homelab']);

    step('Before a container uses the address the server gave, lanplug asks the LAN (an ARP probe). Here a device');
    step('the server does not know holds the address reserved for this MAC: lanplug declines it and asks again.');
    await dhcpServer.restart({ hosts: ['02:00:00:00:00:43,172.16.86.120'] });
    const squatter = lan.addLanHost('squat', '172.16.86.120/24');
    try {
      show(host, onOfficeWithMac('scanner-app', '02:00:00:00:00:43'));
      show(host, ['exec', 'scanner-app', 'ip', 'addr', 'show', 'eth0']);
      const said = (re: RegExp, text: string): string =>
        text
          .split('\n')
          .filter((l) => re.test(l))
          .join('\n');
      process.stdout.write(`\n# lanplug's log:\n${said(/declining a DHCP address/, plugin.stderr())}\n`);
      process.stdout.write(`\n# the server's log:\n${said(/DHCPDECLINE/, dhcpServer.log())}\n`);
      show(host, ['rm', '-f', 'scanner-app']);
    } finally {
      squatter.destroy();
    }

    step('IPv6 too: --ipam-driver lanplug-dhcp asks the LAN servers for both addresses (DHCPv4 and DHCPv6)');
    step("with the MAC dockerd hands it, before the container's link exists; the subnets are the LAN's.");
    lan.addAddress('fd77::1/64');
    await dhcpServer.restart({ hosts: [], range6: ['fd77::100', 'fd77::1ff'] });
    show(host, dualStackDhcpNetworkArgs('office6'));
    show(host, [
      'run',
      '-d',
      '--network',
      'office6',
      '--mac-address',
      '02:00:00:00:00:46',
      '--name',
      'dual-app',
      'alpine:latest',
      'sleep',
      '600',
    ]);
    show(host, ['exec', 'dual-app', 'ip', 'addr', 'show', 'eth0']);
    // The container's IPv6 address is usable once the kernel's duplicate address detection is done (about 1 s).
    for (
      let i = 0;
      i < 20 && host.docker(['exec', 'dual-app', 'ping', '-6', '-c', '1', '-W', '1', 'fd77::1']).status !== 0;
      i++
    )
      await new Promise((r) => setTimeout(r, 250));
    show(host, ['exec', 'dual-app', 'ping', '-6', '-c', '1', 'fd77::1']);
    process.stdout.write(
      `\n# the server's DHCPv6 lease (DUID-LL of the MAC):\n${readFileSync(dhcpServer.leaseFile, 'utf8')
        .split('\n')
        .filter((l) => l.includes('fd77::'))
        .join('\n')}\n`,
    );
    show(host, ['rm', '-f', 'dual-app']);
    show(host, ['network', 'rm', 'office6']);
    cniStep(lan, host, plugin.stateDir, dhcpServer);
    dhcpServer.stop();
    await slaacStep(lan, host, plugin.stateDir);

    step('lanplug doctor: what this host can do and whether lanplug is healthy on it.');
    hostCommand(
      host,
      [process.execPath, LANPLUG, 'doctor', '--state-dir', plugin.stateDir, '--docker-host', `unix://${host.sock}`],
      true,
    );
    show(host, ['network', 'rm', 'office']);
    await plugin.stop();

    await sharedPoolsStep(lan);

    managedPluginStep(lan, host);
  } finally {
    lan.destroy();
  }
  process.stdout.write('\nlanplug demo: done; the lab namespaces, dockerd and the daemon are gone.\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`lanplug demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
