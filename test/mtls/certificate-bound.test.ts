import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionCertificate, type ClientCertificate } from '../../src/http/client-certificate.js';
import { compileField } from '../../src/identity/fields.js';
import { identity } from '../helpers/identity.js';
import { checkCertificateBinding } from '../../src/mechanisms/mtls/certificate-bound.js';
import { makeCertificateAuthority, type IssuedCertificate } from '../helpers/client-certs.js';

let server: Server;
let alice: IssuedCertificate;
let mallory: IssuedCertificate;
/** Signed by a CA the server does not trust. */
let stranger: IssuedCertificate;
/** What the server read from each connection, in order. */
const serverSide: Array<ClientCertificate | undefined> = [];

beforeAll(async () => {
  const ca = await makeCertificateAuthority();
  const serverCert = await ca.issue('/CN=localhost', 'server');
  alice = await ca.issue('/O=Acme/CN=alice', 'alice');
  mallory = await ca.issue('/O=Acme/CN=mallory', 'mallory');
  stranger = await (await makeCertificateAuthority()).issue('/O=Acme/CN=alice', 'stranger');
  // client_auth: optional: a certificate is asked for, signed by the CA if there is one, and not required.
  server = createServer({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, (socket) => {
    serverSide.push(connectionCertificate(socket));
    socket.end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Opens a real TLS connection (with `client`'s certificate, if any) and returns what the server read from it. */
async function connectAs(client: IssuedCertificate | undefined): Promise<ClientCertificate | undefined> {
  const { port } = server.address() as AddressInfo;
  const before = serverSide.length;
  const socket: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: client?.certPem, key: client?.keyPem });
  socket.on('data', () => undefined);
  await once(socket, 'end');
  socket.destroy();
  expect(serverSide.length).toBe(before + 1);
  return serverSide[before];
}

describe('certificate-bound tokens over a real TLS connection', () => {
  it('accepts a token bound to the certificate the client presented, with its identity fields', async () => {
    const certificate = await connectAs(alice);
    expect(certificate?.fingerprint).toBe(alice.x5tS256);
    expect(checkCertificateBinding({ 'x5t#S256': alice.x5tS256 }, certificate)).toEqual({ ok: true });
    const request = { peerCertificate: () => certificate };
    const field = (kind: 'client_cert_subject' | 'client_cert_fingerprint') => compileField({ kind })(identity(), request);
    expect({ subject: field('client_cert_subject'), fingerprint: field('client_cert_fingerprint') }).toEqual({ subject: 'O=Acme, CN=alice', fingerprint: alice.x5tS256 });
  });

  it('refuses a token bound to another certificate', async () => {
    const certificate = await connectAs(mallory);
    expect(checkCertificateBinding({ 'x5t#S256': alice.x5tS256 }, certificate)).toEqual({ ok: false, reason: 'the token is bound to another client certificate' });
  });

  it('refuses a bound token on a connection without a client certificate', async () => {
    const certificate = await connectAs(undefined);
    expect(certificate).toBeUndefined();
    expect(checkCertificateBinding({ 'x5t#S256': alice.x5tS256 }, certificate)).toEqual({
      ok: false,
      reason: 'the token is bound to a client certificate and the connection has none',
    });
  });

  it('does not count a certificate that does not chain to the client CA (optional client_auth admits it)', async () => {
    const certificate = await connectAs(stranger);
    expect(certificate).toBeUndefined();
    expect(checkCertificateBinding({ 'x5t#S256': stranger.x5tS256 }, certificate)).toMatchObject({ ok: false });
  });

  it('refuses a cnf whose x5t#S256 is not a string', async () => {
    expect(checkCertificateBinding({ 'x5t#S256': [alice.x5tS256] }, await connectAs(alice))).toEqual({ ok: false, reason: 'cnf x5t#S256 is not a string' });
  });

  it('refuses a cnf that is not a JSON object, whatever it holds', async () => {
    const certificate = await connectAs(alice);
    for (const cnf of [[{ 'x5t#S256': alice.x5tS256 }], alice.x5tS256, null]) {
      expect(checkCertificateBinding(cnf, certificate)).toEqual({ ok: false, reason: 'cnf is not a JSON object' });
    }
  });

  it('lets an unbound token through, with or without a certificate', async () => {
    expect(checkCertificateBinding(undefined, await connectAs(alice))).toEqual({ ok: true });
    expect(checkCertificateBinding({ jkt: 'x' }, undefined)).toEqual({ ok: true });
  });
});
