// A client of the OCI distribution API (registry v2): manifests and blobs by
// reference, with Docker's token flow (a 401 with a Bearer challenge names the
// realm to get a token from), basic auth, redirects to blob storage, HTTPS with
// per-registry CAs, and plain HTTP only for registries the user calls insecure
// (localhost ones are, as in Docker).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { TsnetError, InvalidConfigError, NotFoundError } from '../../errors.js';
import { MEDIA } from './store.js';

export class RegistryError extends TsnetError {
  constructor(message: string, readonly status?: number, options?: { cause?: unknown }) {
    super(status === 404 ? 'NOT_FOUND' : status === 401 || status === 403 ? 'CONFLICT' : 'UNAVAILABLE', message, options);
  }
}

export interface Credentials {
  username: string;
  password: string;
}

export interface RegistryOptions {
  /** Hosts (host[:port]) that may be reached over plain HTTP when HTTPS fails. */
  insecure: (host: string) => boolean;
  /** Directories of HOST[:PORT]/ca.crt (and client.cert/client.key), first hit wins. */
  certsDirs: string[];
  /** Credentials per host (Docker's config.json "auths"). */
  credentials: (host: string) => Credentials | undefined;
  /** Milliseconds a connection may stay silent. */
  timeoutMs?: number;
}

/** A challenge from WWW-Authenticate: scheme and its parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="https://x/token",service="x",scope="repository:a:pull"`. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) {
    if (p[0] === '') break;
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

/** True for hosts Docker treats as insecure without being told: loopback ones. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Docker's config.json "auths" (base64 user:password), from $DOCKER_CONFIG or ~/.docker. */
export function dockerCredentials(env: NodeJS.ProcessEnv = process.env): (host: string) => Credentials | undefined {
  let auths: Record<string, { auth?: string; username?: string; password?: string }> = {};
  const file = join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
  try {
    auths = JSON.parse(readFileSync(file, 'utf8')).auths ?? {};
  } catch {
    auths = {};
  }
  return (host) => {
    const keys = host === 'registry-1.docker.io' ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', host] : [host, `https://${host}`, `http://${host}`];
    for (const k of keys) {
      const a = auths[k];
      if (!a) continue;
      if (a.username && a.password) return { username: a.username, password: a.password };
      if (a.auth) {
        const text = Buffer.from(a.auth, 'base64').toString('utf8');
        const i = text.indexOf(':');
        if (i > 0) return { username: text.slice(0, i), password: text.slice(i + 1) };
      }
    }
    return undefined;
  };
}

export interface Response {
  status: number;
  headers: IncomingMessage['headers'];
  body: IncomingMessage;
}

const MAX_MANIFEST = 4 << 20;

export const MANIFEST_TYPES = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest];

export class RegistryClient {
  /** Per host: the scheme that worked. */
  private readonly scheme = new Map<string, 'https' | 'http'>();
  /** Per host and scope: the Authorization header that worked. */
  private readonly auth = new Map<string, string>();

  constructor(private readonly o: RegistryOptions) {}

  private tls(host: string): { ca?: Buffer[]; cert?: Buffer; key?: Buffer } {
    for (const base of this.o.certsDirs) {
      const dir = join(base, host.replace(/^\[|\]$/g, ''));
      if (!existsSync(dir)) continue;
      const files = readdirSync(dir);
      const ca = files.filter((f) => f.endsWith('.crt')).map((f) => readFileSync(join(dir, f)));
      const cert = files.find((f) => f.endsWith('.cert'));
      const key = cert && files.find((f) => f === cert.replace(/\.cert$/, '.key'));
      return { ca: ca.length ? ca : undefined, cert: cert && key ? readFileSync(join(dir, cert)) : undefined, key: cert && key ? readFileSync(join(dir, key)) : undefined };
    }
    return {};
  }

  /** One request, following redirects (Authorization only goes to the registry's own host). */
  private send(url: URL, headers: Record<string, string>, hops = 0): Promise<Response> {
    return new Promise((resolve, reject) => {
      const https = url.protocol === 'https:';
      const opts = { method: 'GET', headers, timeout: this.o.timeoutMs ?? 30_000, ...(https ? this.tls(url.host) : {}) };
      const req = (https ? httpsRequest : httpRequest)(url, opts, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location) {
          res.resume();
          if (hops >= 5) return reject(new RegistryError(`${url.host}: too many redirects`));
          const next = new URL(res.headers.location, url);
          const h = { ...headers };
          if (next.host !== url.host) delete h.Authorization;
          return resolve(this.send(next, h, hops + 1));
        }
        resolve({ status, headers: res.headers, body: res });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer in ${(this.o.timeoutMs ?? 30_000) / 1000} s`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** GET /v2/PATH..., with the scheme that works for host and the auth it asks for. */
  async get(host: string, path: string, accept: string[] = []): Promise<Response> {
    const scope = `repository:${path.split('/').slice(2, -2).join('/')}:pull`;
    const headers: Record<string, string> = { 'User-Agent': 'tsnet', ...(accept.length ? { Accept: accept.join(', ') } : {}) };
    const key = `${host} ${scope}`;
    const known = this.auth.get(key);
    if (known) headers.Authorization = known;
    let res = await this.reach(host, path, headers);
    if (res.status === 401) {
      res.body.resume();
      const challenge = parseChallenge(String(res.headers['www-authenticate'] ?? ''));
      const authorization = await this.authorize(host, challenge, scope);
      this.auth.set(key, authorization);
      res = await this.reach(host, path, { ...headers, Authorization: authorization });
    }
    return res;
  }

  private async reach(host: string, path: string, headers: Record<string, string>): Promise<Response> {
    const known = this.scheme.get(host);
    const schemes: Array<'https' | 'http'> = known ? [known] : this.o.insecure(host) ? ['https', 'http'] : ['https'];
    let last: unknown;
    for (const s of schemes) {
      try {
        const res = await this.send(new URL(`${s}://${host}${path}`), headers);
        this.scheme.set(host, s);
        return res;
      } catch (err) {
        last = err;
        // The server speaks TLS with a certificate we do not trust: plain HTTP will not help.
        if (isCertificateError(err)) {
          const where = this.o.certsDirs.map((d) => join(d, host, 'ca.crt')).join(' or ');
          throw new RegistryError(`cannot reach registry ${host}: its certificate is not trusted (${(err as Error).message}); put the CA that signed it at ${where || 'a certs.d directory (TSNET_CERTS_D)'}`, undefined, { cause: err });
        }
      }
    }
    const why = describe(last);
    const hint = this.o.insecure(host) ? '' : ' (for a registry without HTTPS, pull with --insecure or list it in TSNET_INSECURE_REGISTRIES)';
    throw new RegistryError(`cannot reach registry ${host}: ${why}${hint}`, undefined, { cause: last });
  }

