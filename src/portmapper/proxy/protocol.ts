// The control protocol between tsnet and its userland proxy: one JSON object per
// line over a unix socket in the run directory.
import type { Proto } from '../spec.js';

/** One listening address of the proxy and where its traffic goes. */
export interface ProxyBinding {
  proto: Proto;
  /** Concrete listen address: 0.0.0.0, ::, or one address. */
  hostIP: string;
  hostPort: number;
  targetIP: string;
  targetPort: number;
}

export type ProxyRequest =
  /** Make the proxy hold exactly these bindings. New ones are bound; with activate, every held one serves. */
  | { op: 'sync'; bindings: ProxyBinding[]; activate: boolean }
  | { op: 'status' };

/** A binding the proxy should hold but cannot (another program has the port): retried every few seconds. */
export interface ProxyLost {
  binding: ProxyBinding;
  /** errno name of the failed bind (EADDRINUSE, ...). */
  code: string;
}

export interface ProxyReply {
  ok: boolean;
  pid: number;
  /** Bindings it should hold and does not, with the errno name. */
  errors?: ProxyLost[];
  bindings?: number;
  rssBytes?: number;
  tcp?: 'splice' | 'streams';
  error?: string;
}

export const bindingKey = (b: Pick<ProxyBinding, 'proto' | 'hostIP' | 'hostPort'>) => `${b.proto}/${b.hostIP}/${b.hostPort}`;
