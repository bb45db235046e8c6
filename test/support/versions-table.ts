// The "Docker versions" table of docs/docker.md, made from what the tests prove: the rows of
// engine-behaviours.ts, the tests tagged `[engine:<id>]` (and the engine each one runs on: its
// lane's, or the engine whose bodies a contract test replays), and each row's newest result on each
// engine, read from the TAP output that scripts/test leaves in .lab/results/. A cell says "proved by
// lane" only for a row whose tagged tests passed in the recorded run of that lane ("failed" when one
// of them failed there, "not run yet" when none ran). The runs are recorded in the table's block
// itself (one comment line per engine), so that the committed table can be checked against the
// sources alone (test/unit/versions-table.test.ts). `npm run versions-table` runs main().

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BEHAVIOURS,
  ENGINE_COLUMNS,
  engineTag,
  parseEngineDiagnostic,
  tagsIn,
  type Behaviour,
  type EngineColumn,
  type TableEngine,
} from './engine-behaviours';
import { repoRoot } from './repo';
import { parseTap, type TapTest } from './tap';

export const DOC = path.join('docs', 'docker.md');
export const TABLE_START = '<!-- versions-table:start -->';
export const TABLE_END = '<!-- versions-table:end -->';
/** Where scripts/test leaves each run's TAP output (one file per set of lanes). */
export const RESULTS_DIR = path.join('.lab', 'results');

// ---- Which tests carry which tags, and on which engines they run (from the sources) ----

export interface TaggedTest {
  /** The file that defines the test, relative to the repository. */
  readonly file: string;
  readonly name: string;
  readonly ids: readonly string[];
  /** The engines the test runs on: its lane's (and the lanes of files importing it), or the engine it replays. */
  readonly engines: readonly TableEngine[];
}

function testFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(full);
    return entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

