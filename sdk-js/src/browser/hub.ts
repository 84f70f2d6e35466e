// What auto-capture modules share: the client, DOM listeners with cleanup, and page lifecycle callbacks.

import type { Analytics } from '../core/analytics';

type Fn = () => void;

export class Hub {
  private readonly cleanups: Fn[] = [];
  private readonly leaveFns: Fn[] = [];
  private readonly enterFns: Fn[] = [];
  private readonly hideFns: Fn[] = [];

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

  /** A page starts: on load, after a single-page-app navigation, and on return from the back-forward cache. */
  onEnter(fn: Fn): void {
    this.enterFns.push(fn);
  }

  /** The page is being hidden or closed, before pending events are beaconed. */
  onHide(fn: Fn): void {
    this.hideFns.push(fn);
  }

  leave(): void {
    run(this.leaveFns);
  }

  enter(): void {
    run(this.enterFns);
  }

  hide(): void {
    run(this.hideFns);
  }

  destroy(): void {
    run(this.cleanups.splice(0));
  }
}

function run(fns: Fn[]): void {
  for (const f of fns) {
    try {
      f();
    } catch {
      // ignore
    }
  }
}
