/**
 * The chaos file's audit (test/e2e/chaos.test.ts): what a user would look at
 * after a burst of `docker run` and `rm -f` met a fault, compared across both
 * Docker hosts, lanplug's rows, etcd's claims and the DHCP server's leases —
 * an address on two endpoints, a lanplug link left behind, a row no endpoint
 * has, an endpoint without its interface — and the table of outcomes the file
 * prints. The lab and the faults stay in the test file; this module only reads.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { DhcpServer } from '../lab/dhcp-server';
import type { DockerHost } from '../lab/docker-host';
import type { EtcdCluster } from '../lab/etcd-cluster';
import type { LanHost } from '../lab/lan';
import type { Lanplug } from '../lab/lanplug';
import { allPids, cleanEnv, sleep, sleepSync } from '../lab/proc';
import { inCgroup } from '../lab/sweep';
import { repoRoot } from '../support/repo';
import { lines } from './helpers';

/** The parts of the chaos lab the audit reads: two Docker hosts with their daemons, etcd, the LAN's DHCP server. */
export interface ChaosLab {
  hosts: readonly DockerHost[];
  plugins: readonly Lanplug[];
  etcdHost: LanHost;
  cluster: EtcdCluster;
  server: DhcpServer;
}

// ---- operations and their outcomes ----

export interface Op {
  host: DockerHost;
  args: string[];
  /** Started this many ms after the burst began. */
  at?: number;
}
export interface Outcome extends Op {
  code: number | null;
  stderr: string;
}

/** Runs every operation (each at its `at`), concurrently; never rejects. */
export function burst(ops: Op[]): Promise<Outcome[]> {
  return Promise.all(
    ops.map(async (op) => {
      if (op.at !== undefined && op.at > 0) await sleep(op.at);
      return { ...op, ...(await op.host.dockerAsync(op.args)) };
    }),
  );
}

/**
 * Outcomes sorted: worked, failed with one of the `clear` errors, or lost (any other failure: the user
 * cannot tell what happened). What lanplug answers is one line by construction; the docker client may
 * add its own hint line ("See 'docker run --help'.") or, when dockerd dies under it, a line of its own.
 */
export function sortOutcomes(
  outcomes: readonly Outcome[],
  clear: readonly RegExp[],
): { ok: number; clear: Outcome[]; lost: Outcome[] } {
  let ok = 0;
  const clearOnes: Outcome[] = [];
  const lost: Outcome[] = [];
  for (const o of outcomes) {
    if (o.code === 0) ok++;
    else if (clear.some((re) => re.test(o.stderr))) clearOnes.push(o);
    else lost.push(o);
  }
  return { ok, clear: clearOnes, lost };
}

/** The error a failed operation ended with, as the user read it (Docker's prefixes and the client's hint dropped). */
export function errorLine(o: Outcome): string {
  return lines(o.stderr)
    .filter((l) => !/^See 'docker .*--help'\.$/.test(l))
    .join(' / ')
    .replace(/^docker: /, '')
    .replace(/^Error response from daemon: /, '')
    .replace(/[0-9a-f]{64}/g, '<id>')
    .replace(/endpoint \S+ on network \S+:/, 'endpoint <container> on network <network>:')
    .slice(0, 240);
}

// ---- the table ----

export interface ChaosRow {
  chaos: string;
  tried: number;
  clearErrors: number;
  lost: number;
  duplicated: number;
  leaked: number;
  stranded: number;
}

/** The file's table: a row per chaos, printed at the end. */
export class ChaosTable {
  private readonly rows: ChaosRow[] = [];

  record(t: TestContext, row: ChaosRow): void {
    this.rows.push(row);
    t.diagnostic(
      `${row.chaos}: tried ${row.tried}, failed with a clear error ${row.clearErrors}, lost ${row.lost}, duplicated ${row.duplicated}, leaked ${row.leaked}, stranded ${row.stranded}`,
    );
  }

  format(): string {
    const head = '| chaos | tried | failed, clear error | lost | duplicated | leaked | stranded |';
    const rows = this.rows.map(
      (r) =>
        `| ${r.chaos} | ${r.tried} | ${r.clearErrors} | ${r.lost} | ${r.duplicated} | ${r.leaked} | ${r.stranded} |`,
    );
    return ['chaos table', head, '|---|---|---|---|---|---|---|', ...rows].map((l) => `# ${l}\n`).join('');
  }

  // ---- operations ----
}

// ---- the audit ----

