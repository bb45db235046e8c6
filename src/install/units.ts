/**
 * The systemd units `lanplug install` writes: one service for the daemon and
 * one socket unit per driver. systemd holds the plugin sockets from early
 * boot (sockets.target, before docker.service), so dockerd finds the drivers
 * at once and its first call simply waits in the socket's queue until the
 * daemon — started on that first connection, or at boot — accepts it.
 */
import { dirname } from 'node:path';
import { invalidArgument } from '../errors';

export const MARKER = '# Written by `lanplug install`; `lanplug uninstall` removes it.';

export interface UnitSettings {
  /** The program and its leading arguments, e.g. [node, /opt/lanplug/bin/lanplug]. */
  program: readonly string[];
  /** What follows `daemon` on the service's command line: flags and their values, checked by the caller. */
  daemonArguments: readonly string[];
  /** Where the socket units listen. */
  pluginDir: string;
  /** The daemon's state directory: with the plugin directory, all the service may write. */
  stateDir: string;
  /** Where the daemon's CNI socket is (its directory is writable too); null: no CNI front end. */
  cniSocket: string | null;
  /** The daemon talks to etcd (shared pools): the only IP traffic it has; without, it has none. */
  usesIp: boolean;
}

export interface UnitFile {
  name: string;
  text: string;
  /** The `.wants` directory `systemctl enable` would link it from. */
  wantedBy: string;
}

/** The daemon's flags that name files: the service runs from /, so a relative path would mean another file. */
const PATH_FLAGS = ['--state-dir', '--plugin-dir', '--cni-socket', '--cacert', '--cert', '--key', '--user-file'];
/** sockaddr_un holds 108 bytes with the closing NUL. */
const UNIX_PATH_MAX = 107;

/** A control character: a newline would end the unit's line; systemd refuses them in an executable's path. */
function isControl(c: string): boolean {
  const code = c.charCodeAt(0);
  return code < 0x20 || code === 0x7f;
}

function hasControl(text: string): boolean {
  return [...text].some(isControl);
}

/**
 * What the units need beyond what the daemon checks: absolute paths, no
 * secret (a unit's ExecStart= is every local user's to read: `systemctl
 * show` over D-Bus, and the process list once it runs), and a plugin
 * directory systemd's ListenStream= can carry (it has no quoting: no control
 * characters; each socket's path within a unix address's length).
 */
