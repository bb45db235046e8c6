/**
 * Every command the docs give is one a test runs or the demo shows (issue 28):
 * the command lines of README.md and docs/*.md are read, and the words of each
 * that say what it does must be found in one file of the tests' sources.
 *
 * A command line is a line of a ```sh block that starts, at its first column,
 * either with a `$ ` prompt (then whatever command follows), or with
 * `lanplug`, `docker`, `podman` or `npm`, after any `NAME=value` environment
 * assignments. A line ending in `\` goes on with the next; a word starting
 * with `#` ends it (a comment). Not commands: lines of other blocks (usage
 * synopses, output, messages), lines starting with a space or `#`
 * (continued comments, output shown under a command), and other programs
 * called without a prompt (the CNI executable by its path in cni.md).
 *
 * A command's signature — what must be found; values never (addresses,
 * names and images differ from test to test):
 * - the tool and its subcommand: one word (`lanplug doctor`, `docker run`),
 *   two after a management word (`docker network create`, `lanplug plugin
 *   build`, `npm run demo`), none before an option (`lanplug --version`);
 * - every option's name (`--subnet` of `--subnet=172.16.86.0/24`, `-o`);
 * - the key of every `key=value` word (`parent=` of `-o parent=eth0`,
 *   `lanplug.dhcp.id=`, `host=` of an `--aux-address`, `LANPLUG_LOG=`);
 * - which driver: the value of `-d`/`--driver` and of `--ipam-driver`;
 * - the names of the environment assignments before the tool.
 * What a container runs (after `docker run`'s or `create`'s image, after
 * `exec`'s container) is not lanplug's and not part of it.
 *
 * Where it is looked for: the words of the string literals of one file under
 * test/ (test/lab/demo.ts included; the bench is not a test, this file is not
 * looked in): a two-word subcommand one word after the other; a one-word
 * subcommand as the first word of an argument list (`dockerOk(['start', …`)
 * or after the tool's name (`docker start …` in a script); every other word
 * of the signature anywhere in the same file. `npm test` and `npm run NAME`
 * run the project's own scripts, which no test can run (a test would run the
 * test runner): the script must be in package.json, and each environment
 * name must be read by a file of test/ or scripts/. DOCS_COMMANDS_DEBUG=1
 * prints, for each command, the files that run it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot } from '../support/repo';

const ROOT = repoRoot();
const TOOLS = ['lanplug', 'docker', 'podman', 'npm'];
/** Per tool, the first words after which the second is part of the subcommand too. */
const MANAGEMENT: Readonly<Record<string, readonly string[]>> = {
  lanplug: ['plugin'],
  docker: ['network', 'container', 'plugin', 'image', 'volume', 'system'],
  podman: ['network', 'container', 'image', 'volume', 'system'],
  npm: ['run'],
};
/** Subcommands after whose image (`name:tag`) the words are the container's command. */
const RUNS_AN_IMAGE = ['run', 'create', 'container run', 'container create'];
/** Subcommands after whose container the words are the command run in it. */
const RUNS_IN_A_CONTAINER = ['exec', 'container exec'];
/** Options whose value says which driver, and so is part of what a command does. */
const DRIVER_OPTIONS = ['-d', '--driver', '--ipam-driver'];

/**
 * Commands no lab can run, as the docs write them (comment left off), each
 * with why. Keep it short: a command a lab can run belongs in a test or the
 * demo instead. Empty: every command of the docs runs in a test or the demo.
 */
const NOT_IN_A_LAB: ReadonlyMap<string, string> = new Map<string, string>([]);

export interface DocCommand {
  where: string;
  text: string;
  tool: string;
  subcommand: string[];
  /** Option names, `key=` keys, driver values. */
  words: string[];
  /** Environment names before the tool (`BENCH_ONLY=`). */
  env: string[];
}