export interface Interface {
  host: number;
  container: string;
  mac: string;
  addresses: string[];
}

export interface DockerEndpoint {
  host: number;
  network: string;
  dhcp: boolean;
  container: string;
  endpointId: string;
  mac: string;
  address: string;
  sandboxKey: string;
}

export interface Audit {
  /** Docker endpoints whose container lacks the interface (and, off DHCP, the address) Docker reports. */
  lost: string[];
  duplicated: string[];
  leaked: string[];
  stranded: string[];
}

export interface LanplugRows {
  networks: string[];
  endpoints: { id: string; addresses: string[] }[];
  leftovers: string[];
}

/** A sandbox under a Docker host's exec-root that no container `docker ps` lists holds, with lanplug's links in it. */
export interface LeftSandbox {
  file: string;
  links: string[];
  macs: string[];
  /** A process still lives in it: a container's task dockerd lost track of when it was killed (containerd kept it). */
  lived: boolean;
}

/** The audit once nothing was stranded, leaked, duplicated or lost, or at its deadline; and how long that took. */
export interface Settled {
  audit: Audit;
  ms: number;
}

export interface Restarted {
  started: number;
  /** Containers dockerd, killed, left to containerd ("id already in use", its task's directory): Docker's own leftovers. */
  halfMade: number;
  /** Refused by lanplug: another endpoint of the network holds the address Docker gave (twice, or after forgetting). */
  givenTwice: number;
  /** Refused by the kernel: Docker gave the address of a container whose task outlived dockerd (its MAC busy on the parent). */
  orphanHeld: number;
  /** Of those started, how many only on a later try (no namespace left holding the MAC by then). */
  startedLater: number;
}

