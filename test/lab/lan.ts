// The lab's LAN and the plain machines on it. A Lan is a network namespace lp-lan-<id> holding a
// bridge br0 (the LAN's wire) with the gateway address(es) and a temp directory /tmp/lp-lab-<id>
// for everything its hosts keep; a LanHost is another machine on that LAN: namespace
// lp-lh-<id>-<name> whose eth0 is a veth into br0. Docker hosts (docker-host.ts) plug into a Lan
// the same way and are destroyed with it. createLan registers the lab so that it is torn down
// even if the test never calls destroy().

import * as fs from 'node:fs';
import { labDir, lanHostNs, lanNs, newLabId } from './names';
import { addNetns, addrArgs, delNetns, isV6, nsExecArgv, sysctlsNoDad } from './ns';
import { run, runOk, type RunOptions, type RunResult } from './proc';
import { registerLab, unregisterLab } from './registry';
import { labNamespaces, markOwner, sweepNetns, umountUnder } from './sweep';

export interface LanOptions {
  /** Addresses put on br0 in the LAN namespace (the gateway); default ['172.16.86.1/24']. */
  addresses?: string[];
  /** MTU of the bridge and of every port made later; default 1500. */
  mtu?: number;
}

export interface LanHostOptions {
  /** Default route via this address (optional). */
  gateway?: string;
}

/** Something plugged into a Lan that goes when the Lan goes (a Docker host). */
export interface LanMember {
  destroy(): void;
}

export class LanHost {
  readonly port: string;
  private destroyed = false;
  constructor(
    readonly lan: Lan,
    readonly name: string,
    readonly ns: string,
    readonly addresses: string[],
  ) {
    this.port = `lh-${name}`;
  }
  /** Runs argv inside this LAN host's namespace. */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv), opts);
  }
  addAddress(cidr: string): void {
    runOk(['ip', '-n', this.ns, ...addrArgs(cidr, 'eth0')]);
    this.addresses.push(cidr);
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    sweepNetns(this.ns);
    delNetns(this.ns);
    this.lan.lanHosts.delete(this);
  }
}

export class Lan {
  readonly bridge = 'br0';
  readonly ns: string;
  readonly dir: string;
  readonly mtu: number;
  readonly addresses: string[] = [];
  /** @internal Docker hosts on this LAN (they add and remove themselves). */ readonly dockerHosts =
    new Set<LanMember>();
  /** @internal */ readonly lanHosts = new Set<LanHost>();
  /** @internal */ nextHost = 1;
  private destroyed = false;

  constructor(
    readonly id: string,
    opts: LanOptions,
  ) {
    this.ns = lanNs(id);
    this.dir = labDir(id);
    this.mtu = opts.mtu ?? 1500;
  }

  /** @internal */ setUp(opts: LanOptions): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    markOwner(this.dir);
    addNetns(this.ns);
    sysctlsNoDad(this.ns);
    runOk([
      'ip',
      '-n',
      this.ns,
      'link',
      'add',
      this.bridge,
      'mtu',
      String(this.mtu),
      'type',
      'bridge',
      'stp_state',
      '0',
      'forward_delay',
      '0',
      'mcast_snooping',
      '0',
    ]);
    runOk(['ip', '-n', this.ns, 'link', 'set', this.bridge, 'up']);
    for (const a of opts.addresses ?? ['172.16.86.1/24']) this.addAddress(a);
  }

  /** Adds an address (IPv4 or IPv6 with nodad) to br0 in the LAN namespace. */
  addAddress(cidr: string): void {
    runOk(['ip', '-n', this.ns, ...addrArgs(cidr, this.bridge)]);
    this.addresses.push(cidr);
  }

  /** Runs argv inside the LAN namespace (where br0 and the gateway address live). */
  exec(argv: readonly string[], opts?: RunOptions): RunResult {
    return run(nsExecArgv(this.ns, argv), opts);
  }
  execOk(argv: readonly string[], opts?: RunOptions): string {
    return runOk(nsExecArgv(this.ns, argv), opts);
  }

  /**
   * Another machine on the LAN: namespace lp-lh-<id>-<name> whose eth0 is a veth into br0
   * (port lh-<name>) with the given addresses. name: 1-8 of [a-z0-9].
   */
  addLanHost(name: string, cidrs: string | string[], opts: LanHostOptions = {}): LanHost {
    if (!/^[a-z0-9]{1,8}$/.test(name))
      throw new Error(`lab: LAN host name must be 1-8 of [a-z0-9], received: ${JSON.stringify(name)}`);
    const host = new LanHost(this, name, lanHostNs(this.id, name), []);
    this.lanHosts.add(host);
    addNetns(host.ns);
    sysctlsNoDad(host.ns);
    this.plug(host.port, host.ns);
    for (const c of Array.isArray(cidrs) ? cidrs : [cidrs]) host.addAddress(c);
    if (opts.gateway !== undefined) {
      runOk([
        'ip',
        '-n',
        host.ns,
        ...(isV6(opts.gateway) ? ['-6'] : []),
        'route',
        'add',
        'default',
        'via',
        opts.gateway,
      ]);
    }
    return host;
  }

  /** @internal Creates veth <port> (in br0) <-> eth0 (in ns), both up. */
  plug(port: string, ns: string): void {
    runOk([
      'ip',
      '-n',
      this.ns,
      'link',
      'add',
      port,
      'mtu',
      String(this.mtu),
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'mtu',
      String(this.mtu),
      'netns',
      ns,
    ]);
    runOk(['ip', '-n', this.ns, 'link', 'set', port, 'master', this.bridge, 'up']);
    runOk(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  /** Tears down every Docker host and LAN host of this LAN, the namespace and the temp dir. Idempotent, synchronous. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      for (const dh of [...this.dockerHosts]) dh.destroy();
      for (const h of [...this.lanHosts]) h.destroy();
      // what a program run on this LAN named with the lab's id (a bench's container namespaces) goes too
      for (const ns of labNamespaces(this.id).filter((n) => n !== this.ns)) {
        sweepNetns(ns);
        delNetns(ns);
      }
      sweepNetns(this.ns);
      delNetns(this.ns);
      umountUnder(this.dir);
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      unregisterLab(this);
    }
  }
}

/** Creates a LAN: namespace lp-lan-<id> holding bridge br0 (up) with the gateway address(es). */
export function createLan(opts: LanOptions = {}): Lan {
  const lan = new Lan(newLabId(), opts);
  registerLab(lan);
  try {
    lan.setUp(opts);
  } catch (e) {
    lan.destroy();
    throw e;
  }
  return lan;
}