/** Shell words of a line: whitespace apart, '…' and "…" whole (without their quotes); a `#` word ends it. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) {
    const bare = match[3];
    if (bare?.startsWith('#') === true) break;
    words.push(match[1] ?? match[2] ?? bare ?? '');
  }
  return words;
}

/** The command lines of the ```sh blocks of a Markdown text; `file` names them in messages. */
export function docCommands(markdown: string, file: string): DocCommand[] {
  const lines = markdown.split('\n');
  const commands: DocCommand[] = [];
  let inSh = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith('```')) {
      inSh = !inSh && line.trim() === '```sh';
      continue;
    }
    if (!inSh || line === '' || /^[\s#]/.test(line)) continue;
    const prompted = line.startsWith('$ ');
    const first = i + 1;
    let text = prompted ? line.slice(2) : line;
    while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)} ${(lines[++i] ?? '').trim()}`;
    const words = shellWords(text);
    const env: string[] = [];
    while (/^[A-Za-z_]\w*=/.test(words[0] ?? '')) env.push(`${(words.shift() ?? '').split('=')[0] ?? ''}=`);
    const tool = words.shift() ?? '';
    if (!prompted && !TOOLS.includes(tool)) continue;
    text = text.replace(/\s+#.*$/, '').trim();
    commands.push({ where: `${file}:${first}`, text, tool, env, ...signature(tool, words) });
  }
  return commands;
}

function signature(tool: string, words: string[]): { subcommand: string[]; words: string[] } {
  const subcommand: string[] = [];
  while (words.length > 0 && !(words[0] ?? '').startsWith('-')) {
    subcommand.push(words.shift() ?? '');
    if (subcommand.length === 2 || !(MANAGEMENT[tool] ?? []).includes(subcommand[0] ?? '')) break;
  }
  const sub = subcommand.join(' ');
  const found: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i] ?? '';
    if (word.startsWith('-')) {
      const name = word.split('=')[0] ?? word;
      found.push(name);
      const value = words[i + 1];
      if (DRIVER_OPTIONS.includes(name) && !word.includes('=') && value !== undefined) found.push(value);
    } else if (/^[A-Za-z_][\w.-]*=/.test(word)) {
      found.push(`${word.split('=')[0] ?? ''}=`);
    } else if (
      RUNS_IN_A_CONTAINER.includes(sub) ||
      (RUNS_AN_IMAGE.includes(sub) && /^[a-z0-9][\w./-]*:[\w.-]+$/.test(word))
    ) {
      break; // what follows is the container's command
    }
  }
  return { subcommand, words: [...new Set(found)] };
}

/** One file's string literals as words, in order; `opens`: the words that start an argument list. */
interface SourceWords {
  words: string[];
  opens: ReadonlySet<number>;
  set: ReadonlySet<string>;
}

/** The words of every string literal of a TypeScript source (a template's `${…}` a space; comments skipped). */
export function sourceWords(source: string): SourceWords {
  const words: string[] = [];
  const opens = new Set<number>();
  let i = 0;
  while (i < source.length) {
    const c = source[i] ?? '';
    const next = source[i + 1];
    if (c === '/' && (next === '/' || next === '*')) {
      const end = source.indexOf(next === '/' ? '\n' : '*/', i + 2);
      i = end === -1 ? source.length : end + 2;
      continue;
    }
    if (c !== "'" && c !== '"' && c !== '`') {
      i++;
      continue;
    }
    const opener = /[[(]\s*$/.test(source.slice(Math.max(0, i - 20), i));
    let text = '';
    let depth = 0;
    for (i++; i < source.length; i++) {
      const d = source[i] ?? '';
      if (d === '\\') text += source[++i] ?? '';
      else if (c === '`' && depth === 0 && d === '$' && source[i + 1] === '{') {
        depth = 1;
        text += ' ';
        i++;
      } else if (depth > 0) depth += d === '{' ? 1 : d === '}' ? -1 : 0;
      else if (d === c || (c !== '`' && d === '\n')) break;
      else text += d;
    }
    i++;
    const literal = text.split(/[\s"']+/).filter((w) => w !== '');
    if (opener && literal.length > 0) opens.add(words.length);
    words.push(...literal);
  }
  return { words, opens, set: new Set(words) };
}

/** The files under `dir`, but those under a folder `skip` names. */
function filesUnder(dir: string, skip: readonly string[] = []): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return skip.includes(name) ? [] : filesUnder(path, skip);
    return [path];
  });
}

/** The tests' sources: every TypeScript file under test/ but the bench's and this one. */
function testSources(): { path: string; text: string; words: SourceWords }[] {
  return filesUnder(join(ROOT, 'test'), ['bench'])
    .filter((path) => path.endsWith('.ts') && !path.endsWith(join('unit', 'docs-commands.test.ts')))
    .map((path) => {
      const text = readFileSync(path, 'utf8');
      return { path, text, words: sourceWords(text) };
    });
}

/** Whether one file runs the command: its subcommand where a command starts, every other word anywhere. */
export function runs(command: DocCommand, text: string, source: SourceWords): boolean {
  const { words, opens, set } = source;
  const { tool, subcommand } = command;
  if (!text.includes(tool)) return false;
  const at = (i: number): boolean =>
    subcommand.every((word, k) => words[i + k] === word) &&
    (subcommand.length > 1 || opens.has(i) || words[i - 1] === tool);
  if (subcommand.length > 0 && !words.some((_, i) => at(i))) return false;
  const has = (wanted: string): boolean =>
    set.has(wanted) || [...set].some((w) => w.startsWith(wanted.endsWith('=') ? wanted : `${wanted}=`));
  return [...command.words, ...command.env].every(has);
}