export function checkUnitSettings(settings: UnitSettings): void {
  if (settings.daemonArguments.includes('--user'))
    throw invalidArgument(
      "--user would put the etcd password on the service's command line, which every local user can read (ps, systemctl show): write NAME:PASSWORD to a file only root reads and give --user-file FILE",
    );
  const executable = settings.program[0] ?? '';
  if (!executable.startsWith('/') || hasControl(executable) || /["'\\]/.test(executable))
    throw invalidArgument(
      `the service cannot run ${JSON.stringify(executable)}: systemd wants an absolute path without quotes, backslashes or control characters`,
    );
  const args = settings.daemonArguments;
  for (let i = 0; i + 1 < args.length; i += 2) {
    const [flag = '', value = ''] = [args[i], args[i + 1]];
    if (PATH_FLAGS.includes(flag) && !value.startsWith('/') && !(flag === '--cni-socket' && value === 'off'))
      throw invalidArgument(`${flag} must be an absolute path for the service (it runs from /); got '${value}'`);
  }
  for (const [flag, path] of [
    ['--plugin-dir', settings.pluginDir],
    ['--state-dir', settings.stateDir],
    ['--cni-socket', settings.cniSocket ?? ''],
  ] as const)
    if (hasControl(path))
      throw invalidArgument(`${flag} must not hold control characters; got ${JSON.stringify(path)}`);
  const longest = Math.max(...SOCKET_UNITS.map((s) => Buffer.byteLength(`${settings.pluginDir}/${s.plugin}.sock`)));
  if (longest > UNIX_PATH_MAX)
    throw invalidArgument(
      `--plugin-dir is too long for a unix socket: its sockets' paths would be ${longest} bytes, at most ${UNIX_PATH_MAX} fit`,
    );
}

export const SERVICE = 'lanplug.service';

/**
 * The capabilities the daemon uses, and the only ones the service has: links, addresses, routes and
 * sysctls (CAP_NET_ADMIN), ARP probes, announcements and DHCP frames on packet sockets
 * (CAP_NET_RAW), and entering a container's network namespace to keep its DHCP lease or to attach a
 * CNI pod (CAP_SYS_ADMIN, which setns() asks for). The e2e files that run the daemon with exactly
 * these (test/lab/lanplug.ts) prove it needs no more.
 */
export const SERVICE_CAPABILITIES = ['CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_SYS_ADMIN'] as const;
/** One socket unit per plugin: the unit's name, and the plugin (socket file and FileDescriptorName) it holds. */
export const SOCKET_UNITS = [
  { unit: 'lanplug-macvlan.socket', plugin: 'lanplug-macvlan', what: 'lanplug-macvlan Docker network driver' },
  { unit: 'lanplug-ipvlan.socket', plugin: 'lanplug-ipvlan', what: 'lanplug-ipvlan Docker network driver' },
  { unit: 'lanplug-ipam.socket', plugin: 'lanplug', what: 'lanplug Docker IPAM driver' },
  { unit: 'lanplug-dhcp.socket', plugin: 'lanplug-dhcp', what: 'lanplug-dhcp Docker IPAM driver' },
] as const;

/**
 * The daemon's open files, soft and hard: one socket per running `-o ipv6=slaac` container (its flags
 * followed, driver/slaac-flags.ts), one per SLAAC watch under way (64 at most), a few packet sockets per network,
 * dockerd's connections and the database. At the 10,000 endpoints docs/performance.md measures that is
 * about 10,000 plus a few thousand; this leaves six times that, and stays below every kernel's default
 * fs.nr_open (1,048,576), above which systemd could not set it.
 */
export const OPEN_FILES = 65_536;

export function unitFiles(settings: UnitSettings): UnitFile[] {
  checkUnitSettings(settings);
  const sockets = SOCKET_UNITS.map((s) => s.unit);
  const [executable = '', ...leading] = settings.program;
  const exec = [
    executablePath(executable),
    ...[...leading, 'daemon', ...settings.daemonArguments].map(systemdArgument),
  ].join(' ');
  const service = {
    name: SERVICE,
    wantedBy: 'multi-user.target',
    text: `${MARKER}
[Unit]
Description=lanplug: macvlan and ipvlan networks for Docker
Before=docker.service
Requires=${sockets.join(' ')}
After=${sockets.join(' ')}

[Service]
Type=simple
ExecStart=${exec}
Restart=on-failure
RestartSec=1s
TimeoutStopSec=20s
LimitNOFILE=${OPEN_FILES}
${sandbox(settings)}
[Install]
WantedBy=multi-user.target
Also=${sockets.join(' ')}
`,
  };
  return [
    service,
    ...SOCKET_UNITS.map(({ unit, plugin, what }) => ({
      name: unit,
      wantedBy: 'sockets.target',
      text: `${MARKER}
[Unit]
Description=${what} socket
Before=docker.service
PartOf=${SERVICE}

[Socket]
ListenStream=${specifierSafe(settings.pluginDir)}/${plugin}.sock
SocketMode=0600
DirectoryMode=0755
FileDescriptorName=${plugin}
Service=${SERVICE}

[Install]
WantedBy=sockets.target
`,
    })),
  ];
}

/**
 * What the service may do, and nothing more (systemd.exec; `systemd-analyze security lanplug`
 * scores it). Left out, and why: ProtectKernelTunables (lanplug keeps its own links quiet through
 * /proc/sys/net/ipv6/conf/<link>/), MemoryDenyWriteExecute (V8 compiles JavaScript into executable
 * memory), PrivateNetwork (the daemon works on the host's links); IPAddressDeny only where it talks to
 * etcd (its only IP traffic: DHCP and the LAN probes are frames on packet sockets, Docker a unix socket).
 * RestrictNamespaces=net still lets it enter a container's network namespace, and nothing else.
 */
function sandbox(settings: UnitSettings): string {
  const writable = [
    settings.stateDir,
    settings.pluginDir,
    ...(settings.cniSocket === null ? [] : [dirname(settings.cniSocket)]),
  ];
  // '-': a directory that does not exist yet (the plugin directory before the first socket) is no failure.
  const paths = [...new Set(writable)].map((path) => quotedPath(`-${path}`)).join(' ');
  return `CapabilityBoundingSet=${SERVICE_CAPABILITIES.join(' ')}
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${paths}
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_PACKET AF_INET AF_INET6
RestrictNamespaces=net
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
${settings.usesIp ? '' : 'IPAddressDeny=any\n'}`;
}

/** A path in a list setting (ReadWritePaths=): `%` doubled, in double quotes when it holds more than plain characters. */
function quotedPath(path: string): string {
  const escaped = specifierSafe(path);
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `%` starts a specifier in every unit setting (%h, %n, …): doubled, it is a `%`. */
function specifierSafe(text: string): string {
  return text.replace(/%/g, '%%');
}

/**
 * ExecStart='s first word: specifiers are expanded in it (`%` doubled), not
 * variables (a `$` is itself); in quotes when it holds a space (the
 * characters that would need escapes are refused by checkUnitSettings).
 */
function executablePath(path: string): string {
  const escaped = specifierSafe(path);
  return /^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped) ? escaped : `"${escaped}"`;
}

/**
 * One argument on an ExecStart= line, by systemd's own rules
 * (systemd.service, "Command lines"; no shell is involved): `%` doubled (a
 * specifier, expanded as the unit is read) and `$` doubled (a variable,
 * substituted as the command starts: `$$` is a `$`), in quotes or not; a word
 * of plain characters as it is; any other in double quotes, where `\` and
 * `"` are escaped and a control character (a newline would end the line) is
 * a C escape, `\xNN`.
 */
function systemdArgument(word: string): string {
  const escaped = specifierSafe(word).replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped)) return escaped;
  const quoted = [...escaped].map((c) =>
    c === '\\' || c === '"' ? `\\${c}` : isControl(c) ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}` : c,
  );
  return `"${quoted.join('')}"`;
}

/**
 * The words of a service's `ExecStart=` line, as systemd reads them back (the inverse of
 * systemdArgument: double quotes, `\\` `\"` and `\xNN` in them, `%%` and `$$`); null when the unit
 * has no such line. `unitText` may be the unit followed by its drop-ins: the last line that names a
 * command is the one systemd runs (a drop-in's `ExecStart=` alone only clears the unit's). What
 * `lanplug doctor` learns of the installed daemon's flags (its CNI socket).
 */
export function serviceArguments(unitText: string): string[] | null {
  let command: string | null = null;
  for (const line of unitText.split('\n'))
    if (line.startsWith('ExecStart=')) command = line.trim() === 'ExecStart=' ? null : line.slice('ExecStart='.length);
  return command === null ? null : commandWords(command);
}

/** The words of a command line in a unit file (see serviceArguments). */
function commandWords(text: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === ' ') {
      i++;
      continue;
    }
    let word = '';
    if (text[i] === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) {
        if (text[i] !== '\\') word += text[i];
        else if (text[i + 1] === 'x') {
          word += String.fromCharCode(parseInt(text.slice(i + 2, i + 4), 16));
          i += 3;
        } else word += text[++i] ?? '';
      }
      i++; // the closing quote
    } else for (; i < text.length && text[i] !== ' '; i++) word += text[i];
    words.push(word.replace(/%%/g, '%').replace(/\$\$/g, '$'));
  }
  return words;
}
