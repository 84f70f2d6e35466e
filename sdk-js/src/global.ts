// The <script> build: window.funnelhouse, replaying the calls the snippet queued before this file loaded.

import * as api from './api';
import { LIBRARY_VERSION } from './core/version';

type Queued = [string, unknown[], number];

const w = window as unknown as { funnelhouse?: unknown };
const stub = w.funnelhouse;
const fh = { ...api, VERSION: LIBRARY_VERSION, loaded: true };
w.funnelhouse = fh;

if (Array.isArray(stub)) {
  const queued = stub as Queued[];
  // init first, whatever order the page used; the rest in order, with the time each was made.
  const inits = queued.filter((q) => q && q[0] === 'init');
  for (const q of inits) api.init(q[1][0] as Parameters<typeof api.init>[0]);
  // Without an init yet, the calls wait for the page's later funnelhouse.init().
  for (const q of queued) {
    if (!q || q[0] === 'init' || q[0] === 'flush') continue;
    api.deferCall(q[0], q[1], q[2]);
  }
}
