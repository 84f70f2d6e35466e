// The one way the console talks to funnelhouse: the admin token on every call, JSON in and out,
// and failures turned into an ApiError that carries the server's own reason.

const TOKEN_KEY = 'funnelhouse.console.token';

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A failed call: HTTP status (0 = no answer), the server's machine-readable reason and message. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
    readonly path: string = '',
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let unauthorizedHandler: (() => void) | null = null;

/** Called when the server refuses the token (401): the shell clears it and shows the login. */
export function onUnauthorized(handler: () => void): void {
  unauthorizedHandler = handler;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === null || v === undefined || v === '') continue;
    params.set(k, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method: string, path: string, body?: unknown, signal?: AbortSignal, token = getToken()): Promise<Response> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(`funnelhouse did not answer (${(err as Error).message})`, 0, 'no_answer');
  }
  if (response.ok) return response;
  const text = await response.text();
  let doc: { error?: unknown; reason?: unknown; path?: unknown } = {};
  try {
    doc = JSON.parse(text);
  } catch {
    // not JSON: the text itself is the message
  }
  const reason = typeof doc.reason === 'string' ? doc.reason : `http_${response.status}`;
  const message = typeof doc.error === 'string' ? doc.error : text.slice(0, 300) || response.statusText;
  const error = new ApiError(message, response.status, reason, typeof doc.path === 'string' ? doc.path : '');
  if (response.status === 401 && unauthorizedHandler) unauthorizedHandler();
  throw error;
}

export async function getJson<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
  return (await send('GET', withQuery(path, query), undefined, signal)).json() as Promise<T>;
}

export async function postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  return (await send('POST', path, body, signal)).json() as Promise<T>;
}

export async function putJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  return (await send('PUT', path, body, signal)).json() as Promise<T>;
}

export async function deleteJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await send('DELETE', path, undefined, signal)).json() as Promise<T>;
}

/** Checks a token before keeping it: any admin endpoint answers 401 to a wrong one. */
export async function checkToken(token: string): Promise<void> {
  await send('GET', '/v1/segments', undefined, undefined, token);
}

/** Fetches a file (GET, or POST with a JSON body) with the token (a plain link could not send it) and hands it to the browser as a download. */
export async function download(path: string, filename: string, body?: unknown): Promise<number> {
  const blob = await (await send(body === undefined ? 'GET' : 'POST', path, body)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}

/** The answer of every analysis: a table plus the SQL that ran and its parameters. */
export interface AnalysisResult<D = unknown> {
  analysis: string;
  spec: Record<string, unknown>;
  summary: Record<string, unknown>;
  notes: string[];
  columns: string[];
  rows: unknown[][];
  data: D;
  sql: string;
  params: Record<string, unknown>;
}
