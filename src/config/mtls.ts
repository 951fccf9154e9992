import { existingFile } from './files.js';
import { keySlot, type Reader, type Slot } from './reader.js';

/** `server.tls.client_auth` and `client_ca_file`: whether TLS clients are asked for a certificate, signed by whom. */
export interface ClientCertificateConfig {
  /** `optional`: a client may present one; `require`: the handshake fails without one. */
  readonly mode: 'optional' | 'require';
  /** Absolute path of the PEM bundle of CAs that client certificates must chain to. */
  readonly caFile: string;
}

const CLIENT_AUTH_MODES = ['optional', 'require'] as const;

/** Undefined when `client_auth` is absent (no client certificates asked for) or invalid. */
export function readClientCertificates(r: Reader, modeSlot: Slot, caSlot: Slot, baseDir: string): ClientCertificateConfig | undefined {
  if (modeSlot.node === undefined) {
    if (caSlot.node !== undefined) r.problem(keySlot(caSlot), 'is only used with client_auth: optional or require');
    return undefined;
  }
  const mode = r.oneOf(modeSlot, CLIENT_AUTH_MODES);
  const caFile = r.required(caSlot) ? existingFile(r, caSlot, baseDir) : undefined;
  return mode === undefined || caFile === undefined ? undefined : { mode, caFile };
}

/** `issuers.<name>.certificate_bound`: honour `cnf["x5t#S256"]` in this issuer's tokens. */
export function readCertificateBound(r: Reader, slot: Slot): boolean {
  return r.boolean(slot) ?? false;
}
