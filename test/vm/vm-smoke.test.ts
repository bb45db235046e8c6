// Full-kernel lane smoke test: one VM boot proves (a) the kernel features this machine lacks
// (8021q, ipvlan l2, dummy, macvlan passthru), (b) that node and the repo's native modules run
// inside, and (c) Docker 20.10's own macvlan driver on a VLAN parent, end to end. Later VM tests
// (lanplug's drivers) build on the same runner; if this one fails, the runner is broken.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { busyboxRootfsTar } from '../lab/image';
import { VM_BASH_LIB } from './bash-lib';
import { runInVm } from './run';

const SCRIPT = String.raw`
${VM_BASH_LIB}
vm_mark script-start

echo "== (a) kernel features"
vm_netns feat
ip -n feat link add eth0 type dummy
ip -n feat link add link eth0 name eth0.10 type vlan id 10
ip -n feat -d link show eth0.10 | grep > /dev/null 'vlan protocol 802.1Q id 10' && echo "OK vlan"
ip -n feat link add link eth0 name ipv0 type ipvlan mode l2
ip -n feat -d link show ipv0 | grep > /dev/null 'ipvlan  *mode l2' && echo "OK ipvlan-l2"
ip -n feat link add dummy1 type dummy
ip -n feat link add link dummy1 name mvpt type macvlan mode passthru
ip -n feat -d link show mvpt | grep > /dev/null 'macvlan mode passthru' && echo "OK macvlan-passthru"
ip netns del feat

echo "== node and native modules"
node -e "
  const Database = require(process.env.LANPLUG_REPO + '/node_modules/better-sqlite3');
  const row = new Database(':memory:').prepare('select 40 + 2 as x').get();
  const koffi = require(process.env.LANPLUG_REPO + '/node_modules/koffi');
  const getpid = koffi.load('libc.so.6').func('int getpid()');
  if (row.x !== 42 || getpid() !== process.pid) process.exit(1);
  console.log('OK native-modules node', process.version);
"
test -f "$LANPLUG_REPO/bin/lanplug" && echo "OK lanplug-bin-visible"
vm_mark node-checked

echo "== (b) dockerd 20.10 with the built-in macvlan driver on a VLAN parent"
vm_netns dock
ip -n dock link add eth0 type dummy
ip -n dock link set eth0 up
vm_start_dockerd dock /tmp/d
vm_mark dockerd-up
dk version --format 'OK dockerd {{.Server.Version}}'
dk import "$VM_IO/alpine.tar" alpine:latest > /dev/null
vm_mark image-imported
dk network create -d macvlan --subnet=172.16.86.0/24 --gateway=172.16.86.1 \
  -o parent=eth0.10 my-8021q-macvlan-net > /dev/null
ip -n dock -d link show eth0.10 | grep > /dev/null 'vlan protocol 802.1Q id 10' && echo "OK docker-created-eth0.10"
dk run --rm -itd --network my-8021q-macvlan-net --name my-second-macvlan-alpine alpine:latest ash > /dev/null
vm_mark container-started
dk exec my-second-macvlan-alpine ip addr show eth0 | tee /tmp/addr.txt
grep -q 'link/ether 02:42:ac:10:56:02' /tmp/addr.txt && echo "OK container-mac"
grep -q 'inet 172.16.86.2/24' /tmp/addr.txt && echo "OK container-ip"
dk stop my-second-macvlan-alpine > /dev/null
dk network rm my-8021q-macvlan-net > /dev/null
if ip -n dock link show eth0.10 > /dev/null 2>&1; then echo "FAIL eth0.10 still there"; exit 1; fi
echo "OK eth0.10-removed"
vm_mark docker-done
kill "$VM_DOCKERD_PID"; wait "$VM_DOCKERD_PID" || true
echo "ALL-DONE"
`;

const EXPECTED = [
  'OK vlan',
  'OK ipvlan-l2',
  'OK macvlan-passthru',
  'OK native-modules',
  'OK lanplug-bin-visible',
  'OK dockerd 20.10.',
  'OK docker-created-eth0.10',
  'OK container-mac',
  'OK container-ip',
  'OK eth0.10-removed',
  'ALL-DONE',
];

/** `MARK name ms` lines the script printed (ms since the script started, VM clock). */
function marks(output: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const match of output.matchAll(/^MARK (\S+) (\d+)$/gm)) m.set(match[1] ?? '', Number(match[2]));
  return m;
}

test(
  'vm: Debian kernel boots; vlan/ipvlan/passthru work; dockerd 20.10 macvlan on eth0.10',
  { timeout: 600_000 },
  async (t) => {
    if (process.getuid?.() !== 0) assert.fail('the full-kernel lane needs root (9p export of /, /boot/vmlinuz-*)');
    const tar = busyboxRootfsTar();
    const r = await runInVm({ script: SCRIPT, timeoutMs: 540_000, files: { 'alpine.tar': tar } });
    const m = marks(r.output);
    const since = (a: string, b: string): string => {
      const x = m.get(a);
      const y = m.get(b);
      return x === undefined || y === undefined ? '?' : `${y - x} ms`;
    };
    t.diagnostic(
      `wall ${r.wallMs} ms; boot ${r.bootMs} ms; node checks ${since('script-start', 'node-checked')}; ` +
        `dockerd up ${since('node-checked', 'dockerd-up')}; docker part ${since('node-checked', 'docker-done')}`,
    );
    assert.equal(r.exitCode, 0, `script failed:\n${r.output.slice(-8000)}`);
    for (const marker of EXPECTED)
      assert.ok(r.output.includes(marker), `missing "${marker}" in:\n${r.output.slice(-8000)}`);
  },
);
