/**
 * The systemd units `lanplug install` writes: one service for the daemon and
 * one socket unit per driver. systemd holds the plugin sockets from early
 * boot (sockets.target, before docker.service), so dockerd finds the drivers
 * at once and its first call simply waits in the socket's queue until the
 * daemon — started on that first connection, or at boot — accepts it.
 */
export const MARKER = '# Written by `lanplug install`; `lanplug uninstall` removes it.';

export interface UnitSettings {
  /** The program and its leading arguments, e.g. [node, /opt/lanplug/bin/lanplug]. */
  program: readonly string[];
  stateDir: string;
  pluginDir: string;
  logLevel: string;
}

export interface UnitFile {
  name: string;
  text: string;
  /** The `.wants` directory `systemctl enable` would link it from. */
  wantedBy: string;
}

export const SERVICE = 'lanplug.service';
/** One socket unit per plugin: the unit's name, and the plugin (socket file and FileDescriptorName) it holds. */
export const SOCKET_UNITS = [
  { unit: 'lanplug-macvlan.socket', plugin: 'lanplug-macvlan', what: 'lanplug-macvlan Docker network driver' },
  { unit: 'lanplug-ipvlan.socket', plugin: 'lanplug-ipvlan', what: 'lanplug-ipvlan Docker network driver' },
  { unit: 'lanplug-ipam.socket', plugin: 'lanplug', what: 'lanplug Docker IPAM driver' },
  { unit: 'lanplug-dhcp.socket', plugin: 'lanplug-dhcp', what: 'lanplug-dhcp Docker IPAM driver' },
] as const;

export function unitFiles(settings: UnitSettings): UnitFile[] {
  const sockets = SOCKET_UNITS.map((s) => s.unit);
  const exec = [
    ...settings.program,
    'daemon',
    '--state-dir',
    settings.stateDir,
    '--plugin-dir',
    settings.pluginDir,
    '--log-level',
    settings.logLevel,
  ]
    .map(systemdQuote)
    .join(' ');
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
ListenStream=${settings.pluginDir}/${plugin}.sock
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
 * One word of an ExecStart= line: `%` and `$` doubled (systemd would expand
 * specifiers and variables), and anything beyond plain path characters in
 * double quotes with backslash and quote escaped.
 */
function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped) ? escaped : `"${escaped.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
