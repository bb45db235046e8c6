// Node's TAP output read back: each test (subtests included) with its result and the diagnostics it
// wrote. What the versions table takes from a lane's run (versions-table.ts) is read through this.

export interface TapTest {
  readonly name: string;
  readonly passed: boolean;
  /** Skipped or todo: proves nothing, fails nothing. */
  readonly skipped: boolean;
  /** The test's diagnostics, as written (unescaped). */
  readonly diagnostics: string[];
}

/** TAP's escapes in names and diagnostics (node's reporter writes `\#` and `\\`). */
function tapUnescape(text: string): string {
  return text.replace(/\\(.)/g, '$1');
}

/** A result line's description: the name before the first unescaped `#`, and the directive after it. */
function splitDirective(text: string): { name: string; directive: string } {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '#') return { name: text.slice(0, i).trimEnd(), directive: text.slice(i + 1).trim() };
  }
  return { name: text, directive: '' };
}

/**
 * The tests of node's TAP output, subtests included, each with the diagnostics that follow its result
 * at its own depth (where node writes a test's diagnostics).
 */
export function parseTap(text: string): TapTest[] {
  const tests: TapTest[] = [];
  /** The last result at each indentation, while its diagnostics may follow. */
  const last = new Map<number, TapTest>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const indent = line.length - line.trimStart().length;
    const body = line.trimStart();
    const result = /^(ok|not ok) \d+(?: - (.*))?$/.exec(body);
    if (result !== null) {
      const { name, directive } = splitDirective(result[2] ?? '');
      const skipped = /^(SKIP|TODO)\b/i.test(directive);
      const test: TapTest = {
        name: tapUnescape(name),
        passed: result[1] === 'ok' && !skipped,
        skipped,
        diagnostics: [],
      };
      tests.push(test);
      last.set(indent, test);
      // its YAML block
      if (lines[i + 1]?.trimStart() === '---') {
        while (i + 1 < lines.length && (lines[i + 1] as string).trimStart() !== '...') i++;
        i++;
      }
      continue;
    }
    if (body.startsWith('# Subtest:') || /^\d+\.\.\d+/.test(body)) {
      last.delete(indent);
    } else if (body.startsWith('# ')) {
      last.get(indent)?.diagnostics.push(tapUnescape(body.slice(2)));
    }
  }
  return tests;
}
