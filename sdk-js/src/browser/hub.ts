// What auto-capture modules share: the client, DOM listeners with cleanup, and page lifecycle callbacks.

import type { Analytics } from '../core/analytics';
import { settle, type Stop } from './settle';

type Fn = () => void;

// Hidden tabs get no animation frames: a page start waits this long at most there.
const NO_FRAME_MS = 100;

/** A page that started: when (ms), and whether by a single-page-app navigation. */
export interface Entry {
  at: number;
  navigated: boolean;
}
type EnterFn = (entry: Entry) => void;

export class Hub {
  private readonly cleanups: Fn[] = [];
  private readonly leaveFns: Fn[] = [];
  private readonly enterFns: EnterFn[] = [];
  private readonly hideFns: Fn[] = [];
  private entering: Stop | null = null;

  constructor(readonly analytics: Analytics) {}

  listen(target: EventTarget, type: string, handler: (e: Event) => void, options?: AddEventListenerOptions): void {
    const safe = (e: Event): void => {
      try {
        handler(e);
      } catch {
        // tracking must never break the page
      }
    };
    target.addEventListener(type, safe, options);
    this.cleanups.push(() => target.removeEventListener(type, safe, options));
  }

  onCleanup(fn: Fn): void {
    this.cleanups.push(fn);
  }

  /** Before the URL changes in a single-page app (the old page ends). */
  onLeave(fn: Fn): void {
    this.leaveFns.push(fn);
  }

  /**
   * A page starts: on load, after a single-page-app navigation, and on return from the
   * back-forward cache. Called once the page has rendered (see enter()).
   */
  onEnter(fn: EnterFn): void {
    this.enterFns.push(fn);
  }

  /** The page is being hidden or closed, before pending events are beaconed. */
  onHide(fn: Fn): void {
    this.hideFns.push(fn);
  }

  /** True between a page start and the moment its listeners run. */
  get settling(): boolean {
    return !!this.entering;
  }

  leave(): void {
    this.started();
    run(this.leaveFns);
  }

  /**
   * A page starts now. Its listeners run after the app has rendered it (see settle), so what
   * they read does not depend on whose popstate listener ran first; the page being hidden or
   * left first runs them at once.
   */
  enter(navigated = false): void {
    if (this.entering) return;
    const entry: Entry = { at: Date.now(), navigated };
    this.entering = settle(() => {
      this.entering = null;
      run(this.enterFns, entry);
    }, NO_FRAME_MS);
  }

  hide(): void {
    this.started();
    run(this.hideFns);
  }

  /** Runs a page start still waiting, now. */
  private started(): void {
    if (this.entering) this.entering();
  }

  destroy(): void {
    if (this.entering) this.entering(false);
    run(this.cleanups.splice(0));
  }
}

function run<A extends unknown[]>(fns: ((...a: A) => void)[], ...args: A): void {
  for (const f of fns) {
    try {
      f(...args);
    } catch {
      // ignore
    }
  }
}
