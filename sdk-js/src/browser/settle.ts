// Waiting for the page people see: after the app has rendered it, and for values it fills in later.

/** Runs the waiting function at once (the page is being left), or with false cancels it. */
export type Stop = (run?: boolean) => void;

/**
 * Runs `fn` once the page is ready, at most `maxMs` from now (hidden tabs get no animation frames).
 * Without `ready`: in the task after the next animation frame, so the app that changed the page
 * has rendered it and listeners that run after ours (popstate, router effects) have had their turn.
 * With `ready`: as soon as it holds, checked now and after every DOM change (given the records).
 */
export function settle(fn: () => void, maxMs: number, ready?: (records: MutationRecord[]) => boolean): Stop {
  let over = false;
  let observer: MutationObserver | undefined;
  const stop: Stop = (run = true) => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    if (observer) observer.disconnect();
    if (run) fn();
  };
  const timer = setTimeout(stop, maxMs);
  if (!ready) {
    if (typeof requestAnimationFrame === 'function') requestAnimationFrame(() => setTimeout(stop, 0));
  } else if (ready([])) stop();
  else if (typeof MutationObserver === 'function') {
    observer = new MutationObserver((records) => ready(records) && stop());
    // Attributes only for the result count: a new title or list shows as childList/characterData.
    observer.observe(document.documentElement, {
      subtree: true,
      childList: true,
      characterData: true,
      attributeFilter: ['data-search-result-count'],
    });
  }
  return stop;
}
