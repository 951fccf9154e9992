import { DATA_PASSWORD, SENTINEL_GROUP, SENTINEL_PASSWORD, startSentinels } from '../helpers/redis-topologies.js';
import { sharedStoreSuite } from '../helpers/topology-suite.js';

/** A primary and a replica watched by three sentinels (redis-server --sentinel), all with passwords. */
sharedStoreSuite('sentinel', async () => {
  const sentinels = await startSentinels();
  return {
    redisYaml: [
      `    sentinel: { name: ${SENTINEL_GROUP}, nodes: [${sentinels.sentinels.map((node) => `"${node}"`).join(', ')}], password: ${SENTINEL_PASSWORD} }`,
      `    password: ${DATA_PASSWORD}`,
    ].join('\n'),
    async failover() {
      const { from, to } = await sentinels.failover();
      return `SENTINEL FAILOVER from ${from} to ${to}`;
    },
    commandCalls: () => sentinels.commandCalls(),
    close: () => sentinels.close(),
  };
});
