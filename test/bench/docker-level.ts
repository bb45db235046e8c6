/**
 * Whole Docker commands, Docker's built-in macvlan against lanplug-macvlan on
 * the same lab and parent, alternating so that both share any drift: `docker
 * run -d`, `docker rm -f`, `docker run --rm … true`, and 50 concurrent `docker
 * run -d` (wall time).
 */
import type { DockerHost } from '../lab/docker-host';
import { median, sinceMs, type Results } from './stats';

const BURST_ROUNDS = 4;
const SETTLE_MS = 2_000;

function timedDocker(host: DockerHost, args: string[]): number {
  const start = process.hrtime.bigint();
  host.dockerOk(args);
  return sinceMs(start);
}

interface Samples {
  run: number[];
  rm: number[];
  runRm: number[];
}

export async function dockerLevel(
  results: Results,
  host: DockerHost,
  networks: { builtin: string; lanplug: string },
  options: { cycles: number; burst: number },
): Promise<void> {
  const samples = new Map<string, Samples>([
    [networks.builtin, { run: [], rm: [], runRm: [] }],
    [networks.lanplug, { run: [], rm: [], runRm: [] }],
  ]);
  const cycle = (network: string, i: number, into: Samples | null): void => {
    const name = `bench-${network}-${i}`;
    const run = timedDocker(host, [
      'run',
      '-d',
      '--network',
      network,
      '--name',
      name,
      'alpine:latest',
      'sleep',
      '1000',
    ]);
    const rm = timedDocker(host, ['rm', '-f', name]);
    const runRm = timedDocker(host, ['run', '--rm', '--network', network, 'alpine:latest', 'true']);
    into?.run.push(run);
    into?.rm.push(rm);
    into?.runRm.push(runRm);
  };
  cycle(networks.builtin, 0, null); // warm-up: image layers, dockerd's caches
  cycle(networks.lanplug, 0, null);
  for (let i = 1; i <= options.cycles; i++) {
    const order = i % 2 === 0 ? [networks.builtin, networks.lanplug] : [networks.lanplug, networks.builtin];
    for (const network of order) cycle(network, i, samples.get(network) ?? null);
  }
  const b = samples.get(networks.builtin);
  const l = samples.get(networks.lanplug);
  if (b === undefined || l === undefined) return;
  for (const [what, bs, ls] of [
    ['docker run -d', b.run, l.run],
    ['docker rm -f', b.rm, l.rm],
    ['docker run --rm … true', b.runRm, l.runRm],
  ] as const) {
    results.add('Docker', `${what}, built-in macvlan`, bs);
    results.add('Docker', `${what}, lanplug-macvlan`, ls);
    results.figure(`${what}: lanplug / built-in (medians)`, median(ls) / median(bs), '×');
  }

  const walls = new Map<string, number[]>();
  // An even number of rounds, alternating which driver goes first, each burst after the previous one's
  // removals have settled (containerd's cleanup, lanplug's batched link removal): neither pays for the other.
  for (let round = 0; round < BURST_ROUNDS; round++) {
    const order = round % 2 === 0 ? [networks.builtin, networks.lanplug] : [networks.lanplug, networks.builtin];
    for (const network of order) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const names = Array.from({ length: options.burst }, (_, i) => `burst-${network}-${round}-${i}`);
      const start = process.hrtime.bigint();
      const runs = await Promise.all(
        names.map((n) =>
          host.dockerAsync(['run', '-d', '--network', network, '--name', n, 'alpine:latest', 'sleep', '1000']),
        ),
      );
      const wall = sinceMs(start);
      const failed = runs.filter((r) => r.code !== 0);
      if (failed.length > 0)
        throw new Error(
          `bench: ${failed.length} of ${options.burst} runs on ${network} failed: ${failed[0]?.stderr ?? ''}`,
        );
      walls.set(network, [...(walls.get(network) ?? []), wall]);
      const removed = await Promise.all(names.map((n) => host.dockerAsync(['rm', '-f', n])));
      const notRemoved = removed.filter((r) => r.code !== 0);
      if (notRemoved.length > 0)
        throw new Error(`bench: ${notRemoved.length} rm -f on ${network} failed: ${notRemoved[0]?.stderr ?? ''}`);
    }
  }
  results.add(
    'Docker',
    `${options.burst} concurrent docker run -d (wall), built-in macvlan`,
    walls.get(networks.builtin) ?? [],
  );
  results.add(
    'Docker',
    `${options.burst} concurrent docker run -d (wall), lanplug-macvlan`,
    walls.get(networks.lanplug) ?? [],
  );
}
