/**
 * The "Docker versions" table of docs/docker.md says only what the tests prove: every row is proved
 * on each engine it claims by a tagged test that runs there (and a tagged test proves only what its
 * row claims), and the committed table is the one the rows, the tags and its recorded runs make.
 * A test removed, a tag dropped, a row changed or a table edited by hand fails here. And the reader
 * of the lanes' TAP output takes a row as proved only from a passing test that names its engine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BEHAVIOURS, engineDiagnostic, type Behaviour } from '../support/engine-behaviours';
import { repoRoot } from '../support/repo';
import {
  DOC,
  blockOf,
  claimProblems,
  combineRuns,
  evidenceFromTap,
  renderBlock,
  runProblems,
  runsInBlock,
  taggedTests,
  type Run,
  type TaggedTest,
} from '../support/versions-table';
import { parseTap } from '../support/tap';

test('every row is proved on each engine it claims by a tagged test that runs there, and on no other', () => {
  const { tests, problems } = taggedTests();
  assert.deepEqual([...problems, ...claimProblems(tests)], []);
  // the lanes' tagged files are found: a docker28 row proved by an e2e file the docker28 lane imports
  const everyday = tests.find(
    (t) => t.file === join('test', 'e2e', 'everyday.test.ts') && t.ids.includes('mac-address'),
  );
  assert.deepEqual(everyday?.engines, ['docker20', 'docker28']);
});

test('a row whose test is gone, or a test the row does not know of, is named', () => {
  const row: Behaviour = {
    id: 'gw-priority',
    behaviour: 'gw-priority',
    docker20: { proved: false },
    docker28: { proved: true },
    docker29: { proved: true },
  };
  const contract: TaggedTest = {
    file: 'x.test.ts',
    name: 'x [engine:gw-priority]',
    ids: ['gw-priority'],
    engines: ['docker29'],
  };
  assert.deepEqual(claimProblems([contract], [row]), [
    "row 'gw-priority' says it is proved on docker28, but no test that runs there carries [engine:gw-priority]",
  ]);
  const on20 = { ...contract, engines: ['docker20', 'docker28', 'docker29'] as const };
  assert.deepEqual(claimProblems([on20], [row]), [
    "row 'gw-priority' says it is not tested on docker20, but x.test.ts: 'x [engine:gw-priority]' proves it there: say so in engine-behaviours.ts",
  ]);
});

test("docs/docker.md's versions table is the one the rows, the tags and its recorded runs make", () => {
  const block = blockOf(readFileSync(join(repoRoot(), DOC), 'utf8'));
  const runs = runsInBlock(block);
  assert.deepEqual(
    [...runs.values()].flatMap((r) => runProblems(r)),
    [],
  );
  assert.equal(block, renderBlock(runs), 'run `npm run versions-table` (after the lanes whose rows changed)');
});

/** TAP as node's reporter writes it for two tagged tests and a subtest. */
const TAP = [
  'TAP version 13',
  '# \\# a line a test printed',
  '# Subtest: seed \\# tutorial [engine:seed-tutorial]',
  'ok 1 - seed \\# tutorial [engine:seed-tutorial]',
  '  ---',
  '  duration_ms: 12.5',
  '  ...',
  `# ${engineDiagnostic({ engine: 'docker28', kind: 'lane', dockerd: '28.5.2' })}`,
  '# Subtest: announcements [engine:announcements]',
  'not ok 2 - announcements [engine:announcements]',
  '  ---',
  "  error: 'Expected values to be strictly deep-equal'",
  '  ...',
  `# ${engineDiagnostic({ engine: 'docker28', kind: 'lane', dockerd: '28.5.2' })}`,
  '# Subtest: announcements again [engine:announcements]',
  'ok 3 - announcements again [engine:announcements]',
  `# ${engineDiagnostic({ engine: 'docker28', kind: 'lane', dockerd: '28.5.2' })}`,
  '# Subtest: restarts [engine:container-restart]',
  'ok 3 - restarts [engine:container-restart] # SKIP no carrier',
  '  ---',
  '  ...',
  '# Subtest: outer',
  '    # Subtest: inner [engine:mtu]',
  '    ok 1 - inner [engine:mtu]',
  '      ---',
  '      ...',
  `    # ${engineDiagnostic({ engine: 'docker20', kind: 'lane', dockerd: '20.10.24+dfsg1' })}`,
  '    1..1',
  'ok 4 - outer',
  '  ---',
  '  ...',
  '# Subtest: untold [engine:mtu]',
  'ok 5 - untold [engine:mtu]',
  '# Subtest: broken [engine:mtu]',
  'not ok 6 - broken [engine:mtu]',
  '  ---',
  "  error: 'before hook failed'",
  '  ...',
  '1..6',
  '# tests 6',
].join('\n');

