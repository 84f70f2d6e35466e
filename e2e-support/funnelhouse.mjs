// What the browser e2e suites (console/, sdk-js/) share: a real `funnelhouse up` in a temp data
// folder, a free port, polling, and finding Chromium. Node built-ins only: this folder is no npm
// package, so it cannot import playwright-core; each suite launches its browser itself.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Polls fn until it returns a truthy value or the deadline passes (then returns the last value). */
export async function waitFor(fn, { timeout = 20_000, interval = 200 } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last || Date.now() > end) return last;
    await sleep(interval);
  }
}

/** The funnelhouse CLI: $FUNNELHOUSE_BIN, else the repository's .venv. */
export function funnelhouseBin() {
  const bin = process.env.FUNNELHOUSE_BIN || join(REPO_ROOT, '.venv', 'bin', 'funnelhouse');
  if (!existsSync(bin)) throw new Error(`funnelhouse not found at ${bin} (set FUNNELHOUSE_BIN or run scripts/setup)`);
  return bin;
}

/**
 * `funnelhouse up` on a free port of 127.0.0.1 with a fresh temp data folder, once /healthz answers.
 * `env` is added to this process's environment; stop() ends the server and removes the folder.
 */
export async function startFunnelhouseUp({ env: extraEnv = {}, dataDirPrefix = 'fh-e2e-' } = {}) {
  const bin = funnelhouseBin();
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), dataDirPrefix));
  const env = { ...process.env, ...extraEnv };
  let log = '';
  const proc = spawn(bin, ['up', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so stop() ends any children too
  });
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const ready = await waitFor(
    async () => {
      if (proc.exitCode !== null) return 'exited';
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    },
    { timeout: 90_000, interval: 300 },
  );
  if (ready !== true) {
    await stopProcess(proc);
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`funnelhouse up did not become ready:\n${log}`);
  }
  return {
    url,
    dataDir,
    bin,
    env,
    log: () => log,
    async stop() {
      await stopProcess(proc);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** SIGTERM to the process group, SIGKILL if it has not exited 15 s later. */
async function stopProcess(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    process.kill(-proc.pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }, 15_000);
  await exited;
  clearTimeout(t);
}

/** The Chromium to drive: the path in $<envVar>, else the first of the usual names on PATH. */
export function chromiumPath(envVar) {
  if (process.env[envVar]) return process.env[envVar];
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch {
      // next
    }
  }
  throw new Error(`no chromium found: apt-get install -y chromium (or set ${envVar})`);
}
