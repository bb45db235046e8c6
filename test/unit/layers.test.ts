/**
 * The map in docs/architecture.md is the code's: every import of src/ goes to
 * its own room or to a room on a floor below, and every room of src/ is on the
 * map. Read from the sources themselves (import and export-from lines), so a
 * new import that runs up, or a new folder left off the map, fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { repoRoot } from '../support/repo';

const SRC = join(repoRoot(), 'src');

/** The rooms on each floor, top down, from the ```floors block of docs/architecture.md. */
function documentedFloors(): string[][] {
  const doc = readFileSync(join(repoRoot(), 'docs', 'architecture.md'), 'utf8');
  const block = /```floors\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(block !== undefined, 'docs/architecture.md has a ```floors block');
  return block
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => line.split(',').map((room) => room.trim().replace(/\/$/, '')));
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The room a file of src/ belongs to: the folder or file directly under src/. */
function roomOf(file: string): string {
  return relative(SRC, file).split(sep)[0]?.replace(/\.ts$/, '.ts') ?? '';
}

/** Relative imports (and re-exports) of a file, resolved to files of src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)].map((m) => m[1] ?? '');
  return specifiers.map((s) => {
    const target = resolve(dirname(file), s);
    try {
      // As Node resolves: a file first (state/sqlite.ts beside state/sqlite/), then a folder's index.
      if (!existsSync(`${target}.ts`) && statSync(target).isDirectory()) return join(target, 'index.ts');
    } catch {
      // a module, not a folder
    }
    return `${target}.ts`;
  });
}

test('every import of src/ goes down the floors of docs/architecture.md (or stays in its room); every room is on the map', () => {
  const floors = documentedFloors();
  const floorOf = new Map(floors.flatMap((rooms, i) => rooms.map((room) => [room, floors.length - i] as const)));
  const files = sources(SRC);
  const rooms = new Set(files.map(roomOf));
  assert.deepEqual(
    [...rooms].filter((room) => !floorOf.has(room)).sort(),
    [],
    'rooms of src/ that docs/architecture.md does not place on a floor',
  );
  assert.deepEqual(
    [...floorOf.keys()].filter((room) => !rooms.has(room)).sort(),
    [],
    'rooms docs/architecture.md names that src/ does not have',
  );
  const wrong: string[] = [];
  for (const file of files) {
    const from = roomOf(file);
    for (const target of importsOf(file)) {
      if (!target.startsWith(SRC)) continue;
      const to = roomOf(target);
      if (to === from) continue;
      const up = (floorOf.get(to) ?? 0) >= (floorOf.get(from) ?? 0);
      if (up) wrong.push(`${relative(SRC, file)} imports ${relative(SRC, target)} (${from} -> ${to})`);
    }
  }
  assert.deepEqual(wrong, [], 'imports that run up or sideways');
});