test("the lanes' TAP: a row is proved by passing tests naming its engine, failed by one failing there; a test naming none is refused", () => {
  const tests = parseTap(TAP);
  assert.deepEqual(
    tests.map((t) => [t.name, t.passed, t.skipped, t.diagnostics.length]),
    [
      ['seed # tutorial [engine:seed-tutorial]', true, false, 1],
      ['announcements [engine:announcements]', false, false, 1],
      ['announcements again [engine:announcements]', true, false, 1],
      ['restarts [engine:container-restart]', false, true, 0],
      ['inner [engine:mtu]', true, false, 1],
      ['outer', true, false, 0],
      ['untold [engine:mtu]', true, false, 0],
      ['broken [engine:mtu]', false, false, 0],
    ],
  );
  const { runs, problems } = evidenceFromTap(tests, 'lane.tap');
  assert.deepEqual(runs.get('docker28'), {
    engine: 'docker28',
    dockerd: '28.5.2',
    proved: ['seed-tutorial'],
    failed: ['announcements'],
  });
  assert.deepEqual(runs.get('docker20'), {
    engine: 'docker20',
    dockerd: '20.10.24+dfsg1',
    proved: ['mtu'],
    failed: [],
  });
  assert.equal(problems.get('docker28'), undefined);
  assert.deepEqual(problems.get('any'), [
    "lane.tap: 'untold [engine:mtu]' names no engine",
    "lane.tap: 'broken [engine:mtu]' failed before naming its engine",
  ]);
});

test('a run on another dockerd than its column names is refused; the cells say what the run proved, failed or did not run', () => {
  assert.deepEqual(runProblems({ engine: 'docker28', dockerd: '28.6.0', proved: [], failed: [] }), [
    'the docker28 lane ran dockerd 28.6.0, but the docker28 column says 28.5: correct ENGINE_COLUMNS in test/support/engine-behaviours.ts',
  ]);
  assert.deepEqual(runProblems({ engine: 'docker28', dockerd: '28.5.2', proved: [], failed: [] }), []);
  const rows = BEHAVIOURS.filter((b) => b.id === 'gateway-without-flag' || b.id === 'gw-priority');
  const run: Run = {
    engine: 'docker28',
    dockerd: '28.5.2',
    proved: ['gateway-without-flag', 'no-such-row'],
    failed: ['gw-priority'],
  };
  const block = renderBlock(new Map([['docker28', run]]), rows);
  assert.deepEqual(
    block.split('\n').filter((l) => l.startsWith('| `') || l.startsWith('| A')),
    [
      "| A network made without `--gateway` gets a default gateway | not tested | proved by lane (28.5) | differs: no gateway unless `--gateway` is given, as with Docker's own macvlan; contract test, not run yet (29) |",
      '| `--network name=…,gw-priority=N`: the default route follows the higher priority | not tested (no gw-priority before 28) | lane test failed (28.5) | contract test, not run yet (29) |',
    ],
  );
  assert.match(block, /^<!-- run docker28: dockerd 28\.5\.2; proved: gateway-without-flag; failed: gw-priority -->$/m);
});

test('two outputs of one dockerd combine: each row as the newer one found it', () => {
  const lane: Run = {
    engine: 'docker28',
    dockerd: '28.5.2',
    proved: ['mtu', 'seed-tutorial'],
    failed: ['gw-priority'],
  };
  const oneFile: Run = { engine: 'docker28', dockerd: '28.5.2', proved: ['gw-priority'], failed: ['mtu'] };
  assert.deepEqual(combineRuns(lane, oneFile), {
    engine: 'docker28',
    dockerd: '28.5.2',
    proved: ['gw-priority', 'seed-tutorial'],
    failed: ['mtu'],
  });
});
