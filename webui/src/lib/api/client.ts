// The one way the console talks to the appliance: same-origin fetch with the session cookie,
// the CSRF token on every mutation, problem+json turned into ApiError, and a 401 turned into
// "session expired" (the app returns to the login page; editors keep their text).
import type { Problem, FieldError } from './types';

const CSRF_KEY = 'septa.csrf';

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(status: number, problem: Problem) {
    super(describeProblem(problem));
    this.status = status;
    this.problem = problem;
  }
  get fieldErrors(): FieldError[] {
    return this.problem.errors ?? [];
  }
  get slug(): string {
    return this.problem.type.replace(/^urn:septa:problem:/, '');
  }
}

/** One readable sentence for a problem: title, detail and the first named field. */
export function describeProblem(p: Problem): string {
  const first = p.errors?.[0];
  const where = first ? ` (${first.field}${first.line ? ` line ${first.line}` : ''}: ${first.message})` : '';
  const detail = p.detail && p.detail !== p.title ? `: ${p.detail}` : '';
  return `${p.title}${detail}${where}`;
}

type Listener = () => void;
const expiredListeners = new Set<Listener>();
export function onSessionExpired(f: Listener): () => void {
  expiredListeners.add(f);
  return () => expiredListeners.delete(f);
}

export function setCsrf(token: string | null): void {
  if (token) sessionStorage.setItem(CSRF_KEY, token);
  else sessionStorage.removeItem(CSRF_KEY);
}
export function csrf(): string | null {
  return sessionStorage.getItem(CSRF_KEY);
}

export interface CallOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** Don't treat 401 as an expired session (the login call itself). */
  anonymous?: boolean;
  signal?: AbortSignal;
}

export interface Reply<T> {
  data: T;
  headers: Headers;
  status: number;
}

export async function call<T>(method: string, path: string, opts: CallOptions = {}): Promise<Reply<T>> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const token = csrf();
  if (method !== 'GET' && method !== 'HEAD' && token) headers['X-CSRF-Token'] = token;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, {
      type: 'urn:septa:problem:network',
      title: 'The appliance did not answer',
      detail: 'check that Septa is running and reachable',
      status: 0,
    });
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!res.ok) {
    const problem = toProblem(res.status, parsed);
    if (res.status === 401 && !opts.anonymous) {
      setCsrf(null);
      expiredListeners.forEach((f) => f());
    }
    throw new ApiError(res.status, problem);
  }
  return { data: parsed as T, headers: res.headers, status: res.status };
}

export function toProblem(status: number, body: unknown): Problem {
  if (body && typeof body === 'object' && 'title' in body && 'type' in body) return body as Problem;
  return {
    type: 'urn:septa:problem:unexpected',
    title: `HTTP ${status}`,
    detail: typeof body === 'string' ? body.slice(0, 200) : 'unexpected answer from the appliance',
    status,
  };
}

export const get = async <T>(path: string, o?: CallOptions) => (await call<T>('GET', path, o)).data;
export const post = async <T>(path: string, body: unknown, o?: CallOptions) =>
  (await call<T>('POST', path, { ...o, body })).data;

/** Query string from defined values only. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}
