/** What the views share: the simulation workers, the presets and the URL state. */
import { readHash, writeHash } from './hash.js';
import { Runner } from './runner.js';
import type { PresetInfo, Scenario } from './types.js';

export type Preset = PresetInfo & { scenario: Scenario };

export interface View {
  readonly el: HTMLElement;
  /** Called when the view is shown, with the URL's parameters. */
  open(params: URLSearchParams): void | Promise<void>;
  /** Called when another view is shown. */
  close?(): void;
}

export class App {
  readonly runner = new Runner();
  private presetList: Promise<Preset[]> | null = null;

  /** The presets and their scenarios (asked from the wasm build once). */
  presets(): Promise<Preset[]> {
    this.presetList ??= this.runner.presets();
    return this.presetList;
  }

  async preset(name: string): Promise<Preset> {
    const list = await this.presets();
    const p = list.find((x) => x.name === name);
    if (!p) throw new Error(`unknown preset ${JSON.stringify(name)}; known: ${list.map((x) => x.name).join(', ')}`);
    return p;
  }

  /** Sets the given URL parameters (`null` removes one), keeping the others. */
  setParams(update: Record<string, string | null>): void {
    const params = readHash();
    for (const [k, v] of Object.entries(update)) {
      if (v === null) params.delete(k);
      else params.set(k, v);
    }
    writeHash(params);
  }
}

/** Announces `text` to screen readers and shows it in the view's status line. */
export function say(el: HTMLElement, text: string, error = false): void {
  el.textContent = text;
  el.classList.toggle('error', error);
}