/** The test names a file defines: the first argument of each test(...) or it(...), a string literal. */
export function testNamesIn(source: string): string[] {
  return [...source.matchAll(/\b(?:test|it)\(\s*(['"`])((?:\\.|(?!\1)[^\\])*)\1/g)].map((m) => m[2] as string);
}

/** The test files a file runs by importing them (`import '../e2e/everyday.test';`), as repository paths. */
function importedTestFiles(root: string, file: string, source: string): string[] {
  return [...source.matchAll(/^import\s+'(\.{1,2}\/[^']+\.test)';$/gm)].map((m) =>
    path.relative(root, path.resolve(path.dirname(path.join(root, file)), `${m[1] as string}.ts`)),
  );
}

/** Every tagged test of the repository, with the engines it runs on; and what is wrong with the tagging. */
export function taggedTests(
  root = repoRoot(),
  columns: readonly EngineColumn[] = ENGINE_COLUMNS,
): { tests: TaggedTest[]; problems: string[] } {
  const files = testFiles(path.join(root, 'test')).map((f) => path.relative(root, f));
  const sources = new Map(files.map((f) => [f, fs.readFileSync(path.join(root, f), 'utf8')]));
  const problems: string[] = [];
  const enginesOf = new Map<string, Set<TableEngine>>(files.map((f) => [f, new Set()]));
  for (const column of columns) {
    if (column.proof.kind !== 'lane') continue;
    // scripts/test runs test/<lane>/*.test.js, and with each the test files it imports
    const laneDir = path.join('test', column.proof.lane);
    for (const file of files.filter((f) => path.dirname(f) === laneDir)) {
      for (const runs of [file, ...importedTestFiles(root, file, sources.get(file) ?? '')]) {
        enginesOf.get(runs)?.add(column.engine);
      }
    }
  }
  for (const [file, source] of sources) {
    for (const m of source.matchAll(/replaysEngineBodies\('([a-z0-9]+)'\)/g)) {
      const column = columns.find((c) => c.engine === m[1]);
      if (column?.proof.kind !== 'contract') {
        problems.push(`${file} replays the bodies of ${m[1] as string}, which is no contract-test column of the table`);
      } else {
        enginesOf.get(file)?.add(column.engine);
      }
    }
  }
  const known = new Set(BEHAVIOURS.map((b) => b.id));
  const tests: TaggedTest[] = [];
  for (const [file, source] of sources) {
    for (const name of testNamesIn(source)) {
      const ids = tagsIn(name);
      if (ids.length === 0) continue;
      const engines = [...(enginesOf.get(file) ?? [])];
      tests.push({ file, name, ids, engines });
      for (const id of ids.filter((i) => !known.has(i))) {
        problems.push(`${file}: '${name}' carries ${engineTag(id)}, which no row of engine-behaviours.ts declares`);
      }
      if (engines.length === 0) {
        problems.push(
          `${file}: '${name}' is tagged, but the file runs on no engine of the table (no lane, no contract)`,
        );
      }
      const onLane = engines.some((e) => columns.find((c) => c.engine === e)?.proof.kind === 'lane');
      if (onLane && !/\b(?:useLab|reportEngineOfTaggedTests)\(/.test(source)) {
        problems.push(
          `${file}: '${name}' is tagged, but the file never reports its engine (useLab or reportEngineOfTaggedTests)`,
        );
      }
    }
  }
  return { tests, problems };
}

/** Where the rows and the tags disagree: a claim no test proves there, or a test proving what its row does not claim. */
export function claimProblems(
  tests: readonly TaggedTest[],
  behaviours: readonly Behaviour[] = BEHAVIOURS,
  columns: readonly EngineColumn[] = ENGINE_COLUMNS,
): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const row of behaviours) {
    if (seen.has(row.id)) problems.push(`row '${row.id}' is declared twice`);
    seen.add(row.id);
    for (const column of columns) {
      const proving = tests.filter((t) => t.ids.includes(row.id) && t.engines.includes(column.engine));
      if (row[column.engine].proved && proving.length === 0) {
        problems.push(
          `row '${row.id}' says it is proved on ${column.engine}, but no test that runs there carries ${engineTag(row.id)}`,
        );
      }
      if (!row[column.engine].proved && proving.length > 0) {
        problems.push(
          `row '${row.id}' says it is not tested on ${column.engine}, but ${proving.map((t) => `${t.file}: '${t.name}'`).join(', ')} proves it there: say so in engine-behaviours.ts`,
        );
      }
    }
  }
  return problems;
}

// ---- The runs behind the table ----

/** The last recorded run of the tests of one engine: its lane's dockerd version, the rows its tagged tests proved and failed. */
export interface Run {
  readonly engine: TableEngine;
  /** The version dockerd reported (lanes); undefined for contract tests. */
  readonly dockerd: string | undefined;
  /** The rows whose tagged tests all passed. */
  readonly proved: readonly string[];
  /** The rows a tagged test failed. */
  readonly failed: readonly string[];
}

const RUN_LINE =
  /^<!-- run (docker\d+): (?:dockerd (\S+)|contract tests); proved:((?: [a-z0-9-]+)*); failed:((?: [a-z0-9-]+)*) -->$/;

/** ` a b c`: a list of row ids as a run line writes it. */
const idList = (ids: readonly string[]): string =>
  [...ids]
    .sort()
    .map((id) => ` ${id}`)
    .join('');
const ids = (list: string): string[] => list.split(' ').filter((id) => id !== '');

function runLine(run: Run): string {
  const by = run.dockerd === undefined ? 'contract tests' : `dockerd ${run.dockerd}`;
  return `<!-- run ${run.engine}: ${by}; proved:${idList(run.proved)}; failed:${idList(run.failed)} -->`;
}

/** The runs a table block records. */
export function runsInBlock(block: string, columns: readonly EngineColumn[] = ENGINE_COLUMNS): Map<TableEngine, Run> {
  const runs = new Map<TableEngine, Run>();
  for (const line of block.split('\n')) {
    const m = RUN_LINE.exec(line);
    const engine = columns.find((c) => c.engine === m?.[1])?.engine;
    if (m === null || engine === undefined) continue;
    runs.set(engine, { engine, dockerd: m[2], proved: ids(m[3] as string), failed: ids(m[4] as string) });
  }
  return runs;
}

/** What is wrong with a run for its column: a lane run on another version than the column names, a contract run on a lane. */
export function runProblems(run: Run, columns: readonly EngineColumn[] = ENGINE_COLUMNS): string[] {
  const column = columns.find((c) => c.engine === run.engine);
  if (column === undefined) return [`a run on ${run.engine}, which has no column`];
  if (column.proof.kind === 'contract') {
    return run.dockerd === undefined
      ? []
      : [`${run.engine} is proved by contract tests, but a lane ran dockerd ${run.dockerd}`];
  }
  if (run.dockerd === undefined)
    return [`${run.engine} is proved by the ${column.proof.lane} lane, but its run names no dockerd`];
  if (run.dockerd !== column.version && !run.dockerd.startsWith(`${column.version}.`)) {
    return [
      `the ${column.proof.lane} lane ran dockerd ${run.dockerd}, but the ${column.engine} column says ${column.version}: correct ENGINE_COLUMNS in test/support/engine-behaviours.ts`,
    ];
  }
  return [];
}

// ---- What a lane's TAP output proves ----

/** What one TAP output proves and fails on each engine. */
export interface TapEvidence {
  readonly runs: Map<TableEngine, Run>;
  /** Per engine (or 'any' when the engine is unknown): what forbids taking the output as a run. */
  readonly problems: Map<TableEngine | 'any', string[]>;
}

export function evidenceFromTap(tests: readonly TapTest[], source: string): TapEvidence {
  const passed = new Map<TableEngine, Set<string>>();
  const failed = new Map<TableEngine, Set<string>>();
  const dockerds = new Map<TableEngine, Set<string>>();
  const problems = new Map<TableEngine | 'any', string[]>();
  const problem = (engine: TableEngine | 'any', text: string): void => {
    problems.set(engine, [...(problems.get(engine) ?? []), `${source}: ${text}`]);
  };
  for (const test of tests) {
    const ids = tagsIn(test.name);
    if (ids.length === 0 || test.skipped) continue;
    const proofs = test.diagnostics.flatMap((d) => parseEngineDiagnostic(d) ?? []);
    const engines = [...new Set(proofs.map((p) => p.engine))];
    if (engines.length !== 1) {
      const why =
        engines.length > 1
          ? `names several engines (${engines.join(', ')})`
          : test.passed
            ? 'names no engine'
            : 'failed before naming its engine';
      problem('any', `'${test.name}' ${why}`);
      continue;
    }
    const engine = engines[0] as TableEngine;
    for (const proof of proofs) {
      if (proof.kind === 'lane') dockerds.set(engine, (dockerds.get(engine) ?? new Set()).add(proof.dockerd));
    }
    const rows = (test.passed ? passed : failed).get(engine) ?? new Set<string>();
    for (const id of ids) rows.add(id);
    (test.passed ? passed : failed).set(engine, rows);
  }
  const runs = new Map<TableEngine, Run>();
  for (const engine of new Set([...passed.keys(), ...failed.keys()])) {
    const versions = [...(dockerds.get(engine) ?? [])];
    if (versions.length > 1) problem(engine, `${engine} ran as several dockerd versions: ${versions.join(', ')}`);
    const failing = failed.get(engine) ?? new Set<string>();
    const run: Run = {
      engine,
      dockerd: versions[0],
      proved: [...(passed.get(engine) ?? [])].filter((id) => !failing.has(id)).sort(),
      failed: [...failing].sort(),
    };
    for (const p of runProblems(run)) problem(engine, p);
    runs.set(engine, run);
  }
  return { runs, problems };
}

/** Two runs on one dockerd as one: each row as the newer run found it, else as the older did. */
export function combineRuns(older: Run, newer: Run): Run {
  const ranAgain = new Set([...newer.proved, ...newer.failed]);
  return {
    ...newer,
    proved: [...older.proved.filter((id) => !ranAgain.has(id)), ...newer.proved].sort(),
    failed: [...older.failed.filter((id) => !ranAgain.has(id)), ...newer.failed].sort(),
  };
}

// ---- The table ----

function cellText(row: Behaviour, column: EngineColumn, run: Run | undefined): string {
  const cell = row[column.engine];
  if (!cell.proved) return cell.why === undefined ? 'not tested' : `not tested (${cell.why})`;
  const kind = column.proof.kind === 'lane' ? 'lane test' : 'contract test';
  // what a failed test would have proved is not said
  if (run?.failed.includes(row.id) === true) return `${kind} failed (${column.version})`;
  const proof =
    run?.proved.includes(row.id) !== true
      ? `${kind}, not run yet (${column.version})`
      : column.proof.kind === 'lane'
        ? `proved by lane (${column.version})`
        : `contract test (${column.version})`;
  return cell.differs === undefined ? proof : `differs: ${cell.differs}; ${proof}`;
}

function runsSentence(runs: ReadonlyMap<TableEngine, Run>, columns: readonly EngineColumn[]): string {
  const parts = columns.map((column) => {
    const run = runs.get(column.engine);
    if (column.proof.kind === 'contract') {
      return `Docker ${column.version}'s bodies replayed by the unit lane's contract tests${run === undefined ? ' (no run recorded yet)' : ''}`;
    }
    return run === undefined
      ? `the ${column.proof.lane} lane (no run recorded yet)`
      : `the ${column.proof.lane} lane on dockerd ${run.dockerd ?? '?'}`;
  });
  return `The runs behind this table: ${parts.join('; ')}.`;
}

/** The lines between the markers: the table, the sentence naming its runs, and the runs' records. */
export function renderBlock(
  runs: ReadonlyMap<TableEngine, Run>,
  behaviours: readonly Behaviour[] = BEHAVIOURS,
  columns: readonly EngineColumn[] = ENGINE_COLUMNS,
): string {
  // a run keeps only what the rows still claim on its engine
  const kept = new Map<TableEngine, Run>();
  for (const [engine, run] of runs) {
    const claimed = new Set(behaviours.filter((b) => b[engine].proved).map((b) => b.id));
    kept.set(engine, {
      ...run,
      proved: run.proved.filter((id) => claimed.has(id)),
      failed: run.failed.filter((id) => claimed.has(id)),
    });
  }
  const escape = (text: string): string => text.replace(/\|/g, '\\|');
  return [
    "<!-- Made by `npm run versions-table` from test/support/engine-behaviours.ts, the [engine:…] tags of the tests and the lanes' TAP output; do not edit by hand. -->",
    '',
    `| Behaviour | ${columns.map((c) => c.heading).join(' | ')} |`,
    `|---|${columns.map(() => '---|').join('')}`,
    ...behaviours.map(
      (row) =>
        `| ${escape(row.behaviour)} | ${columns.map((c) => escape(cellText(row, c, kept.get(c.engine)))).join(' | ')} |`,
    ),
    '',
    runsSentence(kept, columns),
    ...columns.flatMap((c) => {
      const run = kept.get(c.engine);
      return run === undefined ? [] : [runLine(run)];
    }),
  ].join('\n');
}

/** The text between the markers of a document (without the marker lines' newlines). */
export function blockOf(doc: string): string {
  const start = doc.indexOf(TABLE_START);
  const end = doc.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`${DOC} has no ${TABLE_START} … ${TABLE_END} block`);
  return doc
    .slice(start + TABLE_START.length, end)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}

export function withBlock(doc: string, block: string): string {
  const start = doc.indexOf(TABLE_START);
  const end = doc.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`${DOC} has no ${TABLE_START} … ${TABLE_END} block`);
  return `${doc.slice(0, start + TABLE_START.length)}\n${block}\n${doc.slice(end)}`;
}

// ---- npm run versions-table [TAP file...] ----

function main(args: readonly string[]): number {
  const root = repoRoot();
  const { tests, problems } = taggedTests(root);
  problems.push(...claimProblems(tests));
  if (problems.length > 0) {
    process.stderr.write(`versions-table: the rows and the tests disagree:\n  ${problems.join('\n  ')}\n`);
    return 1;
  }
  const docPath = path.join(root, DOC);
  const doc = fs.readFileSync(docPath, 'utf8');
  const runs = runsInBlock(blockOf(doc));
  const resultsDir = path.join(root, RESULTS_DIR);
  const files =
    args.length > 0
      ? [...args]
      : fs.existsSync(resultsDir)
        ? fs
            .readdirSync(resultsDir)
            .filter((f) => f.endsWith('.tap'))
            .map((f) => path.join(resultsDir, f))
        : [];
  if (files.length === 0) {
    process.stderr.write(`versions-table: no TAP output in ${RESULTS_DIR}/; run a lane first (npm test docker28)\n`);
    return 1;
  }
  // oldest first: each row takes its newest result on each engine (runs on one dockerd combine)
  const byAge = files.map((f) => ({ f, mtime: fs.statSync(f).mtimeMs })).sort((a, b) => a.mtime - b.mtime);
  const taken = new Map<TableEngine, { run: Run; files: string[]; problems: string[] }>();
  const refused: string[] = [];
  for (const { f } of byAge) {
    const file = path.relative(root, path.resolve(f));
    const evidence = evidenceFromTap(parseTap(fs.readFileSync(f, 'utf8')), file);
    refused.push(...(evidence.problems.get('any') ?? []));
    for (const [engine, run] of evidence.runs) {
      const before = taken.get(engine);
      const problems = evidence.problems.get(engine) ?? [];
      taken.set(
        engine,
        before === undefined || before.run.dockerd !== run.dockerd
          ? { run, files: [file], problems }
          : {
              run: combineRuns(before.run, run),
              files: [...before.files, file],
              problems: [...before.problems, ...problems],
            },
      );
    }
  }
  for (const [engine, { run, problems }] of taken) {
    refused.push(...problems);
    for (const id of [...run.proved, ...run.failed].filter(
      (i) => !BEHAVIOURS.find((b) => b.id === i)?.[engine].proved,
    )) {
      refused.push(
        `the run tested '${id}' on ${engine}, which the rows do not claim there: is it older than the tests?`,
      );
    }
  }
  if (refused.length > 0) {
    process.stderr.write(`versions-table: the lanes' output does not prove the table:\n  ${refused.join('\n  ')}\n`);
    return 1;
  }
  for (const [engine, { run, files: from }] of taken) {
    runs.set(engine, run);
    const claimed = BEHAVIOURS.filter((b) => b[engine].proved).map((b) => b.id);
    const missing = claimed.filter((id) => !run.proved.includes(id) && !run.failed.includes(id));
    process.stdout.write(
      `${engine}: ${run.proved.length} of ${claimed.length} rows proved${run.dockerd === undefined ? '' : ` on dockerd ${run.dockerd}`} (${from.join(', ')})` +
        `${run.failed.length > 0 ? `; FAILED: ${run.failed.join(', ')}` : ''}${missing.length > 0 ? `; not run: ${missing.join(', ')}` : ''}\n`,
    );
  }
  const updated = withBlock(doc, renderBlock(runs));
  if (updated !== doc) fs.writeFileSync(docPath, updated);
  process.stdout.write(`${DOC}: ${updated === doc ? 'unchanged' : 'table rewritten'}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