/** The audit's readers over `lab`, each test's row recorded in `table` (closures over one lab). */
export function chaosAudit(lab: ChaosLab, table: ChaosTable) {
  function lanplugCli(index: number, args: string[]): { status: number | null; stdout: string; stderr: string } {
    return (lab.hosts[index] as DockerHost).exec([process.execPath, join(repoRoot(), 'bin', 'lanplug'), ...args]);
  }

  /** Every lanplug network's endpoints as dockerd lists them, with the container's sandbox. */
  function dockerEndpoints(index: number): DockerEndpoint[] {
    const host = lab.hosts[index] as DockerHost;
    const found: DockerEndpoint[] = [];
    const networks = lines(
      host.dockerOk(['network', 'ls', '--no-trunc', '--filter', 'driver=lanplug-macvlan', '--format', '{{.Name}}']),
    );
    for (const network of networks) {
      const [inspected] = JSON.parse(host.dockerOk(['network', 'inspect', network])) as {
        Options: Record<string, string>;
        Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string }>;
      }[];
      for (const [id, c] of Object.entries(inspected?.Containers ?? {})) {
        const sandboxKey = host.dockerOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', id]).trim();
        found.push({
          host: index,
          network,
          dhcp: inspected?.Options['dhcp'] === 'true',
          container: c.Name,
          endpointId: c.EndpointID,
          mac: c.MacAddress.toLowerCase(),
          address: c.IPv4Address.split('/')[0] ?? '',
          sandboxKey,
        });
      }
    }
    return found;
  }

  /** The interfaces inside a container's network namespace, with their IPv4 addresses: what the LAN sees. */
  function interfacesIn(index: number, container: string, sandboxKey: string): Interface[] {
    const out = (lab.hosts[index] as DockerHost).execOk(['nsenter', `--net=${sandboxKey}`, 'ip', '-j', 'addr', 'show']);
    const links = JSON.parse(out) as {
      ifname: string;
      address?: string;
      addr_info: { family: string; local: string }[];
    }[];
    return links
      .filter((l) => l.ifname !== 'lo')
      .map((l) => ({
        host: index,
        container,
        mac: (l.address ?? '').toLowerCase(),
        addresses: l.addr_info.filter((a) => a.family === 'inet').map((a) => a.local),
      }));
  }

  /** `lanplug status` of host `index`, read where its daemon runs (host 0's state directory is in its mount namespace). */
  function lanplugRows(index: number): LanplugRows {
    const plugin = lab.plugins[index] as Lanplug;
    const r = lanplugCli(index, ['status', '--state-dir', plugin.stateDir]);
    assert.equal(r.status, 0, `lanplug status: ${r.stderr}`);
    const rows: LanplugRows = { networks: [], endpoints: [], leftovers: [] };
    for (const line of lines(r.stdout)) {
      const network = /^([0-9a-f]{12}) {2}lanplug-/.exec(line);
      if (network !== null) rows.networks.push(network[1] ?? '');
      const endpoint = /^ {2}endpoint ([0-9a-f]{12}) .* mac=\S+ {2}(\S*)$/.exec(line);
      if (endpoint !== null)
        rows.endpoints.push({
          id: endpoint[1] ?? '',
          addresses: (endpoint[2] ?? '')
            .split(',')
            .filter((a) => a !== '')
            .map((a) => a.split('/')[0] ?? ''),
        });
      if (line.startsWith('leftover ')) rows.leftovers.push(line);
    }
    return rows;
  }

  /** The lanplug links in a host's own namespace: endpoint links (lp-<id>) and DHCP asking links (lpd-). */
  function hostLinks(index: number): string[] {
    const out = (lab.hosts[index] as DockerHost).execOk(['ip', '-d', '-o', 'link', 'show']);
    return lines(out)
      .map((l) => /^\d+: ([^:@]+)[@:]/.exec(l)?.[1] ?? '')
      .filter((n) => /^lp-[0-9a-f]{12}$|^lpd-/.test(n));
  }

  /** A process's network namespace ("net:[ino]"), or '' when it is gone. */
  function netOf(pid: number): string {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      return '';
    }
  }

  /** The macvlan and ipvlan links in a network namespace (a file or /proc/<pid>/ns/net; null: the host's own), with their MACs; null if it cannot be entered. */
  function lanLinksIn(host: DockerHost, netns: string | null): { name: string; mac: string }[] | null {
    const show = ['ip', '-d', '-o', 'link', 'show'];
    const r = host.exec(netns === null ? show : ['nsenter', `--net=${netns}`, ...show]);
    if (r.status !== 0) return null;
    return lines(r.stdout)
      .filter((l) => / (macvlan|ipvlan) /.test(l))
      .map((l) => ({
        name: /^\d+: ([^:@]+)/.exec(l)?.[1] ?? l,
        mac: /link\/ether ([0-9a-f:]{17})/.exec(l)?.[1] ?? '',
      }));
  }

  /**
   * What a dockerd killed while its containers ran leaves under its exec-root: their network namespaces,
   * with lanplug's link still inside, its MAC (or, ipvlan, its address) busy on the parent. Without a
   * process in it, lanplug removes its link when Docker deletes the endpoint (a link left there is
   * lanplug's leak); with one, lanplug leaves it (it never cuts an interface a process may use), and
   * the namespace is Docker's orphan.
   */
  function leftSandboxes(index: number): LeftSandbox[] {
    const host = lab.hosts[index] as DockerHost;
    const running = lines(host.dockerOk(['ps', '-q']));
    const held = new Set(
      running.length === 0
        ? []
        : lines(host.dockerOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', ...running])),
    );
    const dir = join(host.execRoot, 'netns');
    const files = fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => join(dir, f)) : [];
    // Every process's network namespace, as device and inode (what `ip netns identify` compares).
    const inUse = new Set(lines(host.exec(['sh', '-c', 'stat -L -c "%d %i" /proc/[0-9]*/ns/net 2>/dev/null']).stdout));
    return files
      .filter((f) => !held.has(f))
      .flatMap((file) => {
        const links = lanLinksIn(host, file); // null: a file no namespace is mounted on any more
        if (links === null || links.length === 0) return [];
        const lived = inUse.has(host.exec(['stat', '-L', '-c', '%d %i', file]).stdout.trim());
        return [{ file, links: links.map((l) => l.name), macs: links.map((l) => l.mac), lived }];
      });
  }

  /**
   * Processes of the host's containers (found by dockerd's --cgroup-parent) that no running container owns:
   * tasks containerd kept after dockerd was killed, in network namespaces whose file dockerd may already
   * have removed. Those whose namespace holds a macvlan or ipvlan link, with the links.
   */
  function orphanTasks(index: number): { pid: number; links: string[]; macs: string[] }[] {
    const host = lab.hosts[index] as DockerHost;
    const running = runningNamespaces(index);
    const seen = new Set<string>();
    return allPids().flatMap((pid) => {
      if (!inCgroup(pid, (n) => n === host.cgroupParent)) return [];
      const net = netOf(pid);
      if (net === '' || running.has(net) || seen.has(net)) return [];
      seen.add(net);
      const links = lanLinksIn(host, `/proc/${pid}/ns/net`) ?? [];
      return links.length > 0 ? [{ pid, links: links.map((l) => l.name), macs: links.map((l) => l.mac) }] : [];
    });
  }

  /** The network namespace ("net:[ino]") of each running container of the host, by its name. */
  function runningNamespaces(index: number): Map<string, string> {
    const host = lab.hosts[index] as DockerHost;
    const running = lines(host.dockerOk(['ps', '-q']));
    const out =
      running.length === 0 ? [] : lines(host.dockerOk(['inspect', '-f', '{{.State.Pid}} {{.Name}}', ...running]));
    return new Map(
      out.map((l) => {
        const [pid, name] = l.split(' ');
        return [netOf(Number(pid)), (name ?? '').replace(/^\//, '')];
      }),
    );
  }

  /**
   * The MAC lanplug gave the endpoint whose link (lp-<12 hex>) the kernel refused to set up: its
   * CreateEndpoint in the daemon's request log (--log-level debug), Docker's MAC or lanplug's answer.
   */
  function macOfRefusedLink(index: number, stderr: string): string | null {
    const id = /failed to add interface lp-([0-9a-f]{12})/.exec(stderr)?.[1];
    if (id === undefined) return null;
    for (const line of lines((lab.plugins[index] as Lanplug).stderr()).reverse()) {
      if (!line.includes('CreateEndpoint') || !line.includes(`${id}`)) continue;
      try {
        const entry = JSON.parse(line) as {
          path?: string;
          request?: string;
          response?: { Interface?: { MacAddress?: string } };
        };
        if (entry.path !== '/NetworkDriver.CreateEndpoint' || entry.request === undefined) continue;
        const request = JSON.parse(entry.request) as { EndpointID?: string; Interface?: { MacAddress?: string } };
        if (!request.EndpointID?.startsWith(id)) continue;
        const mac = [entry.response?.Interface?.MacAddress, request.Interface?.MacAddress].find(
          (m) => (m ?? '') !== '',
        );
        return mac?.toLowerCase() ?? null;
      } catch {
        continue;
      }
    }
    return null;
  }

  /**
   * Who holds `mac` on the host's parent: a running container (lanplug let an address be used twice),
   * the host's own namespace (a link lanplug left), a namespace Docker left or a task of a container
   * that outlived dockerd (Docker's leftover), or nobody any more (a namespace the kernel is taking down).
   */
  function holderOf(index: number, mac: string): string | null {
    const host = lab.hosts[index] as DockerHost;
    for (const [net, name] of runningNamespaces(index)) {
      const pid = allPids().find((p) => netOf(p) === net);
      if (pid !== undefined && lanLinksIn(host, `/proc/${pid}/ns/net`)?.some((l) => l.mac === mac))
        return `running container ${name}`;
    }
    if (lanLinksIn(host, null)?.some((l) => l.mac === mac)) return "the host's own namespace";
    if (leftSandboxes(index).some((l) => l.macs.includes(mac))) return 'left sandbox';
    if (orphanTasks(index).some((t) => t.macs.includes(mac))) return 'orphan task';
    return null;
  }

  /** etcd's endpoint claims (allocated or requested): address -> the host holding it. */
  function etcdClaims(): Map<string, string> {
    const out = lab.etcdHost.execOk(
      ['etcdctl', `--endpoints=${lab.cluster.clientUrls.join(',')}`, 'get', '--prefix', '/lanplug/v1/ip/'],
      { env: cleanEnv({ ETCDCTL_API: '3' }) },
    );
    const rows = lines(out);
    const claims = new Map<string, string>();
    for (let i = 0; i + 1 < rows.length; i += 2) {
      const claim = JSON.parse(rows[i + 1] ?? '{}') as { host: string; kind: string };
      if (claim.kind === 'allocated' || claim.kind === 'requested')
        claims.set(rows[i]?.split('/').pop() ?? '', claim.host);
    }
    return claims;
  }

  /** Compares what the containers hold, lanplug's rows on both hosts, etcd and the DHCP server's leases. */
  function audit(): Audit {
    const result: Audit = { lost: [], duplicated: [], leaked: [], stranded: [] };
    const endpoints = [0, 1].flatMap(dockerEndpoints);
    const interfaces = endpoints.flatMap((e) => interfacesIn(e.host, e.container, e.sandboxKey));
    // Each container once (a container on two networks is listed twice).
    const seen = new Set<string>();
    const unique = interfaces.filter((i) => {
      const key = `${i.host}/${i.container}/${i.mac}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    for (const e of endpoints) {
      const own = unique.find((i) => i.host === e.host && i.container === e.container && i.mac === e.mac);
      if (own === undefined || own.addresses.length === 0 || (!e.dhcp && !own.addresses.includes(e.address)))
        result.lost.push(
          `h${e.host} ${e.container} on ${e.network}: Docker says ${e.address} ${e.mac}, the container has ${JSON.stringify(own ?? null)}`,
        );
    }
    // What the LAN sees: an address on two interfaces.
    const holders = new Map<string, Interface[]>();
    for (const i of unique) for (const a of i.addresses) holders.set(a, [...(holders.get(a) ?? []), i]);
    for (const [address, on] of holders)
      if (on.length > 1)
        result.duplicated.push(`${address} on ${on.map((i) => `h${i.host}/${i.container}`).join(' and ')}`);
    // lanplug's rows, over both hosts.
    const rows = [0, 1].map(lanplugRows);
    const rowHolders = new Map<string, string[]>();
    for (const [h, r] of rows.entries())
      for (const e of r.endpoints)
        for (const a of e.addresses) rowHolders.set(a, [...(rowHolders.get(a) ?? []), `h${h}/${e.id}`]);
    for (const [address, on] of rowHolders)
      if (on.length > 1) result.duplicated.push(`${address} in lanplug rows ${on.join(' and ')}`);
    // etcd: a claim is its holder's, and every claim has a holder.
    for (const [address, claimedBy] of etcdClaims()) {
      const on = holders.get(address) ?? [];
      if (on.length === 0) result.stranded.push(`etcd claim ${address} of ${claimedBy}: no container holds it`);
      else if (on.some((i) => `h${i.host}` !== claimedBy))
        result.duplicated.push(`etcd gives ${address} to ${claimedBy}, a container of another host holds it`);
    }
    // The DHCP server: a lease is its holder's, and every lease has a holder.
    for (const lease of lab.server.leases()) {
      const on = holders.get(lease.address) ?? [];
      if (on.length === 0 && !unique.some((i) => i.mac === lease.mac))
        result.stranded.push(`dhcp lease ${lease.address} of ${lease.mac}: no container has that MAC or address`);
      else if (on.some((i) => i.mac !== lease.mac))
        result.duplicated.push(
          `dhcp lease of ${lease.address} to ${lease.mac}, held by ${on.map((i) => i.mac).join(', ')}`,
        );
    }
    for (const [h, r] of rows.entries()) {
      // A container Docker runs on a lanplug network that lanplug has no row for: nothing of it would be defended,
      // released or reconciled.
      const recorded = new Set(r.endpoints.map((e) => e.id));
      for (const e of endpoints.filter((x) => x.host === h && !recorded.has(x.endpointId.slice(0, 12))))
        result.lost.push(
          `h${h} ${e.container} on ${e.network}: lanplug has no row for endpoint ${e.endpointId.slice(0, 12)}`,
        );
      const known = new Set(endpoints.filter((e) => e.host === h).map((e) => e.endpointId.slice(0, 12)));
      for (const e of r.endpoints)
        if (!known.has(e.id)) result.stranded.push(`h${h} lanplug endpoint ${e.id}: Docker has no such endpoint`);
      for (const l of r.leftovers) result.stranded.push(`h${h} ${l}`);
      const networks = new Set(
        lines((lab.hosts[h] as DockerHost).dockerOk(['network', 'ls', '--no-trunc', '--format', '{{.ID}}'])).map((id) =>
          id.slice(0, 12),
        ),
      );
      for (const n of r.networks)
        if (!networks.has(n)) result.stranded.push(`h${h} lanplug network ${n}: Docker has no such network`);
      for (const link of hostLinks(h)) result.leaked.push(`h${h} ${link}`);
      for (const left of leftSandboxes(h).filter((x) => !x.lived))
        result.leaked.push(`h${h} in a sandbox Docker left: ${left.file}: ${left.links.join(' ')}`);
    }
    return result;
  }

  /** Audits until nothing is stranded, leaked, duplicated or lost, or `ms` passed (the periodic checks run every 2 s). */
  async function settledAudit(ms: number): Promise<Settled> {
    const started = Date.now();
    for (;;) {
      const a = audit();
      const clean = a.lost.length + a.duplicated.length + a.leaked.length + a.stranded.length === 0;
      if (clean || Date.now() - started > ms) return { audit: a, ms: Date.now() - started };
      await sleep(1_000);
    }
  }

  /** Records the row and asserts the zeros: nothing lost, duplicated, leaked or stranded. */
  function conclude(
    t: TestContext,
    chaos: string,
    outcomes: Outcome[],
    clear: readonly RegExp[],
    settled: Settled,
  ): void {
    const sorted = sortOutcomes(outcomes, clear);
    const a = settled.audit;
    for (const message of new Set(sorted.clear.map(errorLine))) t.diagnostic(`clear error: ${message}`);
    t.diagnostic(`audit after recovery: ${(settled.ms / 1000).toFixed(1)} s to come out clean, or its deadline`);
    table.record(t, {
      chaos,
      tried: outcomes.length,
      clearErrors: sorted.clear.length,
      lost: sorted.lost.length + a.lost.length,
      duplicated: a.duplicated.length,
      leaked: a.leaked.length,
      stranded: a.stranded.length,
    });
    assert.deepEqual(
      sorted.lost.map((o) => `${o.args.join(' ')}: ${o.stderr.trim()}`),
      [],
      'operations that failed without a clear error',
    );
    assert.deepEqual(a, { lost: [], duplicated: [], leaked: [], stranded: [] });
  }

  /**
   * Starts every container Docker created but could not start (a run that failed), as a user would. Two
   * kinds cannot start again, both left by a killed daemon: one containerd kept (dockerd was creating it),
   * and one whose address Docker gave out twice or again after forgetting an endpoint lanplug had recorded
   * (lanplug refuses it in one line). Those are removed, as a user would.
   */
  function startCreated(index: number, status = 'created'): Restarted {
    const host = lab.hosts[index] as DockerHost;
    const counts: Restarted = { started: 0, halfMade: 0, givenTwice: 0, orphanHeld: 0, startedLater: 0 };
    for (const name of lines(host.dockerOk(['ps', '-a', '--filter', `status=${status}`, '--format', '{{.Names}}']))) {
      const r = host.docker(['start', name]);
      if (r.status === 0) counts.started++;
      // containerd's task of a container dockerd was starting when killed: its id, or its state directory
      else if (/id already in use|failed to start shim: mkdir \S+: file exists/.test(r.stderr)) counts.halfMade++;
      else if (
        /address \S+ of this network is already held by endpoint [0-9a-f]{12} .*Docker gave it out twice/.test(r.stderr)
      )
        counts.givenTwice++;
      else if (/failed to set link up: address already in use/.test(r.stderr)) {
        // The kernel refused the link: another on the parent has its MAC. Who holds it decides: a running
        // container or the host's namespace is lanplug's fault; a namespace Docker left, or a task that
        // outlived dockerd, is Docker's leftover; nobody any more is a namespace the kernel is still taking
        // down (its cleanup work queue, seconds on a loaded machine: seen > 2 s in CI), tried again each
        // second for 20 s as a user would.
        let again = r;
        let holder: string | null = null;
        const deadline = Date.now() + 20_000;
        for (;;) {
          const mac = macOfRefusedLink(index, again.stderr);
          assert.ok(
            mac !== null,
            `docker start ${name}: no CreateEndpoint of its link in lanplug's log: ${again.stderr}`,
          );
          holder = holderOf(index, mac);
          if (holder !== null || Date.now() >= deadline) break;
          sleepSync(1_000);
          again = host.docker(['start', name]);
          if (again.status === 0 || !/address already in use/.test(again.stderr)) break;
        }
        if (again.status === 0) {
          counts.started++;
          counts.startedLater++;
          continue;
        }
        if (!/address already in use/.test(again.stderr)) assert.fail(`docker start ${name} again: ${again.stderr}`);
        assert.ok(
          holder === 'left sandbox' || holder === 'orphan task',
          `docker start ${name}: ${again.stderr}\nits MAC is held by ${holder ?? 'nobody that can be found, after 20 s'}`,
        );
        counts.orphanHeld++;
      } else assert.fail(`docker start ${name}: ${r.stderr}`);
      if (r.status !== 0) host.dockerOk(['rm', '-f', name]);
    }
    return counts;
  }

  function describeRestarted(r: Restarted, status = 'created'): string {
    return `${r.started} ${status} container(s) started (${r.startedLater} of them on a later try: the MAC was still busy on the parent); removed: ${r.halfMade} containerd still held ("id already in use", "failed to start shim"), ${r.givenTwice} whose address lanplug refused (Docker gave it twice, or after forgetting an endpoint), ${r.orphanHeld} whose address a container task that outlived dockerd still holds`;
  }

  // ---- the cases ----

  return { lanplugCli, leftSandboxes, audit, settledAudit, conclude, startCreated, describeRestarted };
}
