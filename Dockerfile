# syntax=docker/dockerfile:1
# Build stage: full toolchain, compiles TypeScript to dist/.
# Node 22 LTS (the code also runs on Node 20.19+).
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json tsconfig.types.json ./
COPY src ./src
RUN npm ci --ignore-scripts && npm run build

# Runtime stage: production dependencies and the compiled output only, as an unprivileged user.
FROM node:22-bookworm-slim
# Inside a container loopback is unreachable from outside: listen on every interface (the bundled config reads
# these). The admin port must be reachable for kubelet probes; its write endpoints need the admin token.
ENV NODE_ENV=production AUTHGATE_CONFIG=/etc/authgate/gateway.yaml \
    AUTHGATE_LISTEN=0.0.0.0:8080 AUTHGATE_ADMIN_LISTEN=0.0.0.0:9090
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY gateway.yaml /etc/authgate/gateway.yaml
# Numeric (the image's `node` user): kubelet can only enforce runAsNonRoot on a numeric user.
USER 1000:1000
EXPOSE 8080 9090
# SIGTERM drains: readiness turns 503, in-flight requests get server.shutdown_grace, then exit 0.
STOPSIGNAL SIGTERM
# Asks the admin port AUTHGATE_ADMIN_LISTEN names: set it to your config's admin.listen if you move that.
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s \
  CMD node -e "const p=(process.env.AUTHGATE_ADMIN_LISTEN||'').split(':').pop()||'9090';require('http').get('http://127.0.0.1:'+p+'/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
ENTRYPOINT ["node", "bin/authgate.js"]
CMD ["start"]
