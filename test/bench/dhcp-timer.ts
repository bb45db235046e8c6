/**
 * Runs inside the runtime host's network namespace (the bench starts it with
 * nsenter) and execs a CNI plugin whose address comes from the LAN's DHCP
 * server, as a runtime does: the reference `macvlan` + `dhcp` (whose plugin
 * forwards to the reference's `dhcp daemon`) or `lanplug-macvlan` +
 * `lanplug-dhcp`. First ADD then DEL one after another, each into a fresh
 * namespace; then `burst` ADDs at once (each timed, and the wall), then their
 * DELs, after holding the burst's leases for `hold` ms (their renewals: the
 * CPU time the daemon holding them used meanwhile is read from /proc). Prints
 * the timings as JSON on stdout.
 *
 * argv: reference|lanplug <main plugin executable> <parent> <cycles> <burst> <reference daemon socket>
 * <namespace prefix> <hold ms> <pid of the daemon holding the leases>: the containers' namespaces are <prefix>c<n> and <prefix>b<n>, a prefix of the
 * lab's (names.ts benchNs), so that the lab's teardown removes them when this process is killed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';

const [
  kind = 'reference',
  executable = '/usr/lib/cni/macvlan',
  parent = 'eth0',
  cyclesText = '30',
  burstText = '0',
  socket = '',
  nsPrefix = `lpb-dh-${process.pid}-`,
  holdText = '0',
  daemonPid = '',
] = process.argv.slice(2);

/** CPU time (user + system, ms) of process `pid` so far, from /proc/PID/stat; NaN without one. */
function cpuMs(pid: string): number {
  if (pid === '') return NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15 of stat
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}
/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
const pluginDir = dirname(executable);

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

const config = JSON.stringify(
  kind === 'lanplug'
    ? {
        cniVersion: '1.0.0',
        name: 'bench-dhcp-lanplug',
        type: 'lanplug-macvlan',
        master: parent,
        ipam: { type: 'lanplug-dhcp' },
      }
    : {
        cniVersion: '1.0.0',
        name: 'bench-dhcp-reference',
        type: 'macvlan',
        master: parent,
        mode: 'bridge',
        ipam: { type: 'dhcp', daemonSocketPath: socket },
      },
);

function plugin(command: 'ADD' | 'DEL', containerId: string, netns: string): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn(executable, [], {
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: pluginDir,
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    },
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  child.stdin.end(config);
  return new Promise((resolve, reject) =>
    child.once('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${kind} ${command} ${containerId}: ${out.trim()}`));
    }),
  );
}

async function main(): Promise<void> {
  const add: number[] = [];
  const del: number[] = [];
  for (let i = 0; i < Number(cyclesText); i++) {
    const ns = `${nsPrefix}c${i}`;
    ip('netns', 'add', ns);
    try {
      add.push(await plugin('ADD', `${kind}${i}`, `/run/netns/${ns}`));
      del.push(await plugin('DEL', `${kind}${i}`, `/run/netns/${ns}`));
    } finally {
      ip('netns', 'del', ns);
    }
  }
  const burst = Number(burstText);
  const names = Array.from({ length: burst }, (_, i) => `${nsPrefix}b${i}`);
  const made: string[] = [];
  const burstAdd: number[] = [];
  let failed = 0;
  let firstError = '';
  let wall = 0;
  let burstStart = 0;
  let holdEnd = 0;
  let holdCpuMs = NaN;
  try {
    // inside the try: when one `ip netns add` fails, those made before it are deleted
    for (const ns of names) {
      ip('netns', 'add', ns);
      made.push(ns);
    }
    const start = process.hrtime.bigint();
    burstStart = Date.now();
    await Promise.all(
      names.map((ns, i) =>
        plugin('ADD', `${kind}b${i}`, `/run/netns/${ns}`).then(
          (ms) => burstAdd.push(ms),
          (err: unknown) => {
            failed++;
            firstError ||= String(err);
          },
        ),
      ),
    );
    wall = Number(process.hrtime.bigint() - start) / 1e6;
    // The leases held past their T1: the daemon renews them meanwhile.
    const cpuBefore = cpuMs(daemonPid);
    await new Promise((resolve) => setTimeout(resolve, Number(holdText)));
    holdCpuMs = cpuMs(daemonPid) - cpuBefore;
    holdEnd = Date.now();
    for (const [i, ns] of names.entries()) await plugin('DEL', `${kind}b${i}`, `/run/netns/${ns}`).catch(() => 0);
  } finally {
    for (const ns of made) ip('netns', 'del', ns);
  }
  process.stdout.write(
    JSON.stringify({ add, del, burstAdd, wall, failed, firstError, burstStart, holdEnd, holdCpuMs }),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
