# syntax=docker/dockerfile:1
# Build stage: full toolchain, compiles TypeScript to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --ignore-scripts && npm run build

# Runtime stage: production dependencies and the compiled output only, as an unprivileged user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production AUTHGATE_CONFIG=/etc/authgate/gateway.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY gateway.yaml /etc/authgate/gateway.yaml
USER node
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s \
  CMD node -e "require('http').get('http://127.0.0.1:9090/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
ENTRYPOINT ["node", "bin/authgate.js"]
CMD ["start"]
