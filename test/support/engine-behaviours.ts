// The rows of the "Docker versions" table in docs/docker.md, each declared once: what a user sees,
// and for each engine whether a test proves it there (and what differs there). A test proves a row
// by carrying `[engine:<id>]` in its name; the engine is the one its lane runs (the e2e lane:
// Debian's dockerd 20.10, the docker28 lane: sid's 28.5) or, for Docker 29, which no lane runs, a
// contract test replaying the bodies 29 sends. Such a test says in the test runner's output which
// engine it ran on (engineDiagnostic), and scripts/versions-table builds the table from that output;
// test/unit/versions-table.test.ts holds these rows, the tags and the committed table together.

import type { EngineName } from '../lab/engine';

export type TableEngine = EngineName | 'docker29';

/** A column of the table: an engine, and the kind of proof its cells rest on. */
export interface EngineColumn {
  readonly engine: TableEngine;
  readonly heading: string;
  /** The version a cell names; a lane's dockerd must report this version (28.5 for 28.5.2). */
  readonly version: string;
  /** lane: the tests of test/<lane>/ (and the test files they import) run on this engine. */
  readonly proof: { readonly kind: 'lane'; readonly lane: string } | { readonly kind: 'contract' };
}

export const ENGINE_COLUMNS: readonly EngineColumn[] = [
  { engine: 'docker20', heading: 'Docker 20.10', version: '20.10', proof: { kind: 'lane', lane: 'e2e' } },
  { engine: 'docker28', heading: 'Docker 28', version: '28.5', proof: { kind: 'lane', lane: 'docker28' } },
  { engine: 'docker29', heading: 'Docker 29', version: '29', proof: { kind: 'contract' } },
];

/** What a row says of one engine: proved there (as the row says, or with a difference), or not tested. */
export type Cell =
  { readonly proved: true; readonly differs?: string } | { readonly proved: false; readonly why?: string };

const proved: Cell = { proved: true };
const differs = (what: string): Cell => ({ proved: true, differs: what });
const untested = (why?: string): Cell => (why === undefined ? { proved: false } : { proved: false, why });

export type Behaviour = { readonly id: string; readonly behaviour: string } & { readonly [E in TableEngine]: Cell };

