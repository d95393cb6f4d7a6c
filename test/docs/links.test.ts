/**
 * The README and docs/ link to each other by file and heading. A heading renamed or a
 * section moved to another file breaks those links silently on GitHub, so every relative
 * link and #anchor is checked here: the file exists, and the anchor is one of its headings
 * as GitHub writes them. Reads files only; no database.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/cli.js';

const DOCS = path.join(REPO_ROOT, 'docs');
const documents = [
  path.join(REPO_ROOT, 'README.md'),
  ...fs
    .readdirSync(DOCS)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => path.join(DOCS, name)),
];

/**
 * The lines outside fenced code blocks, with their numbers: a `#` in a shell block is a
 * comment, not a heading, and a `[x](y)` there is code, not a link.
 */
function prose(file: string): { line: number; text: string }[] {
  const lines: { line: number; text: string }[] = [];
  let fence: string | null = null;
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const marker = /^\s*(`{3,}|~{3,})/.exec(text)?.[1];
      if (marker && (fence === null || marker.startsWith(fence))) {
        fence = fence === null ? marker : null;
        return;
      }
      if (fence === null) lines.push({ line: i + 1, text });
    });
  return lines;
}

/**
 * GitHub's anchor for a heading: its text lowercased, every character that is not a
 * letter, mark, digit, connector (`_`), space or hyphen removed, each space a hyphen; a
 * repeated heading gets -1, -2, ... after the first.
 */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { text } of prose(file)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(text)?.[1];
    if (heading === undefined) continue;
    // A link in a heading shows its text only.
    const base = slug(heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1'));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

interface Link {
  file: string;
  line: number;
  target: string;
}

function links(file: string): Link[] {
  const out: Link[] = [];
  for (const { line, text } of prose(file)) {
    // Code spans show their text as written: `[sku...] (x)` is not a link.
    const shown = text.replace(/(`+)[\s\S]*?\1/g, '');
    for (const m of shown.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      out.push({ file, line, target: m[1] });
    }
  }
  return out;
}

const external = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target);
const where = (link: Link) => `${path.relative(REPO_ROOT, link.file)}:${link.line} → ${link.target}`;

describe('links between the README and docs/', () => {
  it('GitHub anchors: lowercase, punctuation removed, spaces to hyphens', () => {
    expect(slug("For the shop's backend team: the order API (`stockctl serve`)")).toBe(
      'for-the-shops-backend-team-the-order-api-stockctl-serve',
    );
    expect(slug('Without cron: `sweep --every`')).toBe('without-cron-sweep---every');
    expect(slug('Flash sales: `batched` against the database\'s own limits')).toBe(
      'flash-sales-batched-against-the-databases-own-limits',
    );
    expect(slug('Why NOTIFY only while someone listens (a), and not (b) or (c)')).toBe(
      'why-notify-only-while-someone-listens-a-and-not-b-or-c',
    );
    expect(slug('STOCKCTL_LISTEN_URL and the 2 cores')).toBe('stockctl_listen_url-and-the-2-cores');
  });

  it('every relative link names a file that exists, and every #anchor a heading of it', () => {
    const all = documents.flatMap(links);
    const relative = all.filter((link) => !external(link.target));
    expect(relative.length).toBeGreaterThan(20);
    const broken: string[] = [];
    for (const link of relative) {
      const hash = link.target.indexOf('#');
      const file = hash === -1 ? link.target : link.target.slice(0, hash);
      const anchor = hash === -1 ? null : decodeURIComponent(link.target.slice(hash + 1));
      const resolved = file === '' ? link.file : path.resolve(path.dirname(link.file), decodeURIComponent(file));
      if (!fs.existsSync(resolved)) {
        broken.push(`${where(link)}: no such file`);
        continue;
      }
      if (anchor === null) continue;
      if (!resolved.endsWith('.md')) {
        broken.push(`${where(link)}: an anchor into a file that is not Markdown`);
        continue;
      }
      if (!anchors(resolved).has(anchor)) broken.push(`${where(link)}: no such heading in ${path.relative(REPO_ROOT, resolved)}`);
    }
    expect(broken).toEqual([]);
  });

  it('the README links to every document in docs/', () => {
    const readme = links(documents[0]).map((link) => path.resolve(REPO_ROOT, link.target.split('#')[0]));
    const missing = documents.slice(1).filter((file) => !readme.includes(file));
    expect(missing.map((file) => path.relative(REPO_ROOT, file))).toEqual([]);
  });

  it('no document cites "SPEC": each says things in its own words', () => {
    for (const file of documents) expect(fs.readFileSync(file, 'utf8'), path.relative(REPO_ROOT, file)).not.toMatch(/SPEC/);
  });
});
