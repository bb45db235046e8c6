/**
 * netavark's JSON as the tests hand it over, and what they read back: the network Podman keeps
 * (netavark's `types::Network`), the plugin's own setup/teardown input (`NetworkPluginExec`), and
 * netavark's (`create`'s `{network, used, options}`; `setup`'s and `teardown`'s options with the
 * container's networks). One shape for test/cni/netavark.test.ts, which drives lanplug's executable
 * as netavark does, and test/docker28/podman6.test.ts, which drives netavark 2.0 itself, so the two
 * cannot disagree about what netavark sends. Also the container namespaces both make as Podman
 * makes them, and what both read in them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BUSYBOX } from '../lab/image';
import { lanHostNs } from '../lab/names';
import { addNetns, delNetns } from '../lab/ns';
import { CNI_LAB_GATEWAY } from './cni';

/** What any netavark or plugin call gives back: exit code, stdout parsed where it is JSON. */
export interface NetavarkOutcome {
  code: number;
  stdout: string;
  json: Record<string, unknown> | null;
  ms: number;
}

export interface LanNetworkOptions {
  /** Podman's network id (64 hex digits). */
  id: string;
  /** `--ip-range` as Podman writes it: first and last address. */
  leaseRange: readonly [string, string];
}

/**
 * The network JSON `podman network create -d lanplug-macvlan -o parent=eth0 --subnet 172.16.86.0/24
 * --gateway … --ip-range …` makes, with `extra` over it.
 */
export function lanNetwork(opts: LanNetworkOptions, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'lan',
    id: opts.id,
    driver: 'lanplug-macvlan',
    subnets: [
      {
        subnet: '172.16.86.0/24',
        gateway: CNI_LAB_GATEWAY,
        lease_range: { start_ip: opts.leaseRange[0], end_ip: opts.leaseRange[1] },
      },
    ],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: true,
    ipam_options: { driver: 'host-local' },
    options: { parent: 'eth0' },
    ...extra,
  };
}

/** What Podman 6 hands `netavark create` for a network (2.0: `{network, used, options}`). */
export function netavarkCreateInput(network: Record<string, unknown>): Record<string, unknown> {
  return {
    network,
    used: { interfaces: [], names: {}, subnets: [] },
    options: { subnet_pools: [], default_interface_name: 'podman', check_used_subnets: false },
  };
}

/** A container as the calls name it. */
export interface Container {
  /** The namespace's name under /run/netns. */
  ns: string;
  path: string;
  /** The id Podman gives the container: 64 characters. */
  id: string;
}

const containerName = (c: { id: string }): string => `ctr-${c.id.slice(-4)}`;

/** The plugin's setup/teardown input as netavark writes it (`NetworkPluginExec`): one network, its per-network options. */
export function pluginExecInput(
  c: { id: string },
  network: Record<string, unknown>,
  perNetwork: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    container_id: c.id,
    container_name: containerName(c),
    port_mappings: [],
    network,
    network_options: { interface_name: 'eth0', ...perNetwork },
  };
}

/**
 * netavark's own setup/teardown input for one container on one network: `networks` as 2.0's list of
 * named options (what Podman 6 sends), or as 1.x's map of name to options (2.0 reads both).
 */
export function netavarkExecInput(
  c: { id: string },
  network: Record<string, unknown>,
  form: 'list' | 'map',
  perNetwork: Record<string, unknown> = {},
): Record<string, unknown> {
  const name = String(network['name']);
  const opts = { interface_name: 'eth0', ...perNetwork };
  return {
    container_id: c.id,
    container_name: containerName(c),
    port_mappings: [],
    networks: form === 'list' ? [{ name, ...opts }] : { [name]: opts },
    network_info: { [name]: network },
  };
}

/** Container namespaces made as Podman makes them, all removed by dropAll (the file's after hook). */
export class ContainerNamespaces {
  private readonly made = new Set<string>();
  private next = 0;

  /** `tag` tells this file's namespaces and ids from another's; `idFill` pads the container ids. */
  constructor(
    private readonly labId: string,
    private readonly tag: string,
    private readonly idFill: string,
  ) {}

  create(): Container {
    const ns = lanHostNs(this.labId, `${this.tag}${++this.next}`);
    addNetns(ns);
    this.made.add(ns);
    return { ns, path: `/run/netns/${ns}`, id: `${this.next}`.padStart(64, this.idFill) };
  }

  drop(ns: string): void {
    delNetns(ns);
    this.made.delete(ns);
  }

  has(ns: string): boolean {
    return this.made.has(ns);
  }

  dropAll(): void {
    for (const ns of this.made) delNetns(ns);
    this.made.clear();
  }
}

/** One interface of a status block (netavark's `NetInterface`). */
export interface StatusInterface {
  mac_address: string;
  subnets: { ipnet: string; gateway?: string }[];
}

export interface IpAddr {
  ifname: string;
  address: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

export function linkIn(ns: string, ifname: string): IpAddr | null {
  const all = JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'addr', 'show'], { encoding: 'utf8' })) as IpAddr[];
  return all.find((l) => l.ifname === ifname) ?? null;
}

/** `ip route` of one family in the namespace, as text (`blackhole 10.99.0.0/16 proto 76`, …). */
export function routesIn(ns: string, family: 4 | 6 = 4): string {
  return execFileSync('ip', [`-${family}`, '-n', ns, 'route', 'show'], { encoding: 'utf8' });
}

export function pingFrom(path: string, target: string): void {
  execFileSync('nsenter', [`--net=${path}`, BUSYBOX, 'ping', '-c', '1', '-W', '2', target], { stdio: 'ignore' });
}

export function parseJsonObject(text: string): Record<string, unknown> | null {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * The message of a refusal: a non-zero exit and `{"error": …}` on stdout (netavark's format, the
 * plugin's as netavark's own). `exact`: the plugin's own contract, exit code 1 and stdout that one line.
 */
export function errorOf(out: NetavarkOutcome, opts: { exact?: boolean } = {}): string {
  assert.notEqual(out.code, 0, out.stdout);
  if (opts.exact === true) {
    assert.equal(out.code, 1, out.stdout);
    assert.equal(out.stdout.trim().split('\n').length, 1, 'one line');
  }
  assert.ok(out.json !== null && typeof out.json['error'] === 'string', out.stdout);
  return out.json['error'];
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}