export const BEHAVIOURS: readonly Behaviour[] = [
  {
    id: 'seed-tutorial',
    behaviour: "Docker's macvlan tutorial, word for word with `-d lanplug-macvlan`",
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'mac-from-ipv4',
    behaviour: "Without `--mac-address`, a macvlan container's MAC is `02:42` and its IPv4 address",
    docker20: proved,
    docker28: differs("Docker's own macvlan gives random MACs; lanplug's stay derived"),
    docker29: untested(),
  },
  {
    id: 'mac-address',
    behaviour: "`--mac-address` is the container's MAC",
    docker20: proved,
    docker28: proved,
    docker29: differs('`docker network connect --mac-address` too (29.3)'),
  },
  {
    id: 'endpoint-sysctls',
    behaviour: "Per-endpoint sysctls (`com.docker.network.endpoint.sysctls`) apply to the container's interface",
    docker20: differs('not applied (20.10 passes them on only)'),
    docker28: proved,
    docker29: proved,
  },
  {
    id: 'endpoint-ifname',
    behaviour: '`com.docker.network.endpoint.ifname` names no interface: it stays `eth0`',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'announcements',
    behaviour:
      "A joining container's addresses are announced (lanplug's 3 ARP and 3 NA); `advertise_addr_nmsgs=0` silences them",
    docker20: proved,
    docker28: differs("Docker's own 3 of each besides lanplug's"),
    docker29: untested(),
  },
  {
    id: 'gateway-without-flag',
    behaviour: 'A network made without `--gateway` gets a default gateway',
    docker20: untested(),
    docker28: proved,
    docker29: differs("no gateway unless `--gateway` is given, as with Docker's own macvlan"),
  },
  {
    id: 'gw-priority',
    behaviour: '`--network name=…,gw-priority=N`: the default route follows the higher priority',
    docker20: untested('no gw-priority before 28'),
    docker28: proved,
    docker29: proved,
  },
  {
    id: 'dual-stack',
    behaviour: '`--ipv6`: both addresses, each with the gateway of its subnet, several subnets per family',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'ipv6-only',
    behaviour:
      "`--ipv4=false`: IPv6-only networks with Docker's IPAM, `lanplug` and `lanplug-dhcp` (DHCPv6); a random MAC",
    docker20: untested('no `--ipv4=false` before 28'),
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'internal',
    behaviour: '`--internal`: no gateway; no parent: a private network whose containers reach only each other',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'mtu',
    behaviour: "`com.docker.network.driver.mtu` is the container link's MTU; above the parent's is refused",
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'lanplug-ipam',
    behaviour: "`--ipam-driver lanplug`: Docker's addresses, MACs and gateways; `--ip-range`, `--aux-address`, `--ip`",
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'lan-conflict',
    behaviour: 'An address a LAN device holds is never given: skipped, or refused naming the device',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'own-address',
    behaviour: "This host's own addresses are never a container's",
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'host-access',
    behaviour: '`-o host_access=true`: the Docker host and its containers reach each other',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'dhcp-network',
    behaviour: "`-o dhcp=true`: the LAN server's address and router; renewed, released at stop, the same at start",
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'dhcp-id',
    behaviour: '`lanplug.dhcp.id` (`network connect --driver-opt`): the client id, hostname and MAC follow the name',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'identity',
    behaviour:
      '`lanplug.identity` (`--network name=…,driver-opt=`) on any network: the MAC follows the name across `rm` + `run`; a second live holder is refused',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'dhcp-ipam',
    behaviour: '`--ipam-driver lanplug-dhcp`: IPv4 and IPv6 leased at `docker run`, renewed, released at stop',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'dhcp-hostname-from-name',
    behaviour: "`--ipam-driver lanplug-dhcp` sends the container's name as DHCP hostname",
    docker20: untested('no name sent before 29'),
    docker28: untested('no name sent before 29'),
    docker29: proved,
  },
  {
    id: 'connect-disconnect',
    behaviour: '`docker network connect` and `disconnect` of a running container',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'container-restart',
    behaviour: '`docker restart`, `stop` and `start`: the same address and MAC',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'dockerd-restart',
    behaviour:
      'dockerd restarted (with and without `--live-restore`): `--restart=always` containers keep their addresses',
    docker20: proved,
    docker28: proved,
    docker29: untested(),
  },
  {
    id: 'parent-down',
    behaviour: 'A container on a parent that is down starts, without carrier until the parent comes up',
    docker20: proved,
    docker28: untested(),
    docker29: untested(),
  },
  {
    id: 'macvlan-modes',
    behaviour: 'macvlan modes `bridge`, `private`, `vepa` and `passthru`: who reaches whom',
    docker20: proved,
    docker28: untested(),
    docker29: untested(),
  },
  {
    id: 'managed-plugin',
    behaviour: 'The managed plugins: the tutorial with `-d lanplug/macvlan:latest`, a dockerd restart',
    docker20: proved,
    docker28: untested(),
    docker29: untested(),
  },
];

/** The marker a test name carries for each row it proves. */
export const engineTag = (id: string): string => `[engine:${id}]`;

/** The row ids a test name is tagged with. */
export function tagsIn(name: string): string[] {
  return [...name.matchAll(/\[engine:([a-z0-9-]+)\]/g)].map((m) => m[1] as string);
}

/** Where a tagged test ran, as the test runner's output says it (a diagnostic of the test). */
export type EngineProof =
  | { readonly engine: TableEngine; readonly kind: 'lane'; readonly dockerd: string }
  | { readonly engine: TableEngine; readonly kind: 'contract' };

const PROOF_LINE = /^proof for (docker\d+): (?:lane, dockerd (\S+)|contract test of the bodies it sends)$/;

export function engineDiagnostic(proof: EngineProof): string {
  return proof.kind === 'lane'
    ? `proof for ${proof.engine}: lane, dockerd ${proof.dockerd}`
    : `proof for ${proof.engine}: contract test of the bodies it sends`;
}

/** The proof a diagnostic line states, or null for any other line. */
export function parseEngineDiagnostic(line: string): EngineProof | null {
  const m = PROOF_LINE.exec(line);
  if (m === null) return null;
  const engine = ENGINE_COLUMNS.find((c) => c.engine === m[1])?.engine;
  if (engine === undefined) return null;
  return m[2] === undefined ? { engine, kind: 'contract' } : { engine, kind: 'lane', dockerd: m[2] };
}
