/**
 * Command logs the Replay view reads. Two formats, both JSON lines:
 *
 * - the export of `synap-server data export DIR`: a first line
 *   `{"type":"head","seed":…,"snapshot_index":…,"engine":{…}}`, then one line per log record
 *   `{"index":…,"now":…,"commands":[…]}` (every command of one engine turn ran at `now`);
 * - the simulator's replay log: `{"at":…,"command":{…}}` per line.
 *
 * `Simulation.replay` reads the second; `toReplayLog` turns an export into it, taking the seed
 * and engine config from the head line as replay options.
 */
import type { Json, ReplayOptions } from './types.js';

/** What a log holds, ready for `Simulation.replay`. */
export interface ParsedLog {
  format: 'export' | 'replay';
  /** The log in the replay format. */
  text: string;
  /** Options the export's head line gives (seed, engine config). */
  options: ReplayOptions & { engine?: Json };
  /** Commands in the log. */
  commands: number;
  /** The export's snapshot index (records up to it are also in a snapshot), if any. */
  snapshotIndex: number | null;
  /** The first record's index: above 1, older records were compacted away and the replay
   * starts from an empty engine without the state they built. */
  firstIndex: number | null;
}

/** Most commands the app replays (a bound on the browser's memory, like every collection). */
export const MAX_COMMANDS = 2_000_000;

function parseLine(line: string, n: number): Record<string, Json> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new Error(`line ${n}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`line ${n}: expected a JSON object`);
  }
  return value as Record<string, Json>;
}

/** Reads either format; throws an Error naming the line at fault. */
export function parseCommandLog(text: string): ParsedLog {
  const lines = text.split(/\r?\n/);
  const first = lines.findIndex((l) => l.trim() !== '');
  if (first < 0) throw new Error('the file is empty');
  const head = parseLine(lines[first], first + 1);
  if (head.type !== 'head') {
    let commands = 0;
    lines.forEach((l, i) => {
      if (l.trim() === '') return;
      const rec = parseLine(l, i + 1);
      if (typeof rec.at !== 'number' || rec.command === undefined) {
        throw new Error(`line ${i + 1}: expected {"at": ms, "command": {...}} or an export's head line first`);
      }
      commands += 1;
    });
    if (commands > MAX_COMMANDS) throw new Error(`more than ${MAX_COMMANDS} commands`);
    return { format: 'replay', text, options: {}, commands, snapshotIndex: null, firstIndex: null };
  }
  const options: ParsedLog['options'] = {};
  // The seed is a u64: read its digits from the text, since a JS number keeps only 53 bits.
  const digits = /"seed"\s*:\s*"?(\d+)/.exec(lines[first]);
  if (digits) options.seed = digits[1];
  else if (typeof head.seed === 'string') options.seed = head.seed;
  if (head.engine !== undefined && head.engine !== null) options.engine = head.engine;
  const out: string[] = [];
  let firstIndex: number | null = null;
  for (let i = first + 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    const rec = parseLine(lines[i], i + 1);
    if (typeof rec.now !== 'number' || !Array.isArray(rec.commands)) {
      throw new Error(`line ${i + 1}: expected {"index", "now", "commands": [...]}`);
    }
    if (firstIndex === null && typeof rec.index === 'number') firstIndex = rec.index;
    for (const command of rec.commands) {
      out.push(JSON.stringify({ at: rec.now, command }));
      if (out.length > MAX_COMMANDS) throw new Error(`more than ${MAX_COMMANDS} commands`);
    }
  }
  const snapshotIndex = typeof head.snapshot_index === 'number' ? head.snapshot_index : null;
  return { format: 'export', text: out.join('\n'), options, commands: out.length, snapshotIndex, firstIndex };
}