  private async authorize(host: string, ch: Challenge | undefined, scope: string): Promise<string> {
    const creds = this.o.credentials(host);
    if (ch?.scheme === 'basic') {
      if (!creds) throw new RegistryError(`registry ${host} wants a login, and there are no credentials for it (docker login writes them to ~/.docker/config.json)`, 401);
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    if (ch?.scheme !== 'bearer' || !ch.params.realm) throw new RegistryError(`registry ${host} refused the request (401) without a usable challenge`, 401);
    const realm = new URL(ch.params.realm);
    if (ch.params.service) realm.searchParams.set('service', ch.params.service);
    realm.searchParams.set('scope', ch.params.scope ?? scope);
    const headers: Record<string, string> = { 'User-Agent': 'tsnet' };
    if (creds) headers.Authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    let res: Response;
    try {
      res = await this.send(realm, headers);
    } catch (err) {
      throw new RegistryError(`cannot reach the token service ${realm.host} of ${host}: ${(err as Error).message}`, undefined, { cause: err });
    }
    const body = await readAll(res.body, 1 << 20);
    if (res.status !== 200) throw new RegistryError(`token service of ${host} answered ${res.status}`, res.status === 401 ? 401 : undefined);
    let token: string | undefined;
    try {
      const j = JSON.parse(body.toString('utf8'));
      token = j.token ?? j.access_token;
    } catch {
      token = undefined;
    }
    if (!token) throw new RegistryError(`token service of ${host} gave no token`);
    return `Bearer ${token}`;
  }

  /** A manifest (or index) by tag or digest: its bytes and media type. */
  async manifest(host: string, repo: string, reference: string): Promise<{ body: Buffer; mediaType: string }> {
    const res = await this.get(host, `/v2/${repo}/manifests/${reference}`, MANIFEST_TYPES);
    if (res.status !== 200) {
      const text = (await readAll(res.body, 64 << 10).catch(() => Buffer.alloc(0))).toString('utf8');
      throw statusError(res.status, `${host}/${repo}:${reference}`, 'manifest', text);
    }
    const body = await readAll(res.body, MAX_MANIFEST);
    let mediaType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
    try {
      mediaType = JSON.parse(body.toString('utf8')).mediaType ?? mediaType;
    } catch {
      throw new RegistryError(`${host}/${repo}:${reference}: the manifest is not JSON`);
    }
    return { body, mediaType };
  }

  /** A blob's body stream (the caller checks its digest). */
  async blob(host: string, repo: string, digest: string): Promise<Response> {
    const res = await this.get(host, `/v2/${repo}/blobs/${digest}`);
    if (res.status !== 200) {
      const text = (await readAll(res.body, 64 << 10).catch(() => Buffer.alloc(0))).toString('utf8');
      throw statusError(res.status, `${host}/${repo}@${digest}`, 'blob', text);
    }
    return res;
  }
}

/** A connection error in one line (OpenSSL's are several, and cryptic). */
function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'EPROTO' && /wrong version number/.test(e.message ?? '')) return 'it does not answer HTTPS (a plain HTTP registry?)';
  return String(e?.message ?? err).split('\n')[0]!.trim();
}

/** A TLS handshake that failed on verifying the server's certificate (Node's codes for it). */
function isCertificateError(err: unknown): boolean {
  const code = String((err as { code?: string })?.code ?? '');
  return /CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)|ERR_TLS_CERT_ALTNAME_INVALID/.test(code);
}

function statusError(status: number, what: string, kind: string, body: string): TsnetError {
  let detail = '';
  try {
    const e = JSON.parse(body).errors?.[0];
    if (e) detail = `: ${e.code ?? ''} ${e.message ?? ''}`.trimEnd();
  } catch {
    detail = '';
  }
  if (status === 404) return new NotFoundError(`${what}: ${kind} unknown${detail}`);
  if (status === 401 || status === 403) return new RegistryError(`${what}: access denied (${status})${detail}`, status);
  return new RegistryError(`${what}: registry answered ${status}${detail}`, status);
}

/** The whole body, refusing one longer than max bytes. */
export async function readAll(body: IncomingMessage, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > max) {
      body.destroy();
      throw new InvalidConfigError(`registry answer larger than ${max} bytes`);
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}