/** `npm test`, `npm run NAME`: a script of package.json; its environment read under test/ or scripts/. */
function npmScriptRuns(command: DocCommand): boolean {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const [verb, name] = command.subcommand;
  if (scripts[(verb === 'run' ? name : verb) ?? ''] === undefined) return false;
  const readers = [...filesUnder(join(ROOT, 'test')), ...filesUnder(join(ROOT, 'scripts'))].map((f) =>
    readFileSync(f, 'utf8'),
  );
  return command.env.every((env) => readers.some((text) => text.includes(env.slice(0, -1))));
}

function signatureKey(command: DocCommand): string {
  return [...command.env, command.tool, ...command.subcommand, ...command.words].join(' ');
}

test('the docs command lines are read as this file says: ```sh blocks, continuations, signatures without values', () => {
  const markdown = [
    '```sh',
    '# a comment',
    'docker network create -d lanplug-macvlan --ipam-driver lanplug-dhcp \\',
    '  --subnet 192.168.1.0/24 --ipv6 --subnet=2001:db8:1::/64 -o parent=eth0 office   # and a comment',
    'docker run -d --network office --name app alpine:latest ping -c 1 192.168.1.1',
    '                             # output under a command',
    'BENCH_ONLY=shared npm run bench',
    '$ systemctl restart lanplug',
    'CNI_COMMAND=ADD /opt/cni/bin/lanplug-macvlan < demo-lan.conf',
    '```',
    '```',
    'lanplug status [--state-dir DIR]',
    '```',
  ].join('\n');
  assert.deepEqual(
    docCommands(markdown, 'x.md').map((c) => `${c.where} ${signatureKey(c)}`),
    [
      'x.md:3 docker network create -d lanplug-macvlan --ipam-driver lanplug-dhcp --subnet --ipv6 -o parent=',
      'x.md:5 docker run -d --network --name',
      'x.md:7 BENCH_ONLY= npm run bench',
      'x.md:8 systemctl restart',
    ],
  );
  const source = "run(['network', 'create', `-o parent=${p}`]); // 'not this'\nhost.dockerOk(['start', name]);";
  assert.deepEqual(sourceWords(source).words, ['network', 'create', '-o', 'parent=', 'start']);
  assert.deepEqual([...sourceWords(source).opens], [0, 4]);
  const [create, run] = docCommands(markdown, 'x.md');
  assert.ok(create && run);
  assert.equal(runs({ ...create, words: ['-o', 'parent='] }, 'docker', sourceWords(source)), true);
  assert.equal(runs(create, 'docker', sourceWords(source)), false, 'no --ipam-driver lanplug-dhcp there');
  // `start` as an argument list's first word is `docker start`; inside `network create …` it is not `docker create`.
  assert.equal(runs({ ...run, subcommand: ['start'], words: [] }, 'docker', sourceWords(source)), true);
  assert.equal(runs({ ...run, subcommand: ['create'], words: [] }, 'docker', sourceWords(source)), false);
});

test('every command in README.md and docs/*.md is one a test runs or the demo shows', () => {
  const sources = testSources();
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join('docs', name));
  const unrun: string[] = [];
  const allowed = new Set<string>();
  let count = 0;
  for (const file of ['README.md', ...docs]) {
    for (const command of docCommands(readFileSync(join(ROOT, file), 'utf8'), file)) {
      count++;
      const key = signatureKey(command);
      if (NOT_IN_A_LAB.has(command.text)) {
        allowed.add(command.text);
        continue;
      }
      const npmScript = command.tool === 'npm' && ['run', 'test'].includes(command.subcommand[0] ?? '');
      const by = npmScript ? [] : sources.filter((s) => runs(command, s.text, s.words));
      if (process.env['DOCS_COMMANDS_DEBUG'] !== undefined)
        console.log(`${command.where} | ${key} | ${by.map((s) => relative(ROOT, s.path)).join(' ')}`);
      if (npmScript ? !npmScriptRuns(command) : by.length === 0)
        unrun.push(`${command.where}: ${command.text}  [${key}]`);
    }
  }
  assert.ok(count >= 40, `only ${count} command lines found: is the reading of the docs broken?`);
  assert.deepEqual(unrun, [], 'commands in the docs that no test runs and the demo does not show');
  assert.deepEqual(
    [...NOT_IN_A_LAB.keys()].filter((key) => !allowed.has(key)),
    [],
    'allowed commands the docs no longer give',
  );
});
