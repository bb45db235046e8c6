/**
 * Runs inside the Docker host's network namespace (the bench starts it with
 * nsenter), so that it execs a CNI plugin as a runtime does: directly, with
 * the parent in its namespace. ADD then DEL, each into a namespace made
 * fresh for it, of the reference `macvlan` + `host-local` or of lanplug's
 * executable with the same configuration (only the types changed). Prints
 * the timings as JSON on stdout.
 *
 * argv: reference|lanplug <plugin executable> <parent> <cycles> <state dir>
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';

const [kind = 'reference', executable = '/usr/lib/cni/macvlan', parent = 'eth0', cyclesText = '30', stateDir = '/tmp'] =
  process.argv.slice(2);
const cycles = Number(cyclesText);
const pluginDir = dirname(executable);

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

const config = JSON.stringify(
  kind === 'lanplug'
    ? {
        cniVersion: '1.0.0',
        name: 'bench-lanplug',
        type: 'lanplug-macvlan',
        master: parent,
        mode: 'bridge',
        ipam: { type: 'lanplug', subnet: '10.67.0.0/16' },
      }
    : {
        cniVersion: '1.0.0',
        name: 'bench-reference',
        type: 'macvlan',
        master: parent,
        mode: 'bridge',
        ipam: { type: 'host-local', subnet: '10.66.0.0/16', dataDir: join(stateDir, 'host-local') },
      },
);

function plugin(command: 'ADD' | 'DEL', containerId: string, netns: string): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(executable, [], {
    input: config,
    encoding: 'utf8',
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: pluginDir,
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    },
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${kind} macvlan ${command}: ${r.stdout}${r.stderr}`);
  return ms;
}

const add: number[] = [];
const del: number[] = [];
for (let i = 0; i < cycles; i++) {
  const ns = `lpb-cni-${process.pid}-${i}`;
  ip('netns', 'add', ns);
  try {
    add.push(plugin('ADD', `bench${i}`, `/run/netns/${ns}`));
    del.push(plugin('DEL', `bench${i}`, `/run/netns/${ns}`));
  } finally {
    ip('netns', 'del', ns);
  }
}
process.stdout.write(JSON.stringify({ add, del }));
