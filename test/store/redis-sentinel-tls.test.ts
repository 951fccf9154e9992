import { makeCertificate } from '../ops/certs.js';
import { DATA_PASSWORD, SENTINEL_GROUP, SENTINEL_PASSWORD, startSentinels } from '../helpers/redis-topologies.js';
import { sharedStoreSuite } from '../helpers/topology-suite.js';

/**
 * The Sentinel setup with every server listening only with TLS (`tls-port`, `tls-replication`), its certificate
 * trusted through `store.redis.tls.ca_file`: the same suite, failover included, over TLS.
 */
sharedStoreSuite('sentinel-tls', async () => {
  const certificate = await makeCertificate('authgate-test-redis');
  const sentinels = await startSentinels({ tls: certificate });
  return {
    redisYaml: [
      `    sentinel: { name: ${SENTINEL_GROUP}, nodes: [${sentinels.sentinels.map((node) => `"${node}"`).join(', ')}], password: ${SENTINEL_PASSWORD} }`,
      `    password: ${DATA_PASSWORD}`,
      `    tls: { ca_file: "${certificate.certFile}" }`,
    ].join('\n'),
    async failover() {
      const { from, to } = await sentinels.failover();
      return `SENTINEL FAILOVER over TLS from ${from} to ${to}`;
    },
    commandCalls: () => sentinels.commandCalls(),
    close: () => sentinels.close(),
  };
});
