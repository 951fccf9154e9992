import { DATA_PASSWORD, startRedisCluster } from '../helpers/redis-topologies.js';
import { sharedStoreSuite } from '../helpers/topology-suite.js';

/** Three primaries with a replica each (redis-server --cluster-enabled yes, redis-cli --cluster create). */
sharedStoreSuite('cluster', async () => {
  const cluster = await startRedisCluster();
  return {
    redisYaml: [`    cluster: { nodes: [${cluster.nodes.map((node) => `"${node}"`).join(', ')}] }`, `    password: ${DATA_PASSWORD}`].join('\n'),
    async failover(key) {
      const { killed, promoted } = await cluster.killPrimaryOf(key);
      return `primary ${killed} of the revocation set's slot killed, replica ${promoted} promoted`;
    },
    async failSubscriberNode() {
      const [port] = await cluster.subscribedNodes('authgate');
      if (port === undefined) throw new Error('no node holds the gateways’ subscriptions');
      await cluster.killNode(port);
      await cluster.revive(port);
      return `node ${port}, holding the subscriptions, killed and revived`;
    },
    async failUnrelatedPrimary(key) {
      const port = await cluster.anotherPrimary([key], await cluster.subscribedNodes('authgate'));
      await cluster.killNode(port);
      await cluster.revive(port);
      return `primary ${port}, holding neither the revocation set nor a subscription, killed and revived`;
    },
    commandCalls: () => cluster.commandCalls(),
    close: () => cluster.close(),
  };
}, { clusterNodesFail: true });
